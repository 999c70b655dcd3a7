//! Clients and faults: deliveries of images (blob by blob, then the manifest; a fault
//! may interrupt them), tags, schedules, pins, sweeps and reads, against nodes chosen at
//! random; crashes, wiped disks, partitions, bit flips, full disks, nodes added and
//! removed. Faults that destroy data are only let loose while a majority of the site is
//! whole, which is the promise's premise.

use crate::invariants;
use crate::msg::{Answer, Out};
use crate::world::{Ev, World, ACTIVE_MS};
use site_core::{Digest, Repository};
use site_replica::Ask;
use site_state::{Command, Entry, ImageRef, MemberChange, SweepRules};
use std::collections::BTreeMap;

/// How long a client waits for an answer.
const CLIENT_TIMEOUT_MS: u64 = 8_000;

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Deliver,
    Tag,
    Schedule,
    Unschedule,
    Pin,
    Unpin,
    Sweep,
    Read,
    Crash,
    Wipe,
    Partition,
    BitFlip,
    DiskFull,
    AddNode,
    RemoveNode,
}

const OPS: [(Op, u64); 15] = [
    (Op::Deliver, 22),
    (Op::Tag, 4),
    (Op::Schedule, 8),
    (Op::Unschedule, 4),
    (Op::Pin, 4),
    (Op::Unpin, 3),
    (Op::Sweep, 8),
    (Op::Read, 12),
    (Op::Crash, 8),
    (Op::Wipe, 4),
    (Op::Partition, 6),
    (Op::BitFlip, 4),
    (Op::DiskFull, 3),
    (Op::AddNode, 2),
    (Op::RemoveNode, 2),
];

/// A delivery in progress: its blobs one by one, then its manifest.
struct Delivery {
    blobs: Vec<(Digest, Vec<u8>)>,
    next: usize,
    repo: Repository,
    body: String,
}

enum Pending {
    Blob { delivery: u64 },
    Manifest { image: ImageRef },
    Command,
    Remove { id: u64 },
}

#[derive(Default)]
pub struct Clients {
    next_req: u64,
    pending: BTreeMap<u64, Pending>,
    deliveries: BTreeMap<u64, Delivery>,
    images: u64,
}

/// Schedules the run's operations.
pub fn plan(w: &mut World) {
    let total: u64 = OPS.iter().map(|(_, n)| n).sum();
    let mut t = 0;
    loop {
        t += 50 + w.rng.below(350);
        if t >= ACTIVE_MS {
            return;
        }
        let mut pick = w.rng.below(total);
        let op = OPS
            .iter()
            .find(|(_, n)| {
                if pick < *n {
                    true
                } else {
                    pick -= n;
                    false
                }
            })
            .map(|(op, _)| *op)
            .expect("an op");
        w.at(t, Ev::Op(op));
    }
}

fn pick<T: Clone>(w: &mut World, from: &[T]) -> Option<T> {
    (!from.is_empty()).then(|| from[w.rng.below(from.len() as u64) as usize].clone())
}

fn up_nodes(w: &World) -> Vec<u64> {
    w.nodes
        .values()
        .filter(|n| n.up() && !n.removed)
        .map(|n| n.id)
        .collect()
}

fn site_nodes(w: &World) -> Vec<u64> {
    w.nodes
        .values()
        .filter(|n| !n.removed)
        .map(|n| n.id)
        .collect()
}

fn repo(n: u64) -> Repository {
    Repository::parse_normalized(&format!("team/app{}", n % 3), "docker.io").expect("a name")
}

/// Whether data may be destroyed now (a disk wiped, a bit flipped, a node removed):
/// every node up, holding the whole log and good files, and no other damage still
/// healing; so every blob a client was told of stays on a majority less one. Nodes may
/// still lack blobs they are fetching.
fn may_damage(w: &World) -> bool {
    let site = site_nodes(w);
    let whole = site.iter().all(|id| {
        let n = &w.nodes[id];
        n.run.as_ref().is_some_and(|r| {
            !r.driver.engine().catching_up() && r.driver.engine().voters().len() == site.len()
        }) && n.files_good()
    });
    whole && w.damaged.is_empty() && site.len() >= 3
}

/// Whether a client's removal of node `id` awaits its answer.
pub fn removing(w: &World, id: u64) -> bool {
    w.clients
        .pending
        .values()
        .any(|p| matches!(p, Pending::Remove { id: i } if *i == id))
}

pub fn start(w: &mut World, op: Op, out: &mut Out) {
    let Some(node) = pick(w, &up_nodes(w)) else {
        return;
    };
    let images = w.oracle.images.clone();
    let now = w.now;
    let command = |cmd| Ask::Command(Entry { now: 0, cmd });
    match op {
        Op::Deliver => {
            let k = w.clients.images;
            w.clients.images += 1;
            let layers = 1 + w.rng.below(2);
            let blobs: Vec<(Digest, Vec<u8>)> = (0..=layers)
                .map(|i| {
                    let bytes = format!("image {k} part {i} {}", w.rng.next_u64()).into_bytes();
                    (Digest::of(&bytes), bytes)
                })
                .collect();
            let desc = |(d, b): &(Digest, Vec<u8>), mt: &str| {
                format!(
                    r#"{{"mediaType":"{mt}","digest":"{d}","size":{}}}"#,
                    b.len()
                )
            };
            let layers: Vec<String> = blobs[1..]
                .iter()
                .map(|b| desc(b, "application/vnd.oci.image.layer.v1.tar"))
                .collect();
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
                desc(&blobs[0], "application/vnd.oci.image.config.v1+json"),
                layers.join(",")
            );
            w.note(format!("client delivers image {k} ({} blobs)", blobs.len()));
            w.clients.deliveries.insert(
                k,
                Delivery {
                    blobs,
                    next: 0,
                    repo: repo(k),
                    body,
                },
            );
            next_part(w, k, out);
        }
        Op::Tag | Op::Schedule | Op::Pin | Op::Unpin | Op::Unschedule => {
            let Some(image) = pick(w, &images) else {
                return;
            };
            let app = format!("app{}", w.rng.below(4));
            let cmd = match op {
                Op::Tag => Command::Tag {
                    repo: image.repo.clone(),
                    tag: format!("t{}", w.rng.below(5)),
                    digest: image.digest.clone(),
                },
                Op::Schedule => Command::Schedule {
                    app,
                    images: vec![image],
                },
                Op::Unschedule => Command::Unschedule { app },
                Op::Pin => Command::Pin { image },
                _ => Command::Unpin { image },
            };
            ask(w, node, command(cmd), Pending::Command, out);
        }
        Op::Sweep => {
            let grace_ms = w.rng.below(4) * 1000;
            let cmd = Command::sweep(&SweepRules {
                grace_ms,
                cache_ttl_ms: w.rng.below(8) * 1000,
                evict_bytes: 0,
            });
            ask(w, node, command(cmd), Pending::Command, out);
        }
        Op::Read => {
            let blobs: Vec<Digest> = w.oracle.blobs.keys().cloned().collect();
            let Some(d) = pick(w, &blobs) else { return };
            let n = w.nodes.get_mut(&node).expect("node");
            let unhashed = n.run.as_ref().is_some_and(|r| !r.read_checks.needed(&d));
            let rot = unhashed && w.rotten.contains(&(node, d.clone()));
            if let Ok(bytes) = n.read(&d, out) {
                if let Some(v) = invariants::reads::check(node, &d, &bytes, rot) {
                    w.violations.push(v);
                }
            }
        }
        Op::Crash => {
            w.note(format!("node {node} crashes"));
            w.nodes.get_mut(&node).expect("node").crash();
            let after = 200 + w.rng.below(5_000);
            w.at(after, Ev::Restart(node));
        }
        Op::Wipe if may_damage(w) => {
            w.note(format!("node {node} loses its disk"));
            w.rotten.retain(|(n, _)| *n != node);
            w.nodes.get_mut(&node).expect("node").wipe();
            w.damage(node);
            let after = 200 + w.rng.below(3_000);
            w.at(after, Ev::Restart(node));
        }
        Op::Partition if site_nodes(w).len() > 1 => {
            let all = site_nodes(w);
            let size = 1 + w.rng.below((all.len() / 2) as u64) as usize;
            let mut side = Vec::new();
            while side.len() < size {
                let id = pick(w, &all).expect("nodes");
                if !side.contains(&id) {
                    side.push(id);
                }
            }
            w.note(format!("partition: {side:?} cut off"));
            w.net.partition(&side, &all);
            let after = 1_000 + w.rng.below(7_000);
            w.at(after, Ev::Heal);
        }
        Op::BitFlip if may_damage(w) => {
            let n = w.nodes.get_mut(&node).expect("node");
            let files: Vec<Digest> = n.files().into_iter().collect();
            let Some(d) = pick(w, &files) else { return };
            let at = w.rng.below(8) as usize;
            let n = w.nodes.get_mut(&node).expect("node");
            n.disk.blobs.flip(&d, at);
            w.note(format!("node {node}: a bit flips in blob {d}"));
            w.damage(node);
            w.rotten.insert((node, d));
        }
        Op::DiskFull => {
            w.note(format!("node {node}: disk full"));
            w.nodes.get_mut(&node).expect("node").set_disk_full(true);
            let after = 500 + w.rng.below(4_000);
            w.at(after, Ev::DiskFixed(node));
        }
        Op::AddNode if (3..7).contains(&site_nodes(w).len()) => {
            let id = w.nodes.keys().max().copied().unwrap_or(0) + 1;
            w.note(format!("node {id} joins"));
            w.add_node(id, Vec::new());
            let change = MemberChange::Add {
                id,
                address: format!("10.0.0.{id}:7000"),
            };
            ask(w, node, Ask::Members(change), Pending::Command, out);
        }
        // A removed node takes its copies with it, like a lost disk: it counts as damage
        // until the others hold every blob (the node does not refuse to remove the
        // holders of a blob's last copies; see the README).
        Op::RemoveNode if site_nodes(w).len() > 3 && may_damage(w) => {
            let Some(id) = pick(w, &site_nodes(w)) else {
                return;
            };
            w.note(format!("client removes node {id}"));
            w.damage(id);
            let change = MemberChange::Remove { id };
            ask(w, node, Ask::Members(change), Pending::Remove { id }, out);
        }
        _ => {}
    }
    let _ = now;
}

fn ask(w: &mut World, node: u64, ask: Ask, pending: Pending, out: &mut Out) {
    let req = new_req(w, pending);
    w.nodes.get_mut(&node).expect("node").submit(req, ask, out);
}

fn new_req(w: &mut World, pending: Pending) -> u64 {
    w.clients.next_req += 1;
    let req = w.clients.next_req;
    w.clients.pending.insert(req, pending);
    w.at(CLIENT_TIMEOUT_MS, Ev::Timeout(req));
    req
}

/// The next step of delivery `k`: its next blob, or its manifest.
fn next_part(w: &mut World, k: u64, out: &mut Out) {
    let Some(node) = pick(w, &up_nodes(w)) else {
        w.clients.deliveries.remove(&k);
        return;
    };
    let d = w.clients.deliveries.get_mut(&k).expect("a delivery");
    if let Some((digest, bytes)) = d.blobs.get(d.next).cloned() {
        d.next += 1;
        let req = new_req(w, Pending::Blob { delivery: k });
        w.nodes
            .get_mut(&node)
            .expect("node")
            .deliver(req, digest, bytes, out);
        return;
    }
    let d = w.clients.deliveries.remove(&k).expect("a delivery");
    let image = ImageRef {
        repo: d.repo.clone(),
        digest: Digest::of(d.body.as_bytes()),
    };
    let cmd = Command::PutManifest {
        repo: d.repo,
        body: d.body,
        digest: None,
        content_type: None,
        tag: Some("v1".into()),
        link_references: true,
        cached: false,
    };
    ask(
        w,
        node,
        Ask::Command(Entry { now: 0, cmd }),
        Pending::Manifest { image },
        out,
    );
}

/// A node answered request `req`.
pub fn answered(w: &mut World, req: u64, answer: Answer) {
    let Some(pending) = w.clients.pending.remove(&req) else {
        return; // answered twice (a duplicated message), or after the client gave up
    };
    let ok = matches!(answer, Ok((Ok(_), _, _)));
    if let Ok((_, index, fp)) = &answer {
        if let Some(v) = invariants::durability::acked(&mut w.oracle, *index, *fp) {
            w.violations.push(v);
        }
    }
    let mut out = Out::default();
    match pending {
        Pending::Blob { delivery } if ok => {
            let d = &w.clients.deliveries[&delivery];
            let (digest, bytes) = d.blobs[d.next - 1].clone();
            w.oracle.blobs.insert(digest, bytes);
            next_part(w, delivery, &mut out);
        }
        Pending::Blob { delivery } => {
            w.note(format!(
                "delivery of image {delivery} interrupted: {answer:?}"
            ));
            w.clients.deliveries.remove(&delivery);
        }
        Pending::Manifest { image } if ok => w.oracle.images.push(image),
        Pending::Remove { id } if ok => {
            w.note(format!("node {id} removed"));
            let n = w.nodes.get_mut(&id).expect("node");
            n.removed = true;
            n.crash();
        }
        _ => {}
    }
    if w.verbose {
        let at = answer
            .as_ref()
            .map(|(_, i, fp)| format!(" at index {i} ({fp:x})"));
        w.note(format!(
            "request {req} answered: {}{}",
            if ok { "ok" } else { "refused" },
            at.unwrap_or_default()
        ));
    }
    w.settle_out(out);
}

/// A client stops waiting for `req`; a delivery it belonged to is interrupted.
pub fn timeout(w: &mut World, req: u64) {
    if let Some(Pending::Blob { delivery }) = w.clients.pending.remove(&req) {
        w.note(format!(
            "delivery of image {delivery} interrupted: no answer"
        ));
        w.clients.deliveries.remove(&delivery);
    }
}
