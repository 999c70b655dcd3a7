//! `site-sim`: a deterministic simulation of a site under faults. Every run is drawn
//! from one seed; a failing seed prints what happened and replays exactly with
//! `--seed S`.
//!
//! ```text
//! site-sim --seeds 10000          # seeds 0..10000, on every core
//! site-sim --seeds 500 --from 7   # seeds 7..507
//! site-sim --seed 42              # one seed, with its whole trace
//! ```

use site_sim::world;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A seed that failed: its violations and what happened.
type Failed = (u64, Vec<String>, Vec<String>);

struct Args {
    seeds: u64,
    from: u64,
    replay: Option<u64>,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        seeds: 1000,
        from: 0,
        replay: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} takes a number"))
        };
        match flag.as_str() {
            "--seeds" => a.seeds = value("--seeds")?,
            "--from" => a.from = value("--from")?,
            "--seed" => a.replay = Some(value("--seed")?),
            "--threads" => a.threads = value("--threads")?.max(1) as usize,
            "-h" | "--help" => {
                println!("usage: site-sim [--seeds N] [--from S] [--threads T] | --seed S");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(a)
}

use site_sim::run;

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("site-sim: {e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    if args.replay.is_none() {
        // Panics are reported per seed.
        std::panic::set_hook(Box::new(|_| {}));
    }
    if let Some(seed) = args.replay {
        let (violations, _) = world::World::new(seed, true).run();
        for v in &violations {
            println!("VIOLATION: {v}");
        }
        println!(
            "1 seeds, {} violations, {:.1} s",
            violations.len(),
            started.elapsed().as_secs_f64()
        );
        std::process::exit(i32::from(!violations.is_empty()));
    }
    let next = AtomicU64::new(args.from);
    let end = args.from + args.seeds;
    let failed: Mutex<Vec<Failed>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                let (violations, trace) = run(seed);
                if !violations.is_empty() {
                    failed
                        .lock()
                        .expect("results")
                        .push((seed, violations, trace));
                }
            });
        }
    });
    let mut failed = failed.into_inner().expect("results");
    failed.sort_by_key(|(seed, _, _)| *seed);
    let violations: usize = failed.iter().map(|(_, v, _)| v.len()).sum();
    if let Some((seed, _, trace)) = failed.first() {
        println!("--- what happened in seed {seed} (replay: site-sim --seed {seed}) ---");
        for line in trace {
            println!("{line}");
        }
    }
    for (seed, vs, _) in &failed {
        for v in vs.iter().take(3) {
            println!("seed {seed}: {v}");
        }
    }
    println!(
        "{} seeds, {violations} violations, {:.1} s",
        args.seeds,
        started.elapsed().as_secs_f64()
    );
    std::process::exit(i32::from(violations > 0));
}
