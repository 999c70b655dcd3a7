//! Debian's `docker-registry` (the reference registry, distribution 2.8) on loopback.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ReferenceRegistry {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl ReferenceRegistry {
    /// Starts `docker-registry` with filesystem storage and deletes enabled.
    pub fn start(binary: &std::path::Path) -> ReferenceRegistry {
        let dir = tempfile::tempdir().unwrap();
        // The reference registry cannot report a port it chose: take a free one.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        ReferenceRegistry {
            addr,
            child,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ReferenceRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
