//! The executor of a simulated node's tasks (the node's `Spawn`): the background fetch
//! rounds, the copies a majority hold asks for, the holds of deliveries and the scrub's
//! checks. Tasks are polled one at a time on the world's thread, the woken one started
//! first, whatever order they were woken in (tokio's `watch` wakes its waiters in an
//! order drawn at random), so a seed replays exactly; a crash drops them with the node.

use site_node::spawn::{Spawn, Task};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Wake, Waker};

/// Polls in one call beyond which a node's tasks are taken to wake one another forever.
const MAX_POLLS: usize = 100_000;

/// A node's tasks.
#[derive(Default)]
pub struct Tasks {
    tasks: Mutex<BTreeMap<u64, Task>>,
    woken: Arc<Woken>,
    next: AtomicU64,
}

/// The tasks woken and not polled since.
#[derive(Default)]
struct Woken(Mutex<BTreeSet<u64>>);

impl Woken {
    fn wake(&self, id: u64) {
        self.0.lock().expect("woken").insert(id);
    }

    fn next(&self) -> Option<u64> {
        self.0.lock().expect("woken").pop_first()
    }
}

struct TaskWaker {
    id: u64,
    woken: Arc<Woken>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.woken.wake(self.id);
    }
}

impl Spawn for Tasks {
    fn spawn(&self, task: Task) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.tasks.lock().expect("tasks").insert(id, task);
        self.woken.wake(id);
    }
}

/// Starts tasks on a node's [`Tasks`] while the node runs: what its components keep (a
/// task holding the components that hold the executor would keep it alive forever).
pub struct Spawner(Weak<Tasks>);

impl Spawn for Spawner {
    fn spawn(&self, task: Task) {
        if let Some(tasks) = self.0.upgrade() {
            tasks.spawn(task);
        }
    }
}

impl Tasks {
    /// What the node's components start tasks with.
    pub fn spawner(self: &Arc<Tasks>) -> Arc<Spawner> {
        Arc::new(Spawner(Arc::downgrade(self)))
    }

    /// Polls the woken tasks until none is left woken. Whether any was polled; an error
    /// if they never stop waking one another.
    pub fn run_until_stalled(&self) -> Result<bool, String> {
        let mut polls = 0;
        while let Some(id) = self.woken.next() {
            // Out of the map while it runs: it may spawn others.
            let Some(mut task) = self.tasks.lock().expect("tasks").remove(&id) else {
                continue;
            };
            polls += 1;
            if polls > MAX_POLLS {
                return Err(format!("tasks still woken after {MAX_POLLS} polls"));
            }
            let waker = Waker::from(Arc::new(TaskWaker {
                id,
                woken: self.woken.clone(),
            }));
            if task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
            {
                self.tasks.lock().expect("tasks").insert(id, task);
            }
        }
        Ok(polls > 0)
    }
}
