//! Pulls feed the least-recently-used order of eviction. A pull is noted in memory (a
//! manifest GET must stay a read); [`Store::record_pulls`] turns what was noted into one
//! `Touch` command, before each GC decision, so eviction sees what clients used.

use crate::{Result, Store};
use site_core::Digest;
use site_state::Command;

impl Store {
    /// Notes that manifest `d` was pulled.
    pub fn note_pull(&self, d: &Digest) {
        let mut pulled = self.inner.pulled.lock().expect("pulls lock");
        if !pulled.contains(d) {
            pulled.insert(d.clone());
        }
    }

    /// Records the pulls noted since the last call as one `Touch` command; returns how
    /// many manifests it touched.
    pub async fn record_pulls(&self) -> Result<usize> {
        let digests: Vec<Digest> = {
            let mut pulled = self.inner.pulled.lock().expect("pulls lock");
            pulled.drain().collect()
        };
        if digests.is_empty() {
            return Ok(0);
        }
        let n = digests.len();
        self.inner
            .orderer
            .execute(Command::Touch { digests })
            .await?;
        Ok(n)
    }
}
