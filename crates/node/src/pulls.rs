//! Pulls feed the least-recently-used order of eviction. A pull is noted in memory (a
//! manifest GET must stay a read); [`Pulls::record`] turns what was noted into one
//! `Touch` command, before each GC decision, so eviction sees what clients used.

use crate::ordering::Orderer;
use crate::Result;
use site_core::Digest;
use site_state::Command;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The manifests pulled since the last `Touch`. Cheap to clone; clones share them.
#[derive(Clone)]
pub struct Pulls {
    pulled: Arc<Mutex<HashSet<Digest>>>,
    orderer: Orderer,
}

impl Pulls {
    /// Pulls recorded through `orderer`.
    pub(crate) fn new(orderer: Orderer) -> Pulls {
        Pulls {
            pulled: Arc::default(),
            orderer,
        }
    }

    /// Notes that manifest `d` was pulled.
    pub fn note(&self, d: &Digest) {
        let mut pulled = self.pulled.lock().expect("pulls lock");
        if !pulled.contains(d) {
            pulled.insert(d.clone());
        }
    }

    /// Records the pulls noted since the last call as one `Touch` command; returns how
    /// many manifests it touched.
    pub async fn record(&self) -> Result<usize> {
        let digests: Vec<Digest> = {
            let mut pulled = self.pulled.lock().expect("pulls lock");
            pulled.drain().collect()
        };
        if digests.is_empty() {
            return Ok(0);
        }
        let n = digests.len();
        self.orderer.execute(Command::Touch { digests }).await?;
        Ok(n)
    }
}
