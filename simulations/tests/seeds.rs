//! The slice of the simulation that runs with the test suite: a few hundred seeds with
//! no violation, and a seed that replays exactly. `site-sim --seeds 10000` runs more.

/// Seeds of the slice: the first ones (`site-sim --seeds 300`).
const SLICE: u64 = 300;

#[test]
fn a_slice_of_seeds_runs_without_a_violation() {
    let mut failed = Vec::new();
    for seed in 0..SLICE {
        let (violations, trace) = site_sim::run(seed);
        if !violations.is_empty() {
            failed.push((seed, violations, trace));
        }
    }
    if let Some((seed, violations, trace)) = failed.first() {
        for line in trace {
            eprintln!("{line}");
        }
        panic!(
            "{} of {SLICE} seeds violate the site's promises; seed {seed} (replay: site-sim --seed {seed}): {violations:#?}",
            failed.len()
        );
    }
}

#[test]
fn one_seed_replays_exactly() {
    for seed in [3, 41] {
        let (v1, t1) = site_sim::run(seed);
        let (v2, t2) = site_sim::run(seed);
        assert!(
            t1.len() > 20,
            "seed {seed} did too little to compare: {t1:?}"
        );
        assert_eq!(t1, t2, "seed {seed} ran differently twice");
        assert_eq!(v1, v2);
    }
}
