//! The HTTP router's path parser and the query parser: no panic on any request line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use site_http::path;
use site_http::query::Query;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (p, q) = s.split_once('?').unwrap_or((s, ""));
    let _ = path::parse(p);
    let query = Query::parse(Some(q));
    for k in ["n", "last", "ns", "digest", "mount", "from", "artifactType"] {
        let _ = query.get(k);
    }
});
