//! A Raft log entry and a membership change as a log holds them (protobuf, or JSON from
//! earlier versions): no panic, and what decodes encodes back to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use site_entry::{decode_entry, decode_member_change, encode_entry, encode_member_change};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = decode_entry(data) {
        assert_eq!(decode_entry(&encode_entry(&e)).as_ref(), Ok(&e));
    }
    if let Ok(c) = decode_member_change(data) {
        assert_eq!(decode_member_change(&encode_member_change(&c)).as_ref(), Ok(&c));
    }
});
