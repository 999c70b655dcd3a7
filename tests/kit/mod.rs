//! The one test-kit of the end-to-end tests and benchmarks: real `site-agent` processes
//! on loopback, a raw HTTP/1.1 client (so tests can send what real clients never would),
//! OCI image layouts built on the fly, and the external tools the tests drive.
#![allow(dead_code, unused_imports)]

pub mod blackhole;
pub mod conformance;
pub mod containerd;
pub mod fleet;
pub mod grpc;
pub mod http;
pub mod https;
pub mod node;
pub mod oci;
pub mod openapi;
pub mod postgres;
pub mod proxy;
pub mod standin;
pub mod tls;
pub mod tools;
pub mod tower;
pub mod upstream;

pub use http::{get_status, request};
pub use node::{Node, NodeOptions};

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of some bytes.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (xorshift), so failures replay exactly.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
