//! `kill -9` in the middle of writes: after a restart no partial blob or manifest is ever
//! served, everything acknowledged is there, and the same upload can be done again.

mod kit;

use kit::oci::{self, auth, push_blob, push_manifest, OCI_MANIFEST};
use kit::{bytes, digest, request, Node, NodeOptions};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const REPO: &str = "crash/app";

/// Every blob file on disk holds exactly the bytes its name promises.
fn assert_blob_files_whole(node: &Node) {
    for (path, _) in node.blob_files() {
        let name = path.rsplit('/').next().unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(
            digest(&data),
            format!("sha256:{name}"),
            "partial or corrupt blob file {path}"
        );
    }
}

/// Sends a request head and the first `send` bytes of `body`, signals, then (if `rest`)
/// keeps sending slowly (64 KiB per 10 ms: seconds for the rest of a large body), or else
/// waits, until the connection breaks (the node is killed).
fn stream_body(
    addr: std::net::SocketAddr,
    method: &'static str,
    path: String,
    body: Arc<Vec<u8>>,
    send: usize,
    rest: bool,
    started: mpsc::Sender<()>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // Bounded: a node that neither reads nor closes fails the test rather than hangs.
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n", auth(), body.len()).unwrap();
        s.write_all(&body[..send]).unwrap();
        s.flush().unwrap();
        started.send(()).unwrap();
        if !rest {
            let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
            return;
        }
        for chunk in body[send..].chunks(64 * 1024) {
            if s.write_all(chunk).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    })
}

#[test]
fn kill_during_large_uploads_serves_nothing_partial_and_uploads_again() {
    let mut node = Node::start(NodeOptions::push());
    let chunked = Arc::new(bytes(11, 48 << 20));
    let mono = Arc::new(bytes(12, 40 << 20));
    let (chunked_digest, mono_digest) = (digest(&chunked), digest(&mono));

    let a = auth();
    let r = request(
        node.addr,
        "POST",
        &format!("/v2/{REPO}/blobs/uploads/"),
        &[("Authorization", a.as_str())],
        b"",
    );
    let location = r.header("location").unwrap().to_owned();
    let (tx, rx) = mpsc::channel();
    let t1 = stream_body(
        node.addr,
        "PATCH",
        location.clone(),
        chunked.clone(),
        20 << 20,
        true,
        tx.clone(),
    );
    let t2 = stream_body(
        node.addr,
        "POST",
        format!("/v2/{REPO}/blobs/uploads/?digest={mono_digest}"),
        mono.clone(),
        16 << 20,
        true,
        tx,
    );
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the first part of each body sent within 60 s");
    }
    // Pull the plug once the node has written the parts sent at once (the session files
    // of the chunked upload and of the monolithic one), while the rest still trickles in.
    let id = location
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let written = |node: &Node| {
        let files = node.upload_files();
        let size = |chunked: bool| {
            files
                .iter()
                .filter(|(p, _)| p.ends_with(&format!("/{id}")) == chunked)
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0)
        };
        (size(true), size(false))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (c, m) = written(&node);
        if c >= 20 << 20 && m >= 16 << 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s the node had written {c} bytes of the chunked upload and {m} of the monolithic one"
        );
        thread::sleep(Duration::from_millis(5));
    }
    node.kill9();
    t1.join().unwrap();
    t2.join().unwrap();
    // Both bodies were cut in the middle: part of each is on disk, not all of it.
    let (c, m) = written(&node);
    assert!(
        (20 << 20..chunked.len() as u64).contains(&c),
        "the chunked upload was not cut mid-body: {c} bytes written"
    );
    assert!(
        (16 << 20..mono.len() as u64).contains(&m),
        "the monolithic upload was not cut mid-body: {m} bytes written"
    );

    node.restart();
    for d in [&chunked_digest, &mono_digest] {
        let r = request(node.addr, "GET", &format!("/v2/{REPO}/blobs/{d}"), &[], b"");
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "BLOB_UNKNOWN"),
            "partial blob served"
        );
        let r = request(
            node.addr,
            "HEAD",
            &format!("/v2/{REPO}/blobs/{d}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 404);
    }
    assert!(
        node.blob_files().is_empty(),
        "a partial blob reached the blob store: {:?}",
        node.blob_files()
    );

    // The interrupted chunked session resumes from where the node says it stands...
    let r = request(
        node.addr,
        "GET",
        &location,
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!(
        r.status,
        204,
        "session lost: {}",
        String::from_utf8_lossy(&r.body)
    );
    let have: usize = r
        .header("range")
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        + 1;
    assert!(have >= 20 << 20 && have < chunked.len(), "offset {have}");
    let r = request(
        node.addr,
        "PATCH",
        &location,
        &[
            ("Authorization", a.as_str()),
            ("Content-Range", &format!("{have}-{}", chunked.len() - 1)),
        ],
        &chunked[have..],
    );
    assert_eq!(r.status, 202);
    let r = request(
        node.addr,
        "PUT",
        &format!("{location}?digest={chunked_digest}"),
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // ...and the monolithic one is simply done again.
    assert_eq!(push_blob(node.addr, REPO, &mono).status, 201);
    for (d, data) in [(&chunked_digest, &chunked), (&mono_digest, &mono)] {
        let r = request(node.addr, "GET", &format!("/v2/{REPO}/blobs/{d}"), &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), data.len());
        assert_eq!(&digest(&r.body), d);
    }
    assert_blob_files_whole(&node);
}

#[test]
fn kill_during_manifest_writes_loses_nothing_acknowledged_and_serves_nothing_partial() {
    let mut node = Node::start(NodeOptions::push());
    let images: Vec<_> = (0..40)
        .map(|i| oci::image(100 + i, &[2000 + i as usize], "amd64"))
        .collect();
    for img in &images {
        for b in img.blobs() {
            assert_eq!(push_blob(node.addr, REPO, &b.data).status, 201);
        }
    }

    // One manifest arrives only half way when the node dies.
    let half_sent = images[39].clone();
    let (tx, rx) = mpsc::channel();
    let body = Arc::new(half_sent.manifest.clone());
    let t = stream_body(
        node.addr,
        "PUT",
        format!("/v2/{REPO}/manifests/half"),
        body.clone(),
        body.len() / 2,
        false,
        tx,
    );
    rx.recv_timeout(Duration::from_secs(60))
        .expect("half the manifest sent within 60 s");

    // Two writers push manifests as fast as they can; the node is killed among them.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (acked, next, dead, images, addr) = (
                acked.clone(),
                next.clone(),
                dead.clone(),
                images.clone(),
                node.addr,
            );
            thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= 39 || dead.load(Ordering::SeqCst) {
                    return;
                }
                let r = std::panic::catch_unwind(|| {
                    push_manifest(
                        addr,
                        REPO,
                        &format!("t{i}"),
                        OCI_MANIFEST,
                        &images[i].manifest,
                    )
                });
                match r {
                    Ok(r) if r.status == 201 => acked.lock().unwrap().push(i),
                    _ => return,
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 10 {
        assert!(
            Instant::now() < deadline,
            "{} manifests acknowledged after 60 s",
            acked.lock().unwrap().len()
        );
        thread::sleep(Duration::from_millis(1));
    }
    node.kill9();
    dead.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = w.join();
    }
    t.join().unwrap();
    let acked = acked.lock().unwrap().clone();

    node.restart();
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/{REPO}/manifests/half"),
        &[],
        b"",
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let r = request(
        node.addr,
        "GET",
        &format!("/v2/{REPO}/manifests/{}", half_sent.digest),
        &[],
        b"",
    );
    assert_eq!(r.status, 404);
    for (i, img) in images.iter().enumerate().take(39) {
        let r = request(
            node.addr,
            "GET",
            &format!("/v2/{REPO}/manifests/t{i}"),
            &[],
            b"",
        );
        if acked.contains(&i) {
            assert_eq!(r.status, 200, "acknowledged manifest t{i} lost");
        }
        match r.status {
            200 => {
                assert_eq!(
                    digest(&r.body),
                    img.digest,
                    "t{i} served partial or wrong bytes"
                );
                assert_eq!(r.header("docker-content-digest"), Some(img.digest.as_str()));
            }
            404 => assert_eq!(r.error_code(), "MANIFEST_UNKNOWN"),
            s => panic!("unexpected status {s} for t{i}"),
        }
    }
    assert_blob_files_whole(&node);

    // Everything can be pushed again and is then served whole.
    for (i, img) in images.iter().enumerate() {
        let tag = if i == 39 {
            "half".to_owned()
        } else {
            format!("t{i}")
        };
        assert_eq!(
            push_manifest(node.addr, REPO, &tag, OCI_MANIFEST, &img.manifest).status,
            201
        );
        let r = request(
            node.addr,
            "GET",
            &format!("/v2/{REPO}/manifests/{tag}"),
            &[],
            b"",
        );
        assert_eq!(digest(&r.body), img.digest);
    }
}
