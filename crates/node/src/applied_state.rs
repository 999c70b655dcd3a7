//! The site's state machine as this node has applied it, and how far: what readers ask
//! questions of (`read`), what a writer waits for after its change is ordered
//! (`applied_up_to`). Only the apply task changes it (`write`, `replace`).

use site_state::State;
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use tokio::sync::watch;

/// The applied state and index. Cheap to clone; clones share them.
#[derive(Clone)]
pub struct SiteState {
    /// Readers hold the lock only while they copy what they need.
    state: Arc<RwLock<State>>,
    /// The index applied to the state, as the apply task sends it.
    applied: watch::Receiver<u64>,
}

impl SiteState {
    /// `state`, applied up to what `applied` says.
    pub fn new(state: State, applied: watch::Receiver<u64>) -> SiteState {
        SiteState {
            state: Arc::new(RwLock::new(state)),
            applied,
        }
    }

    /// Answers a question from the applied state. Keep `f` short: the apply task waits
    /// for it.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().expect("state lock"))
    }

    /// The state, to change: the apply task's alone.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("state lock")
    }

    /// Resolves once this node has applied the log up to `index`; `false` if the apply
    /// task stopped first.
    pub async fn applied_up_to(&self, index: u64) -> bool {
        self.applied.clone().wait_for(|a| *a >= index).await.is_ok()
    }
}
