//! The node's configuration file: no panic on any text, only a clear error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use site_agent::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Config::parse(s);
    }
});
