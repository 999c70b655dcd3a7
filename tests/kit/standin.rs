//! A stand-in upstream registry for what the reference registry never does: answer 429,
//! send bytes that do not match their digest, a manifest over a limit, a body that never
//! ends. Plain HTTP/1.1 on loopback, one thread per connection, one request each.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the stand-in answers to one request.
pub enum Reply {
    /// A status, headers and a body (its `Content-Length` is added).
    Full(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// 200 with these headers, then bytes until the client hangs up (bounded: 4 GiB).
    Endless(Vec<(&'static str, String)>),
}

/// A request as the stand-in read it.
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct StandIn {
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl StandIn {
    /// Serves `answer(method, path)` to every request.
    pub fn start(answer: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> StandIn {
        StandIn::start_with_headers(move |r| answer(&r.method, &r.path))
    }

    /// Serves `answer(request)` to every request.
    pub fn start_with_headers(
        answer: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let answer = Arc::new(answer);
        let (stop2, requests2) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (answer, requests) = (answer.clone(), requests2.clone());
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            if let Some(request) = read_request(&conn) {
                                requests.fetch_add(1, Ordering::SeqCst);
                                write_reply(conn, answer(&request));
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StandIn {
            addr,
            requests,
            stop,
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header == "\r\n" {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

fn write_reply(mut conn: TcpStream, reply: Reply) {
    match reply {
        Reply::Full(status, headers, body) => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
        Reply::Endless(headers) => {
            let mut head =
                "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n".to_owned();
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            for _ in 0..(4u64 << 30) / (64 * 1024) {
                if conn.write_all(&framed).is_err() {
                    return;
                }
            }
        }
    }
}
