//! Blob bytes between simulated nodes: a delivered blob is held by a majority before it
//! is recorded (the node's own `MajorityHold`); the rest as on a real node (`site-node`'s
//! `replication.rs`, the core's `missing.rs`): a committed blob a node lacks is fetched from a peer,
//! rounds that fail backing off; a read of a copy not checked since the start checks the
//! bytes against the digest before it hands over the last of them (`verify_reads =
//! "first"`, the node's `ReadChecks`), later reads do not; a scrub finds bad copies.
//! Every file is installed, kept or removed by the node's own file operations
//! (`file_ops.rs`), in their turn after the apply task's jobs.

use crate::msg::{Out, Payload};
use crate::node::{done, Node};
use site_core::Digest;
use site_node::channels::FileOp;
use site_replica::hold::fetch_order;
use site_replica::Ask;
use site_state::{Command, Entry};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A fetch not answered within this long counts as failed.
const FETCH_TIMEOUT_MS: u64 = 2_000;
/// A hold not settled within this long is dropped (its client gave up).
const HOLD_TIMEOUT_MS: u64 = 10_000;

/// A majority hold in progress for a client's delivery: the node's own
/// (`MajorityHold::hold`), polled after every step of its node.
pub struct HoldJob {
    call: Pin<Box<dyn Future<Output = site_node::Result<()>>>>,
    digest: Digest,
    size: u64,
    client: u64,
    started: u64,
}

impl Node {
    /// A client delivers blob `digest` (`bytes`) to this node: it is installed here, held
    /// by a majority, then recorded; the client is answered with the record's outcome.
    pub fn deliver(&mut self, req: u64, digest: Digest, bytes: Vec<u8>, now: u64, out: &mut Out) {
        if self.run.is_none() {
            return;
        }
        let size = bytes.len() as u64;
        // A delivery is verified before its file is renamed into place.
        if let Err(e) = self.install(&digest, bytes) {
            out.answers.push((req, Err(e)));
            return;
        }
        let Some(run) = &mut self.run else { return };
        let majority = run.majority.clone();
        let d = digest.clone();
        let call = Box::pin(async move { majority.hold(&d, size).await });
        let id = run.next_id;
        run.next_id += 1;
        run.holds.insert(
            id,
            HoldJob {
                call,
                digest,
                size,
                client: req,
                started: now,
            },
        );
        self.poll_holds(out);
    }

    /// Polls the majority holds under way and sends the asks they made: a blob held by a
    /// majority is recorded, a failed hold answered.
    pub fn poll_holds(&mut self, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut settled = Vec::new();
        for (id, job) in run.holds.iter_mut() {
            if let Poll::Ready(r) = job.call.as_mut().poll(&mut cx) {
                settled.push((*id, r));
            }
        }
        for (to, ask, digest) in run.outbox.take_holds() {
            // The holder fetches the bytes from this node: sent along here.
            let bytes = self.disk.blobs.get(&digest).unwrap_or_default();
            let payload = Payload::Hold {
                hold: ask,
                digest,
                bytes,
            };
            out.sends.push((self.id, to, payload));
        }
        for (id, result) in settled {
            let Some(run) = &mut self.run else { return };
            let Some(job) = run.holds.remove(&id) else {
                continue;
            };
            match result {
                Ok(()) => {
                    let cmd = Command::AddBlob {
                        repo: None,
                        digest: job.digest,
                        size: job.size,
                        recorded: false,
                    };
                    self.submit(job.client, Ask::Command(Entry { now: 0, cmd }), out);
                }
                Err(e) => out.answers.push((job.client, Err(e.to_string()))),
            }
        }
    }

    pub fn receive_blob_message(&mut self, from: u64, p: Payload, now: u64, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        match p {
            Payload::Hold {
                hold,
                digest,
                bytes,
            } => {
                // As a node answers a hold (`Fetcher::fetch_blob`): a whole copy here
                // stands (kept from stray removal), else the bytes are fetched,
                // verified and installed.
                let ok = if self.disk_full {
                    Err("disk full".to_owned())
                } else if Digest::of(&bytes) != digest {
                    Err("the bytes do not match the digest".to_owned())
                } else {
                    let whole = match self.disk.blobs.get(&digest) {
                        Some(copy) if Digest::of(&copy) == digest => true,
                        Some(_) => {
                            self.corrupt(&digest);
                            false
                        }
                        None => false,
                    };
                    let Some(run) = &self.run else { return };
                    let kept = if whole {
                        done(run.file_ops.carry_out(FileOp::Keep(digest.clone())))
                    } else {
                        Ok(false)
                    };
                    match kept {
                        Ok(true) => Ok(()),
                        Ok(false) => self.install(&digest, bytes),
                        Err(e) => Err(e.to_string()),
                    }
                };
                out.sends
                    .push((self.id, from, Payload::HoldAnswer { hold, ok }));
            }
            Payload::HoldAnswer { hold, ok } => {
                run.outbox.answer(hold, ok);
                self.poll_holds(out);
            }
            Payload::Fetch { req, digest } => {
                let bytes = self.disk.blobs.get(&digest);
                out.sends
                    .push((self.id, from, Payload::FetchAnswer { req, digest, bytes }));
            }
            Payload::FetchAnswer { req, digest, bytes } => {
                if run.fetching.remove(&req).is_none() {
                    return;
                }
                let installed = match bytes {
                    Some(b) if Digest::of(&b) == digest => self.install(&digest, b).is_ok(),
                    _ => false,
                };
                let Some(run) = &mut self.run else { return };
                if installed {
                    run.missing.found(&digest);
                } else {
                    run.round_failed += 1;
                }
                self.end_round(now);
            }
            _ => {}
        }
    }

    /// Starts a round of fetches of the missing blobs when one is due.
    pub fn replicate(&mut self, now: u64, out: &mut Out) {
        let Some(run) = &mut self.run else { return };
        run.holds
            .retain(|_, j| now.saturating_sub(j.started) < HOLD_TIMEOUT_MS);
        let late: Vec<u64> = run
            .fetching
            .iter()
            .filter(|(_, (_, at))| now.saturating_sub(*at) >= FETCH_TIMEOUT_MS)
            .map(|(r, _)| *r)
            .collect();
        for r in late {
            run.fetching.remove(&r);
            run.round_failed += 1;
        }
        self.end_round(now);
        let Some(run) = &mut self.run else { return };
        if !run.fetching.is_empty() || now < run.next_round || run.missing.count() == 0 {
            return;
        }
        let status = run.driver.engine().status();
        let peers = fetch_order(status.leader, &status.voters, self.id, None);
        if peers.is_empty() {
            return;
        }
        for (i, (d, _)) in run.missing.round().into_iter().enumerate() {
            if run.state.read(|s| s.blob(&d).is_none()) {
                run.missing.forget([&d]);
                continue;
            }
            if self.disk.blobs.has(&d) {
                run.missing.found(&d);
                continue;
            }
            let req = run.next_id;
            run.next_id += 1;
            // Spread over the peers, a different one first each round.
            let peer = peers[(i + (now / 1000) as usize) % peers.len()];
            run.fetching.insert(req, (d.clone(), now));
            out.sends
                .push((self.id, peer, Payload::Fetch { req, digest: d }));
        }
        if run.fetching.is_empty() {
            self.end_round(now);
        }
    }

    fn end_round(&mut self, now: u64) {
        let Some(run) = &mut self.run else { return };
        if !run.fetching.is_empty() {
            return;
        }
        let failed = std::mem::take(&mut run.round_failed);
        run.next_round = now + run.backoff.after_round(failed).unwrap_or(0);
    }

    /// A client reads blob `d` here: the file's bytes, released only if they match the
    /// digest; a bad copy is dropped and fetched again.
    pub fn read(&mut self, d: &Digest) -> Result<Vec<u8>, String> {
        let Some(run) = &self.run else {
            return Err("down".into());
        };
        let bytes = self.disk.blobs.get(d);
        match bytes {
            None => Err("not here".into()),
            // Checked since the start: served as it is, unhashed (the client checks).
            Some(b) if !run.read_checks.needed(d) => Ok(b),
            Some(b) if Digest::of(&b) == *d => {
                run.read_checks.passed(d);
                Ok(b)
            }
            Some(b) => {
                self.corrupt(d);
                Err(format!("copy of {} bytes is corrupt", b.len()))
            }
        }
    }

    /// Checks the file of every blob the state records against its digest, as the
    /// scrub does; bad copies are removed (in their turn) and fetched again. Returns the
    /// blobs checked and how many were bad.
    pub fn scrub(&mut self) -> (Vec<Digest>, usize) {
        let Some(run) = &self.run else {
            return (Vec::new(), 0);
        };
        let recorded: Vec<Digest> = run
            .state
            .read(|s| s.blobs().map(|(d, _)| d.clone()).collect());
        let mut bad = Vec::new();
        for d in recorded.iter().cloned() {
            match self.disk.blobs.get(&d) {
                Some(b) if Digest::of(&b) == d => run.read_checks.passed(&d),
                Some(_) => bad.push(d),
                None => {}
            }
        }
        let bad = bad.into_iter().filter(|d| self.corrupt(d)).count();
        (recorded, bad)
    }

    /// This node's copy of `d` does not match: removed if the blob is recorded, and
    /// fetched again. Whether it was.
    fn corrupt(&mut self, d: &Digest) -> bool {
        let Some(run) = &self.run else { return false };
        let Ok(true) = done(run.file_ops.carry_out(FileOp::Corrupt(d.clone()))) else {
            return false;
        };
        if let Some(size) = run.state.read(|s| s.blob(d).map(|b| b.size)) {
            run.missing.note_corrupt(d, size);
        }
        true
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
