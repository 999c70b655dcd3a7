//! Digests: no panic; what parses is itself when printed, of a known algorithm and length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use site_core::Digest;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.as_str(), s);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
    }
});
