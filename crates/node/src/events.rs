//! What the node tells its watchers (`WatchEvents`, logs, `/metrics` counts): events of
//! applied entries and the node's own (a corrupt copy, a failure, a wall clock that
//! disagrees). One broadcast: a watcher that falls behind misses the oldest.

use site_state::Event;
use tokio::sync::broadcast;

/// The node's event stream. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Events(broadcast::Sender<Event>);

impl Default for Events {
    fn default() -> Events {
        Events(broadcast::channel(1024).0)
    }
}

impl Events {
    /// Logs `event` and tells every watcher.
    pub fn publish(&self, event: Event) {
        tracing::info!(event = ?event, "event");
        let _ = self.0.send(event);
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}
