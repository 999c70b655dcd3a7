//! Manifests and indexes as clients push them: no panic, whatever the bytes and the
//! declared media type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use site_core::Manifest;

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(*first) % TYPES.len()];
    if let Ok(m) = Manifest::parse(body, content_type) {
        let _ = m.blob_references();
        let _ = m.manifest_references();
    }
});
