//! The run's table: time for 50/90/99% of the sites, the tower's egress against what the
//! sites lacked, and the whole-image design against the rollout's.

use crate::run::{Design, Outcome};

/// `2 h 05 m`, `4 m 10 s`, `-` for never.
pub fn duration(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "-".to_owned();
    };
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{} h {:02} m", s / 3600, s % 3600 / 60)
    } else {
        format!("{} m {:02} s", s / 60, s % 60)
    }
}

/// Bytes in GB (10^9), one decimal.
pub fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// The table of every outcome, as Markdown.
pub fn table(outcomes: &[Outcome], sites: usize) -> String {
    let mut out = String::from(
        "| scenario | design | 50% | 90% | 99% | all | not done | tower egress | sites lacked | egress / lacked | upstream | attempts (failed) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3}x | {} | {} ({}) |\n",
            o.scenario,
            o.design.name(),
            duration(o.time_to(0.5, sites)),
            duration(o.time_to(0.9, sites)),
            duration(o.time_to(0.99, sites)),
            duration(o.time_to(1.0, sites)),
            o.unfinished,
            gb(o.egress),
            gb(o.lacked()),
            o.egress as f64 / o.lacked().max(1) as f64,
            gb(o.upstream),
            o.attempts,
            o.failures,
        ));
    }
    out
}

/// Per scenario: the whole-image design's egress and time to 99% against the rollout's.
pub fn comparison(outcomes: &[Outcome], sites: usize) -> String {
    let mut out = String::from(
        "| scenario | egress, whole images / dedup+resume | time to 99%, whole images / dedup+resume |\n|---|---|---|\n",
    );
    for o in outcomes.iter().filter(|o| o.design == Design::DedupResume) {
        let Some(naive) = outcomes
            .iter()
            .find(|n| n.design == Design::Naive && n.scenario == o.scenario)
        else {
            continue;
        };
        let time = match (naive.time_to(0.99, sites), o.time_to(0.99, sites)) {
            (Some(n), Some(d)) => format!("{:.2}x", n / d),
            (None, Some(_)) => "never / done".to_owned(),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {:.2}x | {time} |\n",
            o.scenario,
            naive.egress as f64 / o.egress.max(1) as f64
        ));
    }
    out
}
