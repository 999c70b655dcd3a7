//! `Range` and `Content-Range` headers: no panic, and a range served lies in the blob.
#![no_main]

use libfuzzer_sys::fuzz_target;
use site_http::ranges::{parse_content_range, parse_range};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (size, text) = data.split_at(8);
    let size = u64::from_le_bytes(size.try_into().unwrap());
    let Ok(s) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(Some(r)) = parse_range(s, size) {
        assert!(r.start <= r.end && r.end < size, "{s:?} of {size}: {r:?}");
    }
    let _ = parse_content_range(s, Some(size));
    let _ = parse_content_range(s, None);
});
