//! Blob bytes between simulated nodes, by the node's own components on the node's tasks
//! (`tasks.rs`): a delivered blob is held by a majority before it is recorded
//! (`MajorityHold`); a node asked to hold one copies it from the node that asks, and a
//! committed blob a node lacks is copied in the background fetch rounds (`Fetcher`,
//! writing through the simulated file system, installing through the apply task's
//! queue); the scrub checks copies against their digests (`Scrubber`). The peers'
//! side of a fetch (the node's `PeerFiles`) answers with the file's bytes. A read goes
//! as the node's `Reads` decides: a copy not checked since the start through the node's
//! hash that withholds the last bytes of a bad copy (`verify_reads = "first"`); later
//! reads as the file holds them.

use crate::msg::{Out, Payload};
use crate::node::{done, Node};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use site_core::Digest;
use site_node::channels::FileOp;
use site_node::scrub::verified;
use site_node::spawn::Spawn;
use site_node::within;
use site_node::ReadCheck;
use site_replica::Ask;
use site_state::{Command, Entry};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A hold not settled within this long is dropped (its client gave up).
const HOLD_TIMEOUT: Duration = Duration::from_secs(10);

/// A majority hold of a delivery that ended: the client request, the blob, its size, the
/// voters when it began and the outcome.
pub struct HoldEnd {
    req: u64,
    digest: Digest,
    size: u64,
    voters: Vec<u64>,
    began: u64,
    result: site_node::Result<()>,
}

/// Majority holds of deliveries that ended.
pub type Settled = Arc<Mutex<Vec<HoldEnd>>>;

impl Node {
    /// A client delivers blob `digest` (`bytes`) to this node: it is installed here, held
    /// by a majority, then recorded; the client is answered with the record's outcome.
    pub fn deliver(&mut self, req: u64, digest: Digest, bytes: Vec<u8>, out: &mut Out) {
        if self.run.is_none() {
            return;
        }
        let size = bytes.len() as u64;
        // A delivery is verified before its file is renamed into place.
        if let Err(e) = self.install(&digest, bytes) {
            out.answers.push((req, Err(e)));
            return;
        }
        let Some(run) = &self.run else { return };
        let (majority, settled) = (run.majority.clone(), run.settled.clone());
        let clock = self.clock.clone();
        let (voters, began) = (run.driver.engine().voters(), self.clock.real_ms());
        run.tasks.spawn(Box::pin(async move {
            let held = within(clock.as_ref(), HOLD_TIMEOUT, majority.hold(&digest, size));
            if let Some(result) = held.await {
                settled.lock().expect("settled").push(HoldEnd {
                    req,
                    digest,
                    size,
                    voters,
                    began,
                    result,
                });
            }
        }));
        self.after(Ok(()), out);
    }

    /// Records the blobs the majority holds of deliveries held; answers the failed.
    pub(crate) fn record_held(&mut self, out: &mut Out) {
        let Some(run) = &self.run else { return };
        let settled = std::mem::take(&mut *run.settled.lock().expect("settled"));
        for end in settled {
            let HoldEnd {
                req: client,
                digest,
                size,
                voters,
                began,
                result,
            } = end;
            match result {
                Ok(()) => {
                    out.held.push((self.id, digest.clone(), voters, began));
                    let cmd = Command::AddBlob {
                        repo: None,
                        digest,
                        size,
                        recorded: false,
                    };
                    self.submit(client, Ask::Command(Entry { now: 0, cmd }), out);
                }
                Err(e) => out.answers.push((client, Err(e.to_string()))),
            }
        }
    }

    pub fn receive_blob_message(&mut self, from: u64, p: Payload, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        match p {
            Payload::Hold { hold, digest, size } => {
                // As the node's peer service answers a hold.
                let (fetcher, outbox) = (run.fetcher.clone(), run.outbox.clone());
                run.tasks.spawn(Box::pin(async move {
                    let held = fetcher.fetch_blob(&digest, size, Some(from)).await;
                    let ok = held.map_err(|e| e.to_string());
                    outbox.send_payload(from, Payload::HoldAnswer { hold, ok });
                }));
            }
            Payload::HoldAnswer { hold, ok } => run.outbox.answer_hold(hold, ok),
            Payload::Fetch { req, digest } => {
                let bytes = self.disk.blobs.get(&digest);
                out.sends
                    .push((self.id, from, Payload::FetchAnswer { req, bytes }));
                return;
            }
            Payload::FetchAnswer { req, bytes } => run.outbox.answer_fetch(req, bytes),
            _ => return,
        }
        self.after(Ok(()), out);
    }

    /// A client reads blob `d` here, as the node reads its copy (`Reads::begin_read`):
    /// the file's bytes, as they are or through the node's hash that withholds the last
    /// of them from a copy that does not match (its check then removes the copy, to be
    /// fetched again). A blob not here is not read (a node would stream it from a peer).
    pub fn read(&mut self, d: &Digest, out: &mut Out) -> Result<Vec<u8>, String> {
        let Some(run) = &self.run else {
            return Err("down".into());
        };
        let size = run.state.read(|s| s.blob(d).map(|b| b.size));
        let (Some(size), Some(bytes)) = (size, self.disk.blobs.get(d)) else {
            return Err("not here".into());
        };
        let read = match run.reads.begin_read(d, 0, size) {
            ReadCheck::AsIs => Ok(bytes),
            ReadCheck::Verify => {
                let file = futures_util::stream::iter([Ok(Bytes::from(bytes))]).boxed();
                let stream = verified(run.scrubber.clone(), d.clone(), size, file);
                let chunks: Result<Vec<Bytes>, _> = done(stream.try_collect());
                chunks.map(|c| c.concat()).map_err(|e| e.to_string())
            }
        };
        // The checks the read started.
        self.after(Ok(()), out);
        read
    }

    /// A pass of the scrub: the node's check of the file of every blob the state records;
    /// bad copies are removed (in their turn) and fetched again. Returns the blobs checked
    /// and how many were bad.
    pub fn scrub(&mut self, out: &mut Out) -> (Vec<Digest>, usize) {
        let Some(run) = &self.run else {
            return (Vec::new(), 0);
        };
        let recorded: Vec<(Digest, u64)> = run
            .state
            .read(|s| s.blobs().map(|(d, b)| (d.clone(), b.size)).collect());
        let pass: Arc<Mutex<(Vec<Digest>, usize)>> = Arc::default();
        let (scrubber, done_so_far) = (run.scrubber.clone(), pass.clone());
        run.tasks.spawn(Box::pin(async move {
            for (d, size) in recorded {
                let bad = matches!(scrubber.check(&d, size).await, Ok(Some(false)));
                let mut pass = done_so_far.lock().expect("scrub");
                pass.0.push(d);
                pass.1 += usize::from(bad);
            }
        }));
        self.after(Ok(()), out);
        let pass = std::mem::take(&mut *pass.lock().expect("scrub"));
        pass
    }

    /// Writes `bytes` to a temporary file (synced) and installs it as blob `digest` by
    /// the node's file operations, in their turn.
    fn install(&mut self, digest: &Digest, bytes: Vec<u8>) -> Result<(), String> {
        let run = self.run.as_ref().ok_or("down")?;
        let src = self
            .disk
            .blobs
            .write_temp(bytes)
            .map_err(|e| e.to_string())?;
        let op = FileOp::Install {
            src,
            digest: digest.clone(),
        };
        done(run.file_ops.carry_out(op))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl Node {
    /// Whether the file of every blob the state records here matches its digest.
    pub fn files_good(&self) -> bool {
        let Some(run) = &self.run else { return false };
        run.state.read(|s| {
            s.blobs()
                .all(|(d, _)| self.disk.blobs.get(d).is_none_or(|b| Digest::of(&b) == *d))
        })
    }
}
