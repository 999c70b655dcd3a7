//! A loopback TCP link that a test can black-hole: while cut, every byte either way is
//! swallowed and nothing is refused (connections stay open, new ones are accepted), as
//! a network fault that drops packets would. Healing closes what was open during the
//! cut (its streams lost bytes) and forwards again.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct BlackHole {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl BlackHole {
    pub fn start(target: SocketAddr) -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (cut2, open2, stop2) = (cut.clone(), open.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let _ = client.set_nodelay(true);
                // While cut, the far end is not even dialled: the connection hangs.
                let server = if cut2.load(Ordering::SeqCst) {
                    None
                } else {
                    TcpStream::connect(target).ok()
                };
                let mut open = open2.lock().unwrap();
                open.push(client.try_clone().unwrap());
                match server {
                    Some(server) => {
                        let _ = server.set_nodelay(true);
                        open.push(server.try_clone().unwrap());
                        pipe(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            cut2.clone(),
                        );
                        pipe(server, client, cut2.clone());
                    }
                    None => swallow(client),
                }
            }
        });
        BlackHole {
            addr,
            cut,
            open,
            stop,
        }
    }

    /// From now on every byte is swallowed.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Closes the connections that lost bytes, and forwards again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` on a thread, dropping what arrives while `cut`.
fn pipe(from: TcpStream, to: TcpStream, cut: Arc<AtomicBool>) {
    super::proxy::forward(from, to, move |bytes| {
        let pass = if cut.load(Ordering::SeqCst) {
            0
        } else {
            bytes.len()
        };
        (pass, true)
    });
}

/// Reads and drops everything `from` sends until it closes.
fn swallow(mut from: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
    });
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.heal();
    }
}
