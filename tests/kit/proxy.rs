//! A loopback TCP proxy that cuts the link: it forwards until `budget` bytes have gone
//! from client to server, then drops every connection and refuses new ones, as a broken
//! WAN link would, until it is healed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct CuttingProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    budget: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl CuttingProxy {
    pub fn start(target: SocketAddr, budget: u64) -> CuttingProxy {
        CuttingProxy::start_at("127.0.0.1:0".parse().unwrap(), target, budget)
    }

    /// [`CuttingProxy::start`] listening on `at` (a loopback address of the test's
    /// choosing: port 80 gives a registry a host name without a port).
    pub fn start_at(at: SocketAddr, target: SocketAddr, budget: u64) -> CuttingProxy {
        let listener =
            TcpListener::bind(at).unwrap_or_else(|e| panic!("cannot listen on {at}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(AtomicU64::new(budget));
        let refused = Arc::new(AtomicU64::new(0));
        let (stop2, budget2, refused2) = (stop.clone(), budget.clone(), refused.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let budget = budget2.load(Ordering::SeqCst);
                        if sent.load(Ordering::SeqCst) >= budget {
                            refused2.fetch_add(1, Ordering::SeqCst);
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        client.set_nonblocking(false).unwrap();
                        pipe(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            Some((sent.clone(), budget)),
                        );
                        pipe(server, client, None);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        CuttingProxy {
            addr,
            stop,
            budget,
            refused,
        }
    }

    /// The link is back: it forwards from now on, without limit.
    pub fn heal(&self) {
        self.budget.store(u64::MAX, Ordering::SeqCst);
    }

    /// Connections refused since the cut.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` on a thread; with a budget, cuts both once it is spent.
fn pipe(from: TcpStream, to: TcpStream, budget: Option<(Arc<AtomicU64>, u64)>) {
    forward(from, to, move |bytes| match &budget {
        Some((sent, limit)) => {
            let n = bytes.len() as u64;
            let before = sent.fetch_add(n, Ordering::SeqCst);
            if before + n >= *limit {
                (limit.saturating_sub(before) as usize, false)
            } else {
                (bytes.len(), true)
            }
        }
        None => (bytes.len(), true),
    });
}

/// Copies `from` to `to` on a thread. `seen` is shown each read and says how many of its
/// bytes go on, and whether the copy goes on after them; at the end both are shut.
pub fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    mut seen: impl FnMut(&[u8]) -> (usize, bool) + Send + 'static,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (pass, more) = seen(&buf[..n]);
            if to.write_all(&buf[..pass]).is_err() || !more {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A loopback TCP proxy that counts the bytes the server sends back: what crossed the
/// "link" to an upstream.
pub struct CountingProxy {
    pub addr: SocketAddr,
    received: Arc<AtomicU64>,
    /// Every byte clients sent (requests are small).
    sent: Arc<std::sync::Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    pub fn start(target: SocketAddr) -> CountingProxy {
        CountingProxy::start_throttled(target, None)
    }

    /// A proxy that passes at most `rate` bytes per second from the server, all its
    /// connections together, as one thin link would.
    pub fn start_throttled(target: SocketAddr, rate: Option<u64>) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let link = rate.map(|r| Arc::new(Link::new(r)));
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, received2, sent2) = (stop.clone(), received.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(target) else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        client.set_nonblocking(false).unwrap();
                        recorded(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            sent2.clone(),
                        );
                        counted(server, client, received2.clone(), link.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CountingProxy {
            addr,
            received,
            sent,
            stop,
        }
    }

    /// What clients have sent so far (request lines, headers, bodies), as text.
    pub fn requests(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }

    /// Bytes the server has sent through the proxy so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits (bounded, 20 s) until the server has sent at least `bytes`.
    pub fn wait_received(&self, bytes: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.received() < bytes {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {bytes} bytes came through the proxy within 20 s",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Copies `from` to `to` on a thread, keeping a copy of the bytes.
fn recorded(from: TcpStream, to: TcpStream, copy: Arc<std::sync::Mutex<Vec<u8>>>) {
    forward(from, to, move |bytes| {
        copy.lock().unwrap().extend_from_slice(bytes);
        (bytes.len(), true)
    });
}

/// A link of `rate` bytes per second that connections share: each read waits its turn.
struct Link {
    rate: u64,
    free_at: std::sync::Mutex<std::time::Instant>,
}

impl Link {
    fn new(rate: u64) -> Link {
        Link {
            rate,
            free_at: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    /// Waits until `n` bytes have crossed the link.
    fn pass(&self, n: usize) {
        let done = {
            let mut free_at = self.free_at.lock().unwrap();
            let start = (*free_at).max(std::time::Instant::now());
            *free_at = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            *free_at
        };
        std::thread::sleep(done.saturating_duration_since(std::time::Instant::now()));
    }
}

/// Copies `from` to `to` on a thread, counting the bytes (through `link`, if any).
fn counted(from: TcpStream, to: TcpStream, count: Arc<AtomicU64>, link: Option<Arc<Link>>) {
    forward(from, to, move |bytes| {
        if let Some(link) = &link {
            link.pass(bytes.len());
        }
        count.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        (bytes.len(), true)
    });
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
