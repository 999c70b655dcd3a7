//! What a read promises under `verify_reads = "first"`: a node never serves bytes from a
//! copy it knows to be bad, and a bad copy is found by its first read after a start or by
//! the next scrub pass. So a read returns bytes that do not match the digest asked for
//! only from a copy that was checked good since the node started (written, fetched,
//! scrubbed or read whole: its reads are no longer hashed) and damaged after the node's
//! last scrub pass; the client's own digest check refuses them, as runtimes do.

use site_core::Digest;

/// `unhashed_rot`: the read was not hashed (the copy was checked since the start) and the
/// copy was damaged after the node's last scrub pass.
pub fn check(node: u64, asked: &Digest, got: &[u8], unhashed_rot: bool) -> Option<String> {
    let actual = Digest::of(got);
    (actual != *asked && !unhashed_rot).then(|| {
        format!("node {node} served {actual} for {asked} from a copy it should have checked")
    })
}
