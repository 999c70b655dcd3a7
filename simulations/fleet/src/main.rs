//! `fleet-sim [--sites N] [--seed S] [--plot FILE]`: every scenario with both designs,
//! two runs at a time; prints the tables and draws the figure.

use fleet_sim::run::{run, Design, Outcome, Setup};
use fleet_sim::{plot, report, SCENARIOS};
use site_fleet::schedule::Backoff;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut setup = Setup {
        sites: 10_000,
        seed: 1,
        egress: 125e6,
        max_parallel: 1000,
        step_s: 1.0,
        horizon_s: 7.0 * 86_400.0,
        backoff: Backoff::default(),
    };
    let mut plot_path = Some(PathBuf::from("fleet.png"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--sites" => setup.sites = value().parse().unwrap_or(setup.sites),
            "--seed" => setup.seed = value().parse().unwrap_or(setup.seed),
            "--plot" => plot_path = Some(PathBuf::from(value())),
            "--no-plot" => plot_path = None,
            other => {
                eprintln!("fleet-sim: unknown argument {other:?}\nusage: fleet-sim [--sites N] [--seed S] [--plot FILE | --no-plot]");
                return ExitCode::from(2);
            }
        }
    }
    let started = std::time::Instant::now();
    let jobs: Vec<(usize, Design)> = (0..SCENARIOS.len())
        .flat_map(|s| [(s, Design::DedupResume), (s, Design::Naive)])
        .collect();
    // Two runs at a time (the machine's two cores), results in the jobs' order.
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    for pair in jobs.chunks(2).enumerate() {
        let (k, chunk) = pair;
        let results: Vec<Outcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(s, d)| {
                    let setup = &setup;
                    scope.spawn(move || run(setup, &SCENARIOS[*s], *d))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a run panicked"))
                .collect()
        });
        for (j, o) in results.into_iter().enumerate() {
            outcomes[k * 2 + j] = Some(o);
        }
    }
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();
    println!(
        "{} sites, seed {}, tower egress {} Mbit/s, {} sites at once\n",
        setup.sites,
        setup.seed,
        setup.egress * 8.0 / 1e6,
        setup.max_parallel
    );
    println!("{}", report::table(&outcomes, setup.sites));
    println!("{}", report::comparison(&outcomes, setup.sites));
    if let Some(path) = plot_path {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        if let Err(e) = plot::draw(&path, &outcomes, &names) {
            eprintln!("fleet-sim: cannot draw {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("figure: {}", path.display());
    }
    println!("{:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
