//! The fleet model on a small fleet: reproducible, every site served, and the rollout's
//! design sending each missing byte once (plus what cuts lose), against whole images.

use fleet_sim::images::application;
use fleet_sim::run::{run, Design, Outcome, Setup};
use fleet_sim::SCENARIOS;
use site_fleet::missing;
use site_fleet::schedule::Backoff;

const MIB: u64 = 1 << 20;

fn setup(seed: u64) -> Setup {
    // A tenth of a thirtieth of the full model: 300 sites, 30 at once, the tower's egress
    // scaled with them.
    Setup {
        sites: 300,
        seed,
        egress: 125e6 * 0.03,
        max_parallel: 30,
        step_s: 1.0,
        horizon_s: 7.0 * 86_400.0,
        backoff: Backoff::default(),
    }
}

fn both(scenario: usize, seed: u64) -> (Outcome, Outcome) {
    let s = setup(seed);
    (
        run(&s, &SCENARIOS[scenario], Design::DedupResume),
        run(&s, &SCENARIOS[scenario], Design::Naive),
    )
}

#[test]
fn a_seed_replays_exactly() {
    let s = setup(5);
    let a = run(&s, &SCENARIOS[2], Design::DedupResume);
    assert_eq!(a, run(&s, &SCENARIOS[2], Design::DedupResume));
    assert_ne!(a, run(&setup(6), &SCENARIOS[2], Design::DedupResume));
}

#[test]
fn on_usual_links_each_missing_byte_is_sent_once_and_pulled_once() {
    for scenario in [0, 1] {
        let (dedup, naive) = both(scenario, 1);
        assert_eq!(dedup.unfinished, 0, "{}", dedup.scenario);
        assert_eq!(naive.unfinished, 0, "{}", naive.scenario);
        assert_eq!(dedup.done_at.len(), 300);
        // A site whose attempts all went through was sent exactly what it lacked; each
        // cut can cost at most the message in flight.
        for ((lacked, sent), retries) in dedup.per_site.iter().zip(&dedup.retries) {
            if *retries == 0 {
                assert_eq!(sent, lacked, "{}", dedup.scenario);
            }
            assert!(
                *sent >= *lacked && *sent <= lacked + u64::from(*retries) * MIB,
                "{}: sent {sent} for {lacked} lacked, {retries} cuts",
                dedup.scenario
            );
        }
        assert!(dedup.retries.iter().filter(|r| **r == 0).count() > 250);
        let extra = dedup.egress - dedup.lacked();
        assert!(
            extra <= dedup.failures * MIB,
            "{}: {extra} bytes beyond what was lacked, {} cuts",
            dedup.scenario,
            dedup.failures
        );
        // Each blob came from the upstream once (some site lacked every one of them).
        let v = application(SCENARIOS[scenario].version);
        let unique: u64 = missing::union(v.iter().map(Vec::as_slice))
            .iter()
            .map(|b| b.size)
            .sum();
        assert_eq!(dedup.upstream, unique);
        let whole = missing::whole_images(v.iter().map(Vec::as_slice));
        for (_, sent) in &naive.per_site {
            assert!(*sent >= whole, "whole images every time: {sent} < {whole}");
        }
        assert_eq!(naive.upstream, naive.egress);
    }
}

#[test]
fn an_update_sends_a_third_of_what_whole_images_would() {
    let (dedup, naive) = both(1, 2);
    let ratio = naive.egress as f64 / dedup.egress as f64;
    assert!(ratio > 3.0, "{ratio}");
    assert!(dedup.time_to(0.99, 300) < naive.time_to(0.99, 300));
}

#[test]
fn under_heavy_link_loss_every_site_is_served_and_cuts_cost_little() {
    let (dedup, naive) = both(3, 3);
    assert_eq!(dedup.unfinished, 0);
    assert!(
        dedup.failures > 100,
        "the links were cut: {}",
        dedup.failures
    );
    let extra = dedup.egress - dedup.lacked();
    assert!(
        extra <= dedup.failures * MIB,
        "each cut loses at most the message in flight: {extra} for {} cuts",
        dedup.failures
    );
    assert!(naive.egress > 3 * dedup.egress);
}

#[test]
fn the_figure_is_a_png() {
    let s = Setup {
        sites: 40,
        max_parallel: 10,
        ..setup(4)
    };
    let outcomes: Vec<Outcome> = [Design::DedupResume, Design::Naive]
        .into_iter()
        .map(|d| run(&s, &SCENARIOS[1], d))
        .collect();
    let dir = std::env::temp_dir().join(format!("fleet-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fleet.png");
    fleet_sim::plot::draw(&path, &outcomes, &[SCENARIOS[1].name]).unwrap();
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(png.len() > 20_000, "{} bytes", png.len());
    std::fs::remove_dir_all(&dir).unwrap();
}
