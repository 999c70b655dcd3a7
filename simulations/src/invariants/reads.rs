//! No read returns bytes that do not match the digest asked for.

use site_core::Digest;

pub fn check(node: u64, asked: &Digest, got: &[u8]) -> Option<String> {
    let actual = Digest::of(got);
    (actual != *asked).then(|| format!("node {node} served {actual} for {asked}"))
}
