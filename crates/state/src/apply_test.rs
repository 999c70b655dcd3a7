//! Unit tests of `apply`, and the GC property test: over random sequences of deliveries,
//! schedules, pins, time and sweeps, no referenced image ever loses a part, and nothing
//! unreferenced outlives grace plus one sweep.

use super::*;
use crate::command::Entry;
use crate::{SweepReport, SweepRules};

const GRACE: u64 = 100;
const CACHE_TTL: u64 = 1000;

fn repo(name: &str) -> Repository {
    Repository::parse_normalized(name, "docker.io").unwrap()
}

fn blob(n: u64) -> (Digest, u64) {
    (Digest::of(format!("blob-{n}").as_bytes()), 1000 + n)
}

fn image_body(config: u64, layers: &[u64]) -> String {
    let desc = |n: u64, mt: &str| {
        let (d, size) = blob(n);
        format!(r#"{{"mediaType":"{mt}","digest":"{d}","size":{size}}}"#)
    };
    let layers: Vec<String> = layers
        .iter()
        .map(|n| desc(*n, "application/vnd.oci.image.layer.v1.tar+gzip"))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        desc(config, "application/vnd.oci.image.config.v1+json"),
        layers.join(",")
    )
}

fn run(s: &mut State, now: u64, cmd: Command) -> Result<Outcome> {
    let before = s.clone();
    let r = s.apply(&Entry { now, cmd });
    if r.is_err() {
        assert_eq!(*s, before, "a refused command changed the state");
    }
    r
}

/// Applies a sweep at `now` with the test's grace period; returns its report.
fn sweep(s: &mut State, now: u64, evict_bytes: u64) -> SweepReport {
    run(
        s,
        now,
        Command::sweep(&SweepRules {
            grace_ms: GRACE,
            evict_bytes,
            cache_ttl_ms: CACHE_TTL,
        }),
    )
    .unwrap()
    .sweep
    .unwrap()
}

/// Delivers an image the tower's way: blobs, then the manifest linking them.
fn deliver(s: &mut State, now: u64, r: &Repository, config: u64, layers: &[u64]) -> ImageRef {
    add_blobs(s, now, &[&[config], layers].concat());
    let body = image_body(config, layers);
    let out = run(
        s,
        now,
        Command::PutManifest {
            repo: r.clone(),
            body,
            digest: None,
            content_type: None,
            tag: Some("v1".into()),
            link_references: true,
            cached: false,
        },
    )
    .unwrap();
    ImageRef {
        repo: r.clone(),
        digest: out.digest.unwrap(),
    }
}

#[test]
fn manifest_refused_while_blobs_missing() {
    let mut s = State::default();
    let r = repo("app");
    let err = run(
        &mut s,
        1,
        Command::PutManifest {
            repo: r.clone(),
            body: image_body(1, &[2]),
            digest: None,
            content_type: None,
            tag: None,
            link_references: true,
            cached: false,
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        StateError::ManifestBlobUnknown(vec![blob(1).0, blob(2).0])
    );
    // The push path needs the blobs in the repository itself.
    let (d, size) = blob(1);
    run(
        &mut s,
        1,
        Command::AddBlob {
            repo: Some(repo("other")),
            digest: d,
            size,
            recorded: false,
        },
    )
    .unwrap();
    let (d, size) = blob(2);
    run(
        &mut s,
        1,
        Command::AddBlob {
            repo: Some(r.clone()),
            digest: d,
            size,
            recorded: false,
        },
    )
    .unwrap();
    let err = run(
        &mut s,
        1,
        Command::PutManifest {
            repo: r,
            body: image_body(1, &[2]),
            digest: None,
            content_type: None,
            tag: None,
            link_references: false,
            cached: false,
        },
    )
    .unwrap_err();
    assert_eq!(err, StateError::ManifestBlobUnknown(vec![blob(1).0]));
}

#[test]
fn schedule_refuses_what_is_not_whole_and_is_idempotent() {
    let mut s = State::default();
    let r = repo("app");
    let img = deliver(&mut s, 1, &r, 1, &[2, 3]);
    let absent = ImageRef {
        repo: r.clone(),
        digest: Digest::of(b"nothing"),
    };
    let err = run(
        &mut s,
        2,
        Command::Schedule {
            app: "web".into(),
            images: vec![img.clone(), absent.clone()],
        },
    )
    .unwrap_err();
    let StateError::ImagesNotReady(problems) = err else {
        panic!("wrong error")
    };
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains(&absent.digest.to_string()));
    for bad in ["", "-x", &"a".repeat(129), "a b"] {
        assert!(matches!(
            run(
                &mut s,
                2,
                Command::Schedule {
                    app: bad.into(),
                    images: vec![img.clone()]
                }
            ),
            Err(StateError::Invalid(_))
        ));
    }
    let sched = Command::Schedule {
        app: "web".into(),
        images: vec![img.clone()],
    };
    assert!(run(&mut s, 2, sched.clone()).unwrap().changed);
    assert!(!run(&mut s, 3, sched).unwrap().changed);
    // A live image cannot be deleted over the push API.
    assert!(matches!(
        run(
            &mut s,
            3,
            Command::DeleteManifest {
                repo: r,
                digest: img.digest
            }
        ),
        Err(StateError::InUse(_))
    ));
}

#[test]
fn sweep_respects_grace_shared_layers_and_leases() {
    let mut s = State::default();
    let a = deliver(&mut s, 0, &repo("a"), 1, &[10, 11]);
    let b = deliver(&mut s, 0, &repo("b"), 2, &[10, 12]);
    run(
        &mut s,
        0,
        Command::Schedule {
            app: "a".into(),
            images: vec![a.clone()],
        },
    )
    .unwrap();
    run(
        &mut s,
        0,
        Command::Schedule {
            app: "b".into(),
            images: vec![b.clone()],
        },
    )
    .unwrap();
    run(&mut s, 10, Command::Unschedule { app: "a".into() }).unwrap();
    // Within grace nothing goes.
    assert!(sweep(&mut s, 10 + GRACE - 1, 0).manifests.is_empty());
    // A lease keeps a blob of the dead image.
    run(&mut s, 50, Command::lease(vec![blob(11).0], 1000)).unwrap();
    let report = sweep(&mut s, 10 + GRACE, 0);
    assert_eq!(report.manifests, vec![a.digest.clone()]);
    assert_eq!(report.blobs, vec![blob(1).0]);
    assert!(s.manifest(&a.digest).is_none());
    assert!(s.missing_parts(&b.digest).is_empty(), "shared layer kept");
    assert!(s.blob(&blob(11).0).is_some(), "leased blob kept");
    let report = sweep(&mut s, 1000, 0);
    assert_eq!(report.blobs, vec![blob(11).0]);
}

#[test]
fn eviction_is_lru_and_never_live() {
    let mut s = State::default();
    let old = deliver(&mut s, 0, &repo("old"), 1, &[2]);
    let newer = deliver(&mut s, 5, &repo("newer"), 3, &[4]);
    let live = deliver(&mut s, 0, &repo("live"), 5, &[6]);
    run(
        &mut s,
        0,
        Command::Pin {
            image: live.clone(),
        },
    )
    .unwrap();
    run(
        &mut s,
        6,
        Command::Touch {
            digests: vec![old.digest.clone()],
        },
    )
    .unwrap();
    // `newer` is now least recently used; one byte to free evicts it alone.
    let report = sweep(&mut s, 7, 1);
    assert_eq!(report.evicted, vec![newer.digest]);
    assert_eq!(s.reclaimable_bytes(7), blob(1).1 + blob(2).1);
    let report = sweep(&mut s, 8, u64::MAX);
    assert_eq!(report.evicted, vec![old.digest]);
    assert!(s.missing_parts(&live.digest).is_empty());
}

#[test]
fn index_keeps_children_and_forget_drops_broken() {
    let mut s = State::default();
    let r = repo("multi");
    let amd = deliver(&mut s, 0, &r, 1, &[2]);
    let arm = deliver(&mut s, 0, &r, 3, &[4]);
    let m = |d: &Digest| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":10}}"#
        )
    };
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
        m(&amd.digest),
        m(&arm.digest)
    );
    let idx = run(
        &mut s,
        0,
        Command::PutManifest {
            repo: r.clone(),
            body,
            digest: None,
            content_type: None,
            tag: None,
            link_references: true,
            cached: false,
        },
    )
    .unwrap()
    .digest
    .unwrap();
    let idx = ImageRef {
        repo: r.clone(),
        digest: idx,
    };
    run(
        &mut s,
        0,
        Command::Schedule {
            app: "m".into(),
            images: vec![idx.clone()],
        },
    )
    .unwrap();
    let report = sweep(&mut s, 10 * GRACE, u64::MAX);
    assert!(
        report.manifests.is_empty(),
        "children of a live index are live"
    );
    run(
        &mut s,
        10 * GRACE,
        Command::ForgetBlobs {
            digests: vec![blob(4).0],
        },
    )
    .unwrap();
    assert!(s.manifest(&arm.digest).is_none());
    assert!(
        s.manifest(&idx.digest).is_none(),
        "an index missing a child is dropped"
    );
    assert!(s.manifest(&amd.digest).is_some());
}

#[test]
fn snapshot_round_trip() {
    let mut s = State::default();
    let img = deliver(&mut s, 0, &repo("a"), 1, &[2]);
    run(&mut s, 0, Command::Pin { image: img }).unwrap();
    let json = serde_json::to_vec(&s).unwrap();
    assert_eq!(serde_json::from_slice::<State>(&json).unwrap(), s);
}

/// xorshift: the property test replays exactly from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn gc_never_deletes_a_live_image_and_nothing_dead_outlives_grace() {
    let (mut deleted, mut evicted) = (0usize, 0usize);
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut s = State::default();
        let mut now = 0u64;
        let mut known: Vec<ImageRef> = Vec::new();
        for step in 0..300 {
            let cmd = match rng.below(8) {
                0 | 1 => {
                    let r = repo(&format!("r{}", rng.below(3)));
                    let layers: Vec<u64> =
                        (0..1 + rng.below(3)).map(|_| 100 + rng.below(12)).collect();
                    let img = deliver(&mut s, now, &r, rng.below(6), &layers);
                    if !known.contains(&img) {
                        known.push(img);
                    }
                    continue;
                }
                2 if !known.is_empty() => {
                    let n = 1 + rng.below(2);
                    let images = (0..n)
                        .map(|_| known[rng.below(known.len() as u64) as usize].clone())
                        .collect();
                    Command::Schedule {
                        app: format!("app{}", rng.below(4)),
                        images,
                    }
                }
                3 => Command::Unschedule {
                    app: format!("app{}", rng.below(4)),
                },
                4 if !known.is_empty() => Command::Pin {
                    image: known[rng.below(known.len() as u64) as usize].clone(),
                },
                5 if !known.is_empty() => Command::Unpin {
                    image: known[rng.below(known.len() as u64) as usize].clone(),
                },
                6 => {
                    now += rng.below(GRACE);
                    continue;
                }
                _ => Command::sweep(&SweepRules {
                    grace_ms: GRACE,
                    cache_ttl_ms: CACHE_TTL,
                    evict_bytes: if rng.below(4) == 0 {
                        rng.below(5000)
                    } else {
                        0
                    },
                }),
            };
            let is_sweep = matches!(cmd, Command::Sweep { .. });
            let _ = run(&mut s, now, cmd);
            if is_sweep {
                // Nothing unreferenced outlives grace + one sweep.
                let live = s.live_manifests();
                for (d, m) in &s.manifests {
                    if !live.contains(d) {
                        let since = m
                            .unreferenced_since
                            .expect("dead manifests know since when");
                        assert!(
                            since + GRACE > now,
                            "seed {seed} step {step}: {d} outlived grace"
                        );
                    }
                }
                deleted += s.last_sweep().map_or(0, |r| r.manifests.len());
                evicted += s.last_sweep().map_or(0, |r| r.evicted.len());
            }
            // Every referenced image is whole and pullable from its repository.
            for image in s.apps.values().flatten().chain(s.pins.iter()) {
                assert!(
                    s.repo_manifest(&image.repo, &image.digest).is_some(),
                    "seed {seed} step {step}: {image} gone"
                );
                assert!(
                    s.missing_parts(&image.digest).is_empty(),
                    "seed {seed} step {step}: {image} incomplete"
                );
            }
            // Blobs referenced by any manifest are present.
            for m in s.manifests.values() {
                for b in &m.blobs {
                    assert!(
                        s.blobs.contains_key(b),
                        "seed {seed} step {step}: dangling {b}"
                    );
                }
            }
        }
    }
    // The sequences exercised the sweep, not just the bookkeeping.
    assert!(
        deleted > 100 && evicted > 10,
        "deleted {deleted}, evicted {evicted}"
    );
}

#[test]
fn a_blob_relied_on_as_recorded_is_refused_once_swept() {
    let mut s = State::default();
    let (d, size) = blob(7);
    let add = |recorded| Command::AddBlob {
        repo: None,
        digest: d.clone(),
        size,
        recorded,
    };
    // Never recorded: a proposer relying on the site's copies is refused.
    assert_eq!(
        run(&mut s, 1, add(true)).unwrap_err(),
        StateError::BlobUnknown(d.clone())
    );
    run(&mut s, 1, add(false)).unwrap();
    // Recorded again later: accepted, and its grace period starts over.
    run(&mut s, 50, add(true)).unwrap();
    assert_eq!(s.blob(&d).unwrap().added, 50);
}

/// Puts a manifest as the pull-through cache does; returns its digest.
fn cache(s: &mut State, now: u64, r: &Repository, body: String, tag: Option<&str>) -> Digest {
    run(
        s,
        now,
        Command::PutManifest {
            repo: r.clone(),
            body,
            digest: None,
            content_type: None,
            tag: tag.map(str::to_owned),
            link_references: true,
            cached: true,
        },
    )
    .unwrap()
    .digest
    .unwrap()
}

/// Records blobs `ns` (see [`blob`]) the way a delivery does.
fn add_blobs(s: &mut State, now: u64, ns: &[u64]) {
    for n in ns {
        let (digest, size) = blob(*n);
        run(
            s,
            now,
            Command::AddBlob {
                repo: None,
                digest,
                size,
                recorded: false,
            },
        )
        .unwrap();
    }
}

#[test]
fn a_cached_image_outlives_grace_until_unpulled_for_the_cache_ttl() {
    let mut s = State::default();
    let r = repo("cached");
    add_blobs(&mut s, 0, &[1, 2]);
    let d = cache(&mut s, 0, &r, image_body(1, &[2]), Some("v1"));
    assert!(s.manifest(&d).unwrap().cached);
    assert!(sweep(&mut s, 5 * GRACE, 0).manifests.is_empty());
    // A pull moves its TTL on.
    run(
        &mut s,
        CACHE_TTL - 1,
        Command::Touch {
            digests: vec![d.clone()],
        },
    )
    .unwrap();
    assert!(sweep(&mut s, CACHE_TTL + 10, 0).manifests.is_empty());
    let report = sweep(&mut s, 2 * CACHE_TTL, 0);
    assert_eq!(report.manifests, vec![d]);
    assert_eq!(report.blobs.len(), 2, "its blobs go with it");
}

#[test]
fn a_cached_image_is_evicted_under_pressure_but_never_while_live() {
    let mut s = State::default();
    let r = repo("cached");
    add_blobs(&mut s, 0, &[1, 2, 3, 4]);
    let live = cache(&mut s, 0, &r, image_body(1, &[2]), None);
    let idle = cache(&mut s, 0, &r, image_body(3, &[4]), None);
    let image = ImageRef {
        repo: r.clone(),
        digest: live.clone(),
    };
    run(&mut s, 1, Command::Pin { image }).unwrap();
    let report = sweep(&mut s, 2, u64::MAX);
    assert_eq!(report.evicted, vec![idle]);
    assert!(s.manifest(&live).is_some());
}

#[test]
fn a_cached_index_holds_only_the_pulled_platforms_until_delivered_whole() {
    let mut s = State::default();
    let r = repo("multi");
    add_blobs(&mut s, 0, &[1, 2]);
    let amd = cache(&mut s, 0, &r, image_body(1, &[2]), None);
    let arm = Digest::of(b"an arm64 manifest nobody pulled");
    let m = |d: &Digest| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":10}}"#
        )
    };
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
        m(&amd),
        m(&arm)
    );
    // Not cache: every child must be there.
    let refused = run(
        &mut s,
        0,
        Command::PutManifest {
            repo: r.clone(),
            body: body.clone(),
            digest: None,
            content_type: None,
            tag: Some("v1".into()),
            link_references: true,
            cached: false,
        },
    );
    assert!(matches!(refused, Err(StateError::ManifestBlobUnknown(_))));
    let idx = cache(&mut s, 0, &r, body, Some("v1"));
    assert!(
        s.missing_parts(&idx).is_empty(),
        "whole for what was pulled"
    );
    assert_eq!(s.tag(&r, "v1"), Some(&idx));
    // Losing a child it holds breaks it, as for any index.
    run(
        &mut s,
        1,
        Command::ForgetBlobs {
            digests: vec![blob(2).0],
        },
    )
    .unwrap();
    assert!(s.manifest(&amd).is_none());
    assert!(
        s.manifest(&idx).is_some(),
        "absent children were never needed"
    );
}

#[test]
fn a_delivery_of_a_cached_image_makes_it_site_content() {
    let mut s = State::default();
    let r = repo("app");
    add_blobs(&mut s, 0, &[1, 2]);
    let d = cache(&mut s, 0, &r, image_body(1, &[2]), None);
    let delivered = deliver(&mut s, 5, &r, 1, &[2]);
    assert_eq!(delivered.digest, d);
    assert!(!s.manifest(&d).unwrap().cached);
    assert_eq!(sweep(&mut s, 10 * GRACE, 0).manifests, vec![d]);
}

#[test]
fn entries_and_states_written_in_seconds_read_as_milliseconds() {
    // An entry written before times had milliseconds.
    let old: Entry = serde_json::from_str(
        r#"{"now":1700000000,"cmd":{"op":"sweep","grace_secs":60,"evict_bytes":0,"cache_ttl_secs":5}}"#,
    )
    .unwrap();
    assert_eq!(old.now, 1_700_000_000_000);
    let new = serde_json::to_string(&old).unwrap();
    assert!(new.contains(r#""now_ms":1700000000000"#), "{new}");
    assert_eq!(serde_json::from_str::<Entry>(&new).unwrap(), old);

    // A state saved in seconds: every time it holds is converted when it is read.
    let mut s = State::default();
    let a = deliver(&mut s, 10, &repo("a"), 1, &[2]);
    run(&mut s, 20, Command::lease(vec![blob(2).0], 30)).unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(json["clock"], "milliseconds");
    json.as_object_mut().unwrap().remove("clock");
    let read = State::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
    let m = read.manifest(&a.digest).unwrap();
    assert_eq!((m.added, m.last_used), (10_000, 10_000));
    assert_eq!(read.blob(&blob(2).0).unwrap().added, 10_000);
    assert_eq!(read.leases[&blob(2).0], 30_000);
    // One already in milliseconds is read as it is.
    assert_eq!(State::decode(&serde_json::to_vec(&s).unwrap()).unwrap(), s);
}

#[test]
fn a_grace_period_shorter_than_a_second_counts_in_milliseconds() {
    let mut s = State::default();
    let a = deliver(&mut s, 1_000, &repo("a"), 1, &[2]);
    let rules = |grace_ms| SweepRules {
        grace_ms,
        cache_ttl_ms: u64::MAX,
        evict_bytes: 0,
    };
    run(
        &mut s,
        1_000,
        Command::Sweep {
            grace_secs: 0,
            evict_bytes: 0,
            cache_ttl_secs: None,
            grace_ms: Some(250),
            cache_ttl_ms: None,
        },
    )
    .unwrap();
    assert!(s.manifest(&a.digest).is_some(), "unreferenced for 0 ms");
    assert!(s.plan_sweep(1_249, &rules(250)).manifests.is_empty());
    assert_eq!(
        s.plan_sweep(1_250, &rules(250)).manifests,
        vec![a.digest.clone()]
    );
}

#[test]
fn a_lease_for_a_duration_ends_by_the_entrys_time() {
    let mut s = State::default();
    add_blobs(&mut s, 0, &[11]);
    // Proposed with a wall clock a day ahead, stamped by the leader at 100: it ends at
    // 100 + 500 of the log's time.
    run(&mut s, 100, Command::lease_for(vec![blob(11).0], 500)).unwrap();
    assert_eq!(s.leases[&blob(11).0], 600);
    assert!(sweep(&mut s, 599, 0).blobs.is_empty(), "leased until 600");
    assert_eq!(sweep(&mut s, 600, 0).blobs, vec![blob(11).0]);
}

#[test]
fn a_states_time_is_read_from_its_bytes_alone() {
    let mut s = State::default();
    deliver(&mut s, 10, &repo("a"), 1, &[2]);
    s.note_time(7_000);
    let json = serde_json::to_vec(&s).unwrap();
    assert_eq!(State::time_of(&json), 7_000);
    assert_eq!(State::decode(&json).unwrap().time(), 7_000);
    // Saved before the time was kept: the latest time it holds, once decoded.
    let mut old: serde_json::Value = serde_json::to_value(&s).unwrap();
    old.as_object_mut().unwrap().remove("time");
    let old = serde_json::to_vec(&old).unwrap();
    assert_eq!(State::time_of(&old), 0);
    assert_eq!(State::decode(&old).unwrap().time(), 10);
    assert_eq!(State::time_of(b"not a state"), 0);
}
