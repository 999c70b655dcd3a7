//! A storage failure is loud. When this node cannot persist or apply the site's log, or
//! its database or blob directory fails, it stops taking writes and voting (its Raft
//! driver stops), raises `Event::NodeFailed`, reports the failure in its status and on
//! `/readyz` (503), and the embedded library's handle ends with a distinct error; the
//! enforcer and the tower see a broken node as broken. Reads of what is intact go on.
//! A blob that does not fit a full disk is no failure (the write is refused for lack of
//! space and goes on once GC frees some); a log that cannot be written is, full disk or
//! not: the node cannot follow the site's log without it.

use crate::events::Events;
use crate::NodeError;
use site_state::Event;
use std::sync::Arc;
use tokio::sync::watch;

/// Whether this node's storage failed, and what failed. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Failure {
    node: u64,
    what: Arc<watch::Sender<Option<String>>>,
    events: Events,
}

impl Failure {
    /// Node `node`'s failure, none yet; announced on `events`.
    pub fn new(node: u64, events: Events) -> Failure {
        Failure {
            node,
            what: Arc::new(watch::channel(None).0),
            events,
        }
    }

    /// What failed, once this node's storage has failed.
    pub fn get(&self) -> Option<String> {
        self.what.borrow().clone()
    }

    /// Resolves with what failed once this node's storage fails.
    pub async fn failed(&self) -> String {
        let mut failure = self.what.subscribe();
        let failed = match failure.wait_for(Option::is_some).await {
            Ok(f) => f.clone().unwrap_or_default(),
            Err(_) => "the node stopped".into(),
        };
        failed
    }

    /// Wakes when the failure changes (see [`Failure::get`]).
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.what.subscribe()
    }

    /// Marks this node failed (once): see the module's documentation.
    pub fn fail(&self, why: String) {
        let first = self.what.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            *f = Some(why.clone());
            true
        });
        if first {
            tracing::error!(failure = %why, "this node's storage failed: it takes no writes and does not vote until restarted; reads of what is intact go on");
            self.events.publish(Event::NodeFailed {
                node: self.node,
                reason: why,
            });
        }
    }

    /// `e`, from writing a blob file: a failure of the blob directory fails the node,
    /// unless the disk is merely full.
    pub fn blob_write_failed(&self, e: std::io::Error) -> NodeError {
        let e = NodeError::Io(e);
        if !e.is_out_of_space() {
            self.fail(format!("cannot install a blob file: {e}"));
        }
        e
    }

    /// `Err` once this node's storage has failed.
    pub fn intact(&self) -> crate::Result<()> {
        match self.get() {
            Some(f) => Err(NodeError::NodeFailed(f)),
            None => Ok(()),
        }
    }
}
