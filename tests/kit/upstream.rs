//! Debian's `docker-registry` (the reference registry, distribution 2.8) on loopback.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Password of the upstream's htpasswd user.
pub const AUTH_PASSWORD: &str = "tower-pw";
/// Its bcrypt hash (cost 4, so that every request's check is quick).
const AUTH_BCRYPT: &str = "$2b$04$3l8LFDlzQsyiVQ5qT4BgMuBGHtznoT4I/yAcbw2qy2GK1n61M1GPS";

pub struct ReferenceRegistry {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl ReferenceRegistry {
    /// Starts `docker-registry` with filesystem storage and deletes enabled.
    pub fn start(binary: &std::path::Path) -> ReferenceRegistry {
        ReferenceRegistry::start_with(binary, &[])
    }

    /// Starts it behind htpasswd basic auth for `user` / [`AUTH_PASSWORD`].
    pub fn start_with_auth(binary: &std::path::Path, user: &str) -> ReferenceRegistry {
        ReferenceRegistry::start_with(binary, &[user])
    }

    /// Starts it behind htpasswd basic auth for each of `users`, all with
    /// [`AUTH_PASSWORD`].
    pub fn start_with_users(binary: &std::path::Path, users: &[&str]) -> ReferenceRegistry {
        ReferenceRegistry::start_with(binary, users)
    }

    /// Starts it as a pull-through cache (`proxy: remoteurl:`) of the registry at `remote`.
    pub fn start_proxy(binary: &std::path::Path, remote: SocketAddr) -> ReferenceRegistry {
        ReferenceRegistry::start_config(
            binary,
            &[],
            &format!("proxy:\n  remoteurl: http://{remote}\n"),
        )
    }

    /// Starts it over HTTPS with this certificate and key (PEM).
    pub fn start_tls(
        binary: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> ReferenceRegistry {
        ReferenceRegistry::start_config(
            binary,
            &[],
            // Continues the `http:` block the configuration ends with.
            &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
        )
    }

    fn start_with(binary: &std::path::Path, users: &[&str]) -> ReferenceRegistry {
        ReferenceRegistry::start_config(binary, users, "")
    }

    fn start_config(binary: &std::path::Path, users: &[&str], extra: &str) -> ReferenceRegistry {
        let dir = tempfile::tempdir().unwrap();
        // The reference registry cannot report a port it chose: take a free one.
        let addr = super::node::free_addr();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if !users.is_empty() {
            let htpasswd = dir.path().join("htpasswd");
            let lines: String = users
                .iter()
                .map(|u| format!("{u}:{AUTH_BCRYPT}\n"))
                .collect();
            std::fs::write(&htpasswd, lines).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        config.push_str(extra);
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
