//! Request heads as the plain HTTP/1.1 server reads them off the network: no panic on
//! any bytes, a head's length within what was given, and a head found whole stays whole
//! (and the same length) with more bytes after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use site_http::request_head;

fuzz_target!(|data: &[u8]| {
    match request_head(data) {
        Ok(Some(len)) => {
            assert!(len <= data.len());
            let mut more = data.to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(request_head(&more), Ok(Some(len)), "{:?}", String::from_utf8_lossy(data));
        }
        Ok(None) => {}
        Err(status) => assert!(matches!(status, 400 | 431 | 501), "{status}"),
    }
});
