//! Every cargo-fuzz target of `fuzz/` runs a short while from its committed seed corpus
//! without a crash, a hang or a memory blow-up (libFuzzer, a nightly toolchain). Longer
//! runs: `cd fuzz && cargo +nightly fuzz run TARGET -- -max_total_time=600`.

mod kit;

use kit::tools::require;
use std::path::Path;
use std::process::Command;

/// Seconds each target runs (`FUZZ_SECONDS`, 15 by default).
fn seconds() -> u64 {
    std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

/// The targets `fuzz/Cargo.toml` declares.
fn targets(fuzz: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    let parsed: toml::Value = toml::from_str(&manifest).unwrap();
    parsed["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

fn nightly(fuzz: &Path) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo", "fuzz"])
        .current_dir(fuzz)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR");
    c
}

#[test]
fn every_fuzz_target_runs_clean_from_its_seed_corpus() {
    let Some(_) = require("rustup") else { return };
    let Some(_) = require("cargo-fuzz") else {
        return;
    };
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let targets = targets(&fuzz);
    assert!(targets.len() >= 8, "{targets:?}");
    let built = nightly(&fuzz).arg("build").output().unwrap();
    assert!(
        built.status.success(),
        "cargo fuzz build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    for t in &targets {
        let seeds = fuzz.join("corpus").join(t);
        assert!(
            std::fs::read_dir(&seeds).unwrap().count() > 0,
            "{t} has no seed corpus"
        );
        // New inputs go to a scratch corpus; the committed seeds are only read.
        let scratch = tempfile::tempdir().unwrap();
        let out = nightly(&fuzz)
            .args(["run", t])
            .arg(scratch.path())
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", seconds()))
            .args(["-rss_limit_mb=2048", "-timeout=10"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "fuzz target {t} failed:\n{}",
            said.lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        let runs = said
            .lines()
            .rev()
            .find(|l| l.starts_with("Done "))
            .unwrap_or("");
        eprintln!("{t}: {runs}");
    }
}
