//! Image references as `docker pull` reads them, and repository names as requests and
//! pins carry them: no panic, and what parses prints back to something that parses the
//! same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use site_core::reference::DOCKER_HUB;
use site_core::{ImageReference, Repository};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ImageReference::parse(s) {
        let again = ImageReference::parse(&r.to_string()).expect("a parsed reference prints back");
        assert_eq!(again, r);
    }
    if let Ok(repo) = Repository::parse_normalized(s, DOCKER_HUB) {
        let again = Repository::parse_normalized(&repo.to_string(), DOCKER_HUB)
            .expect("a parsed repository prints back");
        assert_eq!(again, repo);
    }
    let _ = Repository::from_request(s, Some(s), DOCKER_HUB);
});
