#![deny(missing_docs)]
//! `fleet-sim`: a model of a rollout to 10,000 edge sites behind real-world links, driven
//! by the tower's own rollout code (`site-fleet`). Seeded and reproducible; see README.md.

pub mod images;
pub mod links;
pub mod plot;
pub mod report;
pub mod rng;
pub mod run;

use links::Weather;
use run::Scenario;

/// The scenarios a run models.
pub const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "first rollout",
        version: 1,
        weather: Weather::NORMAL,
    },
    Scenario {
        name: "update",
        version: 2,
        weather: Weather::NORMAL,
    },
    Scenario {
        name: "first rollout, heavy link loss",
        version: 1,
        weather: Weather::HEAVY_LOSS,
    },
    Scenario {
        name: "update, heavy link loss",
        version: 2,
        weather: Weather::HEAVY_LOSS,
    },
];
