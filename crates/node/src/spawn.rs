//! Where the node's own tasks run: a fetch shared by its callers runs on a task of its
//! own ([`crate::Fetches`]). On a node that is the tokio runtime ([`TokioSpawn`]); a
//! simulation runs them on an executor of its own, one per node, which a crash drops.

use std::future::Future;
use std::pin::Pin;

/// A task: runs to its end, its output kept by whoever started it.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts tasks.
pub trait Spawn: Send + Sync + 'static {
    /// Runs `task` beside the caller.
    fn spawn(&self, task: Task);
}

/// The tokio runtime the node runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSpawn;

impl Spawn for TokioSpawn {
    fn spawn(&self, task: Task) {
        tokio::spawn(task);
    }
}
