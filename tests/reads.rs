//! Which reads of a blob are checked against its digest (`[node] verify_reads`): a copy
//! is checked when written, by the scrub, and on its first whole read after a start;
//! later reads go from the page cache to the socket unhashed. A byte flipped while the
//! node was down is caught by that first read, which is cut short, and the copy is
//! fetched again from a peer.

mod kit;

use kit::oci::push_blob;
use kit::{bytes, digest, request, Node, NodeOptions};
use std::time::{Duration, Instant};

/// `site_blob_read_bytes_hashed_total` of a node.
fn hashed(node: &Node) -> u64 {
    let text = String::from_utf8(request(node.addr, "GET", "/metrics", &[], b"").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("site_blob_read_bytes_hashed_total "))
        .unwrap_or_else(|| panic!("no site_blob_read_bytes_hashed_total in\n{text}"))
        .parse()
        .unwrap()
}

/// GETs the whole blob and checks the bytes.
fn read_whole(node: &Node, path: &str, want: &str) {
    let r = request(node.addr, "GET", path, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(digest(&r.body), want);
}

fn node_with(verify_reads: &str) -> Node {
    Node::start(NodeOptions {
        verify_reads: Some(verify_reads.into()),
        ..NodeOptions::push()
    })
}

#[test]
fn first_reads_after_a_start_are_hashed_and_later_ones_are_not() {
    let mut node = node_with("first");
    let data = bytes(1, 3 << 20);
    let d = digest(&data);
    assert_eq!(push_blob(node.addr, "t/app", &data).status, 201);
    let path = format!("/v2/t/app/blobs/{d}");
    // Checked as it was written: no read needs a hash.
    read_whole(&node, &path, &d);
    assert_eq!(hashed(&node), 0);
    node.terminate();
    node.restart();
    // After the start: the first whole read is hashed, the second is not.
    read_whole(&node, &path, &d);
    assert_eq!(hashed(&node), data.len() as u64);
    read_whole(&node, &path, &d);
    let r = request(node.addr, "GET", &path, &[("Range", "bytes=10-99")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[10..100]);
    assert_eq!(hashed(&node), data.len() as u64);
}

#[test]
fn always_hashes_every_whole_read_and_never_none() {
    let data = bytes(2, 1 << 20);
    let d = digest(&data);
    let path = format!("/v2/t/app/blobs/{d}");
    let always = node_with("always");
    assert_eq!(push_blob(always.addr, "t/app", &data).status, 201);
    read_whole(&always, &path, &d);
    read_whole(&always, &path, &d);
    assert_eq!(hashed(&always), 2 * data.len() as u64);
    let mut never = node_with("never");
    assert_eq!(push_blob(never.addr, "t/app", &data).status, 201);
    never.terminate();
    never.restart();
    read_whole(&never, &path, &d);
    assert_eq!(hashed(&never), 0);
}

/// Flips one byte of a file.
fn flip(path: &str, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_at(&[!byte[0]], at).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn a_byte_flipped_while_down_is_caught_by_the_first_read_and_repaired_from_a_peer() {
    let mut nodes = kit::node::cluster(3, &NodeOptions::push());
    let l = kit::node::leader(&nodes.iter().collect::<Vec<_>>());
    let data = bytes(3, 2 << 20);
    let d = digest(&data);
    assert_eq!(push_blob(nodes[l].addr, "t/app", &data).status, 201);
    let v = (l + 1) % nodes.len();
    let file = |node: &Node| {
        node.blob_files()
            .into_iter()
            .find(|(p, size)| p.ends_with(&d[7..]) && *size == data.len() as u64)
            .map(|(p, _)| p)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = loop {
        if let Some(p) = file(&nodes[v]) {
            break p;
        }
        assert!(Instant::now() < deadline, "the blob never reached node {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    nodes[v].terminate();
    flip(&path, 1 << 20);
    nodes[v].restart();
    let url = format!("/v2/t/app/blobs/{d}");
    // The first read: its length is promised, but it ends before the last bytes.
    let r = request(nodes[v].addr, "GET", &url, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("2097152"));
    assert!(
        r.body.len() < data.len(),
        "a read of a bad copy was sent whole"
    );
    nodes[v].wait_log("does not match its digest: the read is cut short");
    nodes[v].wait_log("no longer matches its digest: removed");
    // The copy comes back from a peer; reads are whole (from a peer meanwhile).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let good = std::fs::read(&path).is_ok_and(|b| digest(&b) == d);
        if good {
            break;
        }
        assert!(Instant::now() < deadline, "the copy was never repaired");
        std::thread::sleep(Duration::from_millis(50));
    }
    read_whole(&nodes[v], &url, &d);
    read_whole(&nodes[v], &url, &d);
}
