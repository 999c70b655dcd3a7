//! HTTP/1.1 on the registry's plain listener, byte by byte: a refusal given before the
//! body was read keeps the connection usable or says `Connection: close` (never a silent
//! drop), keep-alive across uploads in every framing, pipelined requests, `100 Continue`,
//! and blobs sent from the page cache that arrive whole, ranged and unranged.

mod kit;

use kit::oci::{self, auth, push_blob};
use kit::standin::{Reply, StandIn};
use kit::{bytes, digest, Node, NodeOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response read off a kept connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A connection on which requests are written by hand and answers read one at a time.
struct Conn {
    out: TcpStream,
    input: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn {
            out: s.try_clone().unwrap(),
            input: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)
    }

    /// The next answer; `None` when the server closed the connection first.
    fn answer(&mut self, head_only: bool) -> Option<Answer> {
        let mut line = String::new();
        match self.input.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.input.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut a = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 100 {
            return Some(a);
        }
        if let Some(n) = a.header("content-length") {
            let mut body = vec![0; n.parse().unwrap()];
            self.input.read_exact(&mut body).unwrap();
            a.body = body;
        } else if a.header("transfer-encoding") == Some("chunked") {
            loop {
                let mut size = String::new();
                self.input.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.input.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                a.body.extend_from_slice(&chunk[..n]);
            }
        }
        Some(a)
    }

    /// Whether the server has closed the connection (EOF or reset).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.input.read(&mut b), Ok(0) | Err(_))
    }
}

/// The refusal check: the head of a request with a body of `len` bytes goes out, its
/// answer (`status`) comes back before any of the body, then the body and a second
/// request follow on the same connection. Either the second request is answered, or the
/// first answer said `Connection: close` and the connection is closed: never a
/// connection dropped without a word.
fn refused_before_the_body(addr: SocketAddr, head: &str, len: usize, status: u16) {
    let mut c = Conn::open(addr);
    c.send(format!("{head}Host: site\r\nContent-Length: {len}\r\n\r\n").as_bytes())
        .unwrap();
    let first = c.answer(false).expect("an answer before the body");
    assert_eq!(first.status, status, "{head}: {first:?}");
    // The body, then the next request: the server may have closed meanwhile.
    let _ = c.send(&vec![b'x'; len]);
    let _ = c.send(b"GET /healthz HTTP/1.1\r\nHost: site\r\n\r\n");
    if first.closes() {
        assert!(
            c.closed(),
            "{head}: announced close, but the connection stayed"
        );
        return;
    }
    let second = c.answer(false).unwrap_or_else(|| {
        panic!("{head}: {status} without Connection: close, then the connection was dropped")
    });
    assert_eq!(second.status, 200, "{head}: {second:?}");
    assert_eq!(second.body, b"ok\n");
}

#[test]
fn every_refusal_before_the_body_keeps_the_connection_or_says_it_closes() {
    let node = Node::start(NodeOptions {
        max_manifest_size: Some(64 << 10),
        ..NodeOptions::push()
    });
    let a = format!("Authorization: {}\r\n", auth());
    let zero = "0".repeat(64);
    // 401: an upload's last PUT without credentials, as the conformance suite's client
    // sends it before retrying with them.
    let put = format!("PUT /v2/t/app/blobs/uploads/abc?digest=sha256:{zero} HTTP/1.1\r\n");
    refused_before_the_body(node.addr, &put, 1000, 401);
    // A body over the drain bound (1 MiB) is never read: the answer says close.
    refused_before_the_body(node.addr, &put, 3 << 20, 401);
    // 400: a repository name the spec does not allow.
    let bad = format!("PUT /v2/T_/app/manifests/v1 HTTP/1.1\r\n{a}");
    refused_before_the_body(node.addr, &bad, 1000, 400);
    // 404: a chunk for an upload that does not exist.
    let patch = format!("PATCH /v2/t/app/blobs/uploads/nosuch HTTP/1.1\r\n{a}");
    refused_before_the_body(node.addr, &patch, 1000, 404);
    // 405: a method the endpoint does not take.
    let post = format!("POST /v2/t/app/manifests/v1 HTTP/1.1\r\n{a}");
    refused_before_the_body(node.addr, &post, 1000, 405);
    // 413: a manifest whose Content-Length is over the limit is refused unread.
    let big = format!(
        "PUT /v2/t/app/manifests/v1 HTTP/1.1\r\n{a}Content-Type: {}\r\n",
        oci::OCI_MANIFEST
    );
    refused_before_the_body(node.addr, &big, 100 << 10, 413);
    refused_before_the_body(node.addr, &big, 2 << 20, 413);
    node.wait_log_line(&["request refused", "SIZE_INVALID"]);
}

#[test]
fn refusals_of_the_pull_through_cache_keep_the_connection_too() {
    // 403 (the upstream refused the node's credentials) and 429 (rate limited), to a
    // client that sent a body with its GET.
    let upstream = StandIn::start(|_, path| {
        if path.contains("/denied/") {
            Reply::Full(
                401,
                vec![("WWW-Authenticate", "Basic realm=\"x\"".into())],
                vec![],
            )
        } else {
            Reply::Full(429, vec![("Retry-After", "7".into())], vec![])
        }
    });
    let node = Node::start(NodeOptions::pulling(upstream.addr, "IfNotPresent", ""));
    let host = upstream.addr;
    let get = format!("GET /v2/{host}/denied/app/manifests/v1 HTTP/1.1\r\n");
    refused_before_the_body(node.addr, &get, 1000, 403);
    let get = format!("GET /v2/{host}/busy/app/manifests/v1 HTTP/1.1\r\n");
    refused_before_the_body(node.addr, &get, 1000, 429);
    assert!(upstream.requests() >= 2);
}

#[test]
fn uploads_in_every_framing_keep_the_connection() {
    let node = Node::start(NodeOptions::push());
    let a = auth();
    let data = bytes(7, 300 << 10);
    let d = digest(&data);
    let mut c = Conn::open(node.addr);
    // Start an upload, send it chunked with a 100-continue wait, close it: one connection.
    c.send(format!("POST /v2/t/app/blobs/uploads/ HTTP/1.1\r\nHost: s\r\nAuthorization: {a}\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap();
    let started = c.answer(false).unwrap();
    assert_eq!(started.status, 202, "{started:?}");
    let location = started.header("location").unwrap().to_owned();
    c.send(format!("PATCH {location} HTTP/1.1\r\nHost: s\r\nAuthorization: {a}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n").as_bytes()).unwrap();
    assert_eq!(c.answer(false).unwrap().status, 100);
    for piece in data.chunks(70_000) {
        c.send(format!("{:x};ext=1\r\n", piece.len()).as_bytes())
            .unwrap();
        c.send(piece).unwrap();
        c.send(b"\r\n").unwrap();
    }
    c.send(b"0\r\nX-Trailer: yes\r\n\r\n").unwrap();
    let patched = c.answer(false).unwrap();
    assert_eq!(patched.status, 202, "{patched:?}");
    assert!(!patched.closes());
    let location = patched.header("location").unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    // The closing PUT and a HEAD of the blob, pipelined in one write.
    c.send(format!("PUT {location}{sep}digest={d} HTTP/1.1\r\nHost: s\r\nAuthorization: {a}\r\nContent-Length: 0\r\n\r\nHEAD /v2/t/app/blobs/{d} HTTP/1.1\r\nHost: s\r\n\r\n").as_bytes()).unwrap();
    assert_eq!(c.answer(false).unwrap().status, 201);
    let head = c.answer(true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("307200"));
    assert_eq!(head.header("docker-content-digest"), Some(d.as_str()));
    // The blob itself and a range of it, still on the same connection.
    c.send(format!("GET /v2/t/app/blobs/{d} HTTP/1.1\r\nHost: s\r\n\r\n").as_bytes())
        .unwrap();
    let whole = c.answer(false).unwrap();
    assert_eq!(whole.status, 200);
    assert_eq!(digest(&whole.body), d);
    c.send(
        format!("GET /v2/t/app/blobs/{d} HTTP/1.1\r\nHost: s\r\nRange: bytes=1000-199999\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let part = c.answer(false).unwrap();
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some("bytes 1000-199999/307200")
    );
    assert_eq!(part.body, data[1000..200_000]);
    // A client that says close gets its answer and then the end of the connection.
    c.send(format!("GET /v2/t/app/blobs/{d} HTTP/1.1\r\nHost: s\r\nRange: bytes=-10\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let last = c.answer(false).unwrap();
    assert_eq!(last.status, 206);
    assert_eq!(last.body, data[data.len() - 10..]);
    assert!(last.closes());
    assert!(c.closed());
}

#[test]
fn malformed_heads_and_ambiguous_framing_are_refused_and_closed() {
    let node = Node::start(NodeOptions::push());
    for (raw, status) in [
        ("GET / HTTP/1.1\r\nHost: s\r\nBad Header\r\n\r\n", 400),
        (
            "PUT /v2/t/app/manifests/v1 HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            "PUT /v2/t/app/manifests/v1 HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            400,
        ),
        (
            "PUT /v2/t/app/manifests/v1 HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
    ] {
        let mut c = Conn::open(node.addr);
        c.send(raw.as_bytes()).unwrap();
        let a = c.answer(false).expect("an answer");
        assert_eq!(a.status, status, "{raw:?}");
        assert!(a.closes(), "{raw:?}");
        assert!(c.closed(), "{raw:?}");
    }
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = Conn::open(node.addr);
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(c.answer(false).unwrap().body, b"ok\n");
    assert!(c.closed());
    // The node still serves.
    let blob = bytes(8, 1000);
    assert_eq!(push_blob(node.addr, "t/app", &blob).status, 201);
}

#[test]
fn pipelined_blob_reads_arrive_whole_and_in_order_to_a_client_that_reads_late() {
    let node = Node::start(NodeOptions::push());
    let blobs: Vec<Vec<u8>> = (0..3)
        .map(|i| bytes(20 + i, (1 << 20) + i as usize))
        .collect();
    for b in &blobs {
        assert_eq!(push_blob(node.addr, "t/app", b).status, 201);
    }
    // Twelve GETs in one write, whole and ranged, before a single byte is read: the
    // socket's buffers fill long before the last answer is due.
    let mut c = Conn::open(node.addr);
    let mut requests = String::new();
    for i in 0..12 {
        let d = digest(&blobs[i % 3]);
        let range = if i % 4 == 3 {
            "Range: bytes=5-1000004\r\n"
        } else {
            ""
        };
        requests.push_str(&format!(
            "GET /v2/t/app/blobs/{d} HTTP/1.1\r\nHost: s\r\n{range}\r\n"
        ));
    }
    c.send(requests.as_bytes()).unwrap();
    for i in 0..12 {
        let want = &blobs[i % 3];
        let a = c.answer(false).expect("every answer");
        if i % 4 == 3 {
            assert_eq!(a.status, 206, "answer {i}");
            assert_eq!(a.body, want[5..1_000_005], "answer {i}");
        } else {
            assert_eq!(a.status, 200, "answer {i}");
            assert_eq!(digest(&a.body), digest(want), "answer {i}");
        }
    }
}

#[test]
fn a_client_waiting_for_100_continue_is_refused_before_it_sends_its_body() {
    let node = Node::start(NodeOptions::push());
    let zero = "0".repeat(64);
    let mut c = Conn::open(node.addr);
    // A gigabyte announced, none of it sent: the refusal comes instead of 100 Continue.
    c.send(format!("PUT /v2/t/app/blobs/uploads/x?digest=sha256:{zero} HTTP/1.1\r\nHost: s\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n").as_bytes()).unwrap();
    let a = c.answer(false).expect("an answer without the body");
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.closes(), "the body was never sent: the connection ends");
    assert!(c.closed());
    // With credentials, the same wait gets its 100 Continue once the upload reads.
    let a = format!("Authorization: {}\r\n", auth());
    let data = bytes(9, 4096);
    let d = digest(&data);
    c = Conn::open(node.addr);
    c.send(format!("POST /v2/t/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: s\r\n{a}Content-Length: 4096\r\nExpect: 100-continue\r\n\r\n").as_bytes()).unwrap();
    assert_eq!(c.answer(false).unwrap().status, 100);
    c.send(&data).unwrap();
    assert_eq!(c.answer(false).unwrap().status, 201);
}
