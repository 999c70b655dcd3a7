use crate::missing::{self, Blob};
use crate::rollout::{Image, Manifest, Rollout, State};
use crate::schedule::{due, next_due_ms, totals, Backoff};
use serde_json::json;

fn blob(n: u8, size: u64) -> Blob {
    Blob {
        digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
        size,
    }
}

fn rollout(sites: &[&str], max_parallel: u32) -> Rollout {
    let image = |tag: &str, blobs: Vec<Blob>| Image {
        requested: format!("reg:5000/pos:{tag}"),
        repository: "reg:5000/pos".into(),
        tag: Some(tag.into()),
        digest: format!("sha256:{}", "ab".repeat(32)),
        manifests: vec![Manifest {
            digest: format!("sha256:{}", "ab".repeat(32)),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 500,
        }],
        blobs,
    };
    let mut r = Rollout {
        id: "r1".into(),
        application: "pos".into(),
        images: vec![
            image("v3", vec![blob(1, 100), blob(2, 1000)]),
            image("v3-sidecar", vec![blob(2, 1000), blob(3, 10)]),
        ],
        selector: json!({}),
        max_parallel,
        bandwidth: None,
        created_ms: 0,
        cancelled_ms: None,
        superseded_by: None,
        sites: Default::default(),
        pulling: None,
    };
    r.join(sites.iter().copied());
    r
}

#[test]
fn shared_blobs_count_once() {
    let r = rollout(&["a"], 1);
    let all = r.blobs();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().map(|b| b.size).sum::<u64>(), 1110);
    assert_eq!(
        missing::whole_images(r.images.iter().map(|i| i.blobs.as_slice())),
        2110
    );
    assert_eq!(
        missing::bytes_to_send(&[(1000, 400), (100, 0), (10, 20)]),
        700
    );
    let named = vec![all[1].digest.clone()];
    assert_eq!(
        missing::to_send(&all, &named).unwrap(),
        vec![all[1].clone()]
    );
    assert!(missing::to_send(&all, &["sha256:00".into()]).is_err());
}

#[test]
fn at_most_max_parallel_sites_are_in_flight() {
    let mut r = rollout(&["a", "b", "c", "d", "e"], 2);
    let first = due(&r, 0);
    assert_eq!(first, ["a", "b"]);
    for id in &first {
        r.start(id, 0);
    }
    assert!(due(&r, 0).is_empty());
    r.present("a");
    assert!(due(&r, 0).is_empty(), "present is still in flight");
    r.scheduled("a", 10);
    assert_eq!(due(&r, 10), ["c"]);
}

#[test]
fn a_failed_site_waits_out_its_backoff_then_comes_first() {
    let backoff = Backoff {
        first_ms: 1000,
        max_ms: 8000,
    };
    let mut r = rollout(&["a", "b", "c"], 1);
    r.start("a", 0);
    r.failed("a", "SITE_UNREACHABLE", "connection refused", 0, &backoff);
    let s = &r.sites["a"];
    assert_eq!((s.state, s.retries), (State::Failed, 1));
    assert!(
        (800..1200).contains(&s.next_attempt_ms),
        "{}",
        s.next_attempt_ms
    );
    assert_eq!(next_due_ms(&r), Some(s.next_attempt_ms));
    assert_eq!(due(&r, 0), ["b"], "waiting sites go first");
    let at = s.next_attempt_ms;
    // Once a is due again, c (waiting since the start) still goes first, then a.
    r.start("b", 0);
    r.scheduled("b", 5);
    assert_eq!(due(&r, at), ["c"]);
    r.start("c", at);
    r.scheduled("c", at);
    assert_eq!(due(&r, at), ["a"]);
}

#[test]
fn backoff_doubles_to_its_cap_and_spreads() {
    let b = Backoff {
        first_ms: 1000,
        max_ms: 60_000,
    };
    for retries in 1..60 {
        let d = b.delay_ms("site-1", retries);
        let base = (1000u64 << (retries - 1).min(40)).min(60_000);
        assert!(d >= base * 8 / 10 && d < base * 12 / 10, "{retries}: {d}");
    }
    let spread: std::collections::HashSet<u64> =
        (0..50).map(|i| b.delay_ms(&format!("s{i}"), 3)).collect();
    assert!(spread.len() > 10, "sites that failed together spread out");
    assert_eq!(b.delay_ms("x", 3), b.delay_ms("x", 3));
}

#[test]
fn joining_recovering_and_cancelling() {
    let mut r = rollout(&["a"], 3);
    assert_eq!(r.join(["a", "b"]), 1);
    r.start("a", 0);
    r.present("b");
    r.recover();
    assert!(r.sites.values().all(|s| s.state == State::Waiting));
    assert_eq!(r.sites["a"].retries, 0);
    assert!(r.forget("b"));
    r.cancelled_ms = Some(1);
    assert!(due(&r, 1).is_empty());
}

#[test]
fn totals_count_bytes_and_estimate_time_left() {
    let mut r = rollout(&["a", "b", "c"], 3);
    let t = totals(&r, 0);
    assert_eq!(t.selected, 3);
    assert_eq!(t.sites["waiting"], 3);
    assert_eq!(t.bytes_left, 3 * 1110, "unasked sites lack every blob");
    assert_eq!(t.eta_seconds, None);

    r.start("a", 0);
    r.asked("a", &[(1000, 200), (100, 0)]);
    assert_eq!(r.sites["a"].lacked, Some(1100));
    assert_eq!(r.sites["a"].bytes_left, 900);
    r.sent("a", 400);
    r.start("b", 0);
    r.asked("b", &[]);
    r.present("b");
    r.scheduled("b", 1000);
    let t = totals(&r, 2000);
    assert_eq!(t.bytes_done, 400);
    // a: 500 left; b: done; c: not asked, guessed at the mean lacked (1100 + 0) / 2.
    assert_eq!(t.bytes_left, 500 + 550);
    assert_eq!(t.sites["delivering"], 1);
    assert_eq!(t.sites["scheduled"], 1);
    // 400 bytes in 2 s: 200 B/s, 1050 bytes left.
    assert_eq!(t.eta_seconds, Some(6));
    assert!(!r.complete());
    for id in ["a", "c"] {
        r.start(id, 2000);
        r.present(id);
        r.scheduled(id, 3000);
    }
    assert!(r.complete());
    assert_eq!(totals(&r, 3000).bytes_left, 0);
}

#[test]
fn no_site_is_started_while_the_images_are_pulled() {
    let mut r = rollout(&["a", "b"], 10);
    let images = std::mem::take(&mut r.images);
    r.pulling = Some(crate::rollout::Pulling {
        requested: vec!["reg:5000/pos:v3".into()],
        next_attempt_ms: 100,
        ..Default::default()
    });
    assert!(due(&r, 1_000).is_empty(), "a site started while pulling");
    assert!(!r.complete());
    assert_eq!(r.requested(), ["reg:5000/pos:v3"]);
    assert!(!r.pull_due(99) && r.pull_due(100));
    // A failed attempt waits for the backoff, longer each time.
    let backoff = Backoff {
        first_ms: 1_000,
        max_ms: 60_000,
    };
    r.pull_failed("UPSTREAM_UNREACHABLE", "down", 100, &backoff);
    let p = r.pulling.clone().unwrap();
    assert_eq!((p.retries, p.reason.as_str()), (1, "UPSTREAM_UNREACHABLE"));
    assert!(p.next_attempt_ms >= 100 + 800 && !r.pull_due(100));
    r.pull_failed("UPSTREAM_UNREACHABLE", "down", 100, &backoff);
    assert!(r.pulling.as_ref().unwrap().next_attempt_ms > p.next_attempt_ms);
    // Cancelled, no attempt is due any more.
    let mut cancelled = r.clone();
    cancelled.cancel(200, None);
    assert!(!cancelled.pull_due(u64::MAX));
    // Every image held: the sites start.
    r.pulled(images);
    assert!(r.pulling.is_none() && r.requested().len() == 2);
    assert_eq!(due(&r, 1_000).len(), 2);
}
