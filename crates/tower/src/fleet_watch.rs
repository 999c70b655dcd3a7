//! `towerctl rollout status --watch`: a running rollout's progress until it ends. On a
//! terminal, a bar per state over the selected sites and one over the bytes; otherwise a
//! line each time the totals change.

use crate::exit::Error;
use crate::fleet::{totals_line, Tower};
use crate::output::line;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use site_fleet_api::{RolloutSummary, RolloutView, Totals};
use std::io::IsTerminal;
use std::time::Duration;

/// How often the rollout is read.
const POLL: Duration = Duration::from_millis(500);
/// The states with a bar, in order.
const STATES: [&str; 5] = ["waiting", "delivering", "present", "scheduled", "failed"];

/// Follows rollout `id` until it is complete (`Ok`) or cancelled (an error).
pub async fn watch(tower: &Tower, id: &str) -> Result<(), Error> {
    let path = format!("/rollouts/{id}");
    let bars = std::io::stderr().is_terminal().then(Bars::new);
    let mut last = String::new();
    loop {
        let r: RolloutSummary = tower
            .exchange::<RolloutView>("GET", &path, None::<&()>)
            .await?
            .typed
            .summary;
        let summary = totals_line(&r);
        match &bars {
            Some(bars) => bars.show(&r.totals),
            None if summary != last => line(&summary)?,
            None => {}
        }
        last = summary;
        match r.status.as_str() {
            // Its images are fetched into the tower's registry first.
            "pulling" | "running" => tokio::time::sleep(POLL).await,
            "complete" => {
                if let Some(bars) = bars {
                    bars.finish();
                    line(&last)?;
                }
                return Ok(());
            }
            other => {
                if let Some(bars) = bars {
                    bars.finish();
                }
                return Err(Error::Other(format!("rollout {id} is {other}")));
            }
        }
    }
}

struct Bars {
    _multi: MultiProgress,
    states: Vec<ProgressBar>,
    bytes: ProgressBar,
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>11} {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let states = STATES
            .iter()
            .map(|s| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(*s);
                bar
            })
            .collect();
        let bytes = multi.add(ProgressBar::new(0));
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>11} {bar:40} {bytes}/{total_bytes} eta {msg}")
        {
            bytes.set_style(style);
        }
        bytes.set_prefix("bytes");
        Bars {
            _multi: multi,
            states,
            bytes,
        }
    }

    fn show(&self, t: &Totals) {
        let counts = [t.waiting, t.delivering, t.present, t.scheduled, t.failed];
        for (bar, n) in self.states.iter().zip(counts) {
            bar.set_length(t.selected as u64);
            bar.set_position(n as u64);
        }
        self.bytes.set_length(t.bytes_done + t.bytes_left);
        self.bytes.set_position(t.bytes_done);
        self.bytes.set_message(
            t.eta_seconds
                .map_or("unknown".to_owned(), |s| format!("{s} s")),
        );
    }

    fn finish(&self) {
        for bar in self.states.iter().chain([&self.bytes]) {
            bar.finish();
        }
    }
}
