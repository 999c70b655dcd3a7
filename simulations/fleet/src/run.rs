//! One simulated rollout: the tower's rollout code (`site-fleet`: its `Rollout`, the
//! scheduler `due`, the backoff, the missing-blob arithmetic) over simulated sites, links
//! and a clock, with the tower's egress shared between the sites it serves.

use crate::images::{application, held_before};
use crate::links::{Link, Weather};
use crate::rng::Rng;
use site_fleet::missing::{self, Blob};
use site_fleet::rollout::{Image, Manifest};
use site_fleet::schedule::{self, Backoff};
use site_fleet::{Rollout, State};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

/// What the site keeps of a blob cut mid-way: whole messages of this size (the tower
/// sends 1 MiB messages; a message cut short is lost).
const MESSAGE: u64 = 1 << 20;
/// How often the share of sites done and the egress are sampled, seconds.
pub const SAMPLE_S: f64 = 60.0;

/// How the tower sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// The rollout's design: only the blobs a site lacks, resumed from its offset after a
    /// cut, each blob pulled from the upstream once.
    DedupResume,
    /// Whole images on every attempt, from the first byte, pulled from the upstream each
    /// time.
    Naive,
}

impl Design {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Design::DedupResume => "dedup+resume",
            Design::Naive => "whole images",
        }
    }
}

/// A scenario of the model.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name in reports.
    pub name: &'static str,
    /// The version rolled out: 1 to sites that hold nothing, 2 to sites that hold 1.
    pub version: u32,
    /// The links.
    pub weather: Weather,
}

/// The fleet and the tower.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Sites in the fleet.
    pub sites: usize,
    /// The seed of everything drawn.
    pub seed: u64,
    /// The tower's egress, bytes per second.
    pub egress: f64,
    /// Sites served at once.
    pub max_parallel: u32,
    /// The clock's step, seconds.
    pub step_s: f64,
    /// When the run gives up, seconds.
    pub horizon_s: f64,
    /// The rollout's backoff.
    pub backoff: Backoff,
}

/// A sample of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the rollout started.
    pub t: f64,
    /// Share of sites scheduled.
    pub done: f64,
    /// The tower's egress over the last sample, bytes per second.
    pub egress: f64,
}

/// How a run went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The scenario.
    pub scenario: &'static str,
    /// The design.
    pub design: Design,
    /// Seconds at which each scheduled site was scheduled, sorted.
    pub done_at: Vec<f64>,
    /// Sites not scheduled by the horizon.
    pub unfinished: usize,
    /// Samples over time.
    pub samples: Vec<Sample>,
    /// Per site: bytes it lacked at the start, bytes the tower sent it.
    pub per_site: Vec<(u64, u64)>,
    /// Per site: its failed attempts.
    pub retries: Vec<u32>,
    /// Bytes the tower sent.
    pub egress: u64,
    /// Bytes the tower pulled from the upstream.
    pub upstream: u64,
    /// Attempts, and attempts that failed.
    pub attempts: u64,
    /// Attempts that failed.
    pub failures: u64,
}

impl Outcome {
    /// Bytes the sites lacked, summed.
    pub fn lacked(&self) -> u64 {
        self.per_site.iter().map(|(l, _)| l).sum()
    }

    /// Seconds until `share` of the fleet was scheduled; `None` if it never was.
    pub fn time_to(&self, share: f64, sites: usize) -> Option<f64> {
        let k = ((share * sites as f64).ceil() as usize).max(1);
        self.done_at.get(k - 1).copied()
    }
}

/// A blob on its way to a site: which one, its size, the bytes the site holds of it.
struct Pending {
    blob: usize,
    size: u64,
    offset: u64,
}

struct Site {
    id: String,
    link: Link,
    held: HashSet<usize>,
    partial: HashMap<usize, u64>,
    attempt: Option<VecDeque<Pending>>,
    rate: f64,
}

/// Runs `scenario` with `design` on the fleet `setup` draws.
pub fn run(setup: &Setup, scenario: &Scenario, design: Design) -> Outcome {
    let old = application(scenario.version.saturating_sub(1).max(1));
    let new = application(scenario.version);
    let universe: Vec<Blob> = missing::union(old.iter().chain(new.iter()).map(Vec::as_slice));
    let index: HashMap<&str, usize> = universe
        .iter()
        .enumerate()
        .map(|(i, b)| (b.digest.as_str(), i))
        .collect();
    let mut rollout = rollout_of(&new, setup);
    let all = rollout.blobs();
    let whole: Vec<usize> = new
        .iter()
        .flatten()
        .map(|b| index[b.digest.as_str()])
        .collect();

    let root = Rng::new(setup.seed);
    let mut sites: Vec<Site> = (0..setup.sites)
        .map(|i| {
            let pick = root.fork(1 << 40 | i as u64).unit();
            let held: HashSet<usize> = held_before(scenario.version, pick)
                .iter()
                .map(|b| index[b.digest.as_str()])
                .collect();
            Site {
                id: format!("site-{i:05}"),
                link: Link::draw(root.fork(i as u64), &scenario.weather),
                held,
                partial: HashMap::new(),
                attempt: None,
                rate: 0.0,
            }
        })
        .collect();
    let by_id: HashMap<String, usize> = sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    let lacked: Vec<u64> = sites
        .iter()
        .map(|s| {
            all.iter()
                .filter(|b| !s.held.contains(&index[b.digest.as_str()]))
                .map(|b| b.size)
                .sum()
        })
        .collect();
    rollout.join(sites.iter().map(|s| s.id.as_str()));

    let mut out = Outcome {
        scenario: scenario.name,
        design,
        done_at: Vec::new(),
        unfinished: 0,
        samples: Vec::new(),
        per_site: Vec::new(),
        retries: Vec::new(),
        egress: 0,
        upstream: 0,
        attempts: 0,
        failures: 0,
    };
    let mut pulled: HashSet<usize> = HashSet::new();
    let mut waiting = sites.len();
    // When failed sites become due; those due and not started yet.
    let mut retries: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
    let mut retry_due = 0usize;
    let mut in_flight: Vec<usize> = Vec::new();
    let mut shares_stale = true;
    let mut t = 0.0;
    let mut next_sample = 0.0;
    let mut window_egress = 0u64;
    let ms = |t: f64| (t * 1000.0) as u64;

    while out.done_at.len() < sites.len() && t < setup.horizon_s {
        // The runner's pass: start the sites the scheduler says are due.
        while retries.peek().is_some_and(|Reverse(at)| *at <= ms(t)) {
            retries.pop();
            retry_due += 1;
        }
        let free = in_flight.len() < setup.max_parallel as usize;
        if free && (waiting > 0 || retry_due > 0) {
            for id in schedule::due(&rollout, ms(t)) {
                let i = by_id[&id];
                match rollout.sites[&id].state {
                    State::Waiting => waiting -= 1,
                    _ => retry_due -= 1,
                }
                rollout.start(&id, ms(t));
                out.attempts += 1;
                let site = &mut sites[i];
                site.link.advance(t, t);
                if !site.link.up_at(t) {
                    fail(&mut rollout, site, t, setup, &mut retries, &mut out);
                    continue;
                }
                let queue = match design {
                    Design::DedupResume => {
                        let named: Vec<String> = all
                            .iter()
                            .filter(|b| !site.held.contains(&index[b.digest.as_str()]))
                            .map(|b| b.digest.clone())
                            .collect();
                        let missing = missing::to_send(&all, &named).unwrap_or_default();
                        let pending: VecDeque<Pending> = missing
                            .iter()
                            .map(|b| {
                                let blob = index[b.digest.as_str()];
                                Pending {
                                    blob,
                                    size: b.size,
                                    offset: site.partial.get(&blob).copied().unwrap_or(0),
                                }
                            })
                            .collect();
                        let asked: Vec<(u64, u64)> =
                            pending.iter().map(|p| (p.size, p.offset)).collect();
                        rollout.asked(&id, &asked);
                        for p in &pending {
                            if pulled.insert(p.blob) {
                                out.upstream += p.size;
                            }
                        }
                        pending
                    }
                    Design::Naive => {
                        let pending: VecDeque<Pending> = whole
                            .iter()
                            .map(|&blob| Pending {
                                blob,
                                size: universe[blob].size,
                                offset: 0,
                            })
                            .collect();
                        let asked: Vec<(u64, u64)> = pending.iter().map(|p| (p.size, 0)).collect();
                        rollout.asked(&id, &asked);
                        pending
                    }
                };
                site.attempt = Some(queue);
                in_flight.push(i);
                shares_stale = true;
            }
        }

        if in_flight.is_empty() {
            // Nothing moves: jump to the next retry or sample.
            let next_retry = retries
                .peek()
                .map_or(f64::INFINITY, |Reverse(at)| *at as f64 / 1000.0);
            let next = next_retry.min(next_sample).max(t + setup.step_s);
            if !next.is_finite() {
                break;
            }
            sample_until(
                &mut out,
                &rollout,
                next,
                &mut next_sample,
                &mut window_egress,
                sites.len(),
            );
            t = next;
            continue;
        }

        if shares_stale {
            share_egress(&mut sites, &in_flight, setup.egress);
            shares_stale = false;
        }
        let dt = setup.step_s;
        let end = t + dt;
        let mut finished = Vec::new();
        for (slot, &i) in in_flight.iter().enumerate() {
            let site = &mut sites[i];
            if site.link.advance(t, end) {
                finished.push((slot, false));
                continue;
            }
            let mut budget = (site.rate * dt) as u64;
            let mut sent = 0;
            let queue = site.attempt.as_mut().expect("in flight");
            while budget > 0 {
                let Some(p) = queue.front_mut() else { break };
                let n = budget.min(p.size - p.offset);
                p.offset += n;
                budget -= n;
                sent += n;
                if p.offset == p.size {
                    let blob = p.blob;
                    queue.pop_front();
                    if design == Design::DedupResume {
                        site.held.insert(blob);
                        site.partial.remove(&blob);
                    }
                }
            }
            rollout.sent(&site.id, sent);
            out.egress += sent;
            window_egress += sent;
            if queue.is_empty() {
                finished.push((slot, true));
            }
        }
        t = end;
        for &(slot, ok) in finished.iter().rev() {
            let i = in_flight.swap_remove(slot);
            let site = &mut sites[i];
            let queue = site.attempt.take().expect("in flight");
            if ok {
                if design == Design::Naive {
                    site.held.extend(whole.iter().copied());
                }
                rollout.present(&site.id);
                rollout.scheduled(&site.id, ms(t));
                out.done_at.push(t);
            } else {
                if design == Design::DedupResume {
                    // The site keeps the whole messages of the blob that was cut.
                    if let Some(p) = queue.front() {
                        site.partial.insert(p.blob, p.offset / MESSAGE * MESSAGE);
                    }
                }
                fail(&mut rollout, site, t, setup, &mut retries, &mut out);
            }
            shares_stale = true;
        }
        if t >= next_sample {
            sample_until(
                &mut out,
                &rollout,
                t,
                &mut next_sample,
                &mut window_egress,
                sites.len(),
            );
        }
    }
    out.unfinished = sites.len() - out.done_at.len();
    if design == Design::Naive {
        // Streamed from the upstream as it is sent.
        out.upstream = out.egress;
    }
    out.done_at.sort_by(f64::total_cmp);
    out.per_site = sites
        .iter()
        .enumerate()
        .map(|(i, s)| (lacked[i], rollout.sites[&s.id].bytes_done))
        .collect();
    out.retries = sites.iter().map(|s| rollout.sites[&s.id].retries).collect();
    out
}

/// The attempt failed as the real worker's would: unreachable, retried after the backoff.
fn fail(
    rollout: &mut Rollout,
    site: &mut Site,
    t: f64,
    setup: &Setup,
    retries: &mut BinaryHeap<Reverse<u64>>,
    out: &mut Outcome,
) {
    rollout.failed(
        &site.id,
        "SITE_UNREACHABLE",
        "the link is down",
        (t * 1000.0) as u64,
        &setup.backoff,
    );
    retries.push(Reverse(rollout.sites[&site.id].next_attempt_ms));
    out.failures += 1;
}

/// Max-min fair shares of the tower's egress among the sites in flight.
fn share_egress(sites: &mut [Site], in_flight: &[usize], egress: f64) {
    let mut order: Vec<usize> = in_flight.to_vec();
    order.sort_by(|a, b| sites[*a].link.rate.total_cmp(&sites[*b].link.rate));
    let mut left = egress;
    for (k, &i) in order.iter().enumerate() {
        let fair = left / (order.len() - k) as f64;
        let rate = sites[i].link.rate.min(fair);
        sites[i].rate = rate;
        left -= rate;
    }
}

fn sample_until(
    out: &mut Outcome,
    rollout: &Rollout,
    t: f64,
    next_sample: &mut f64,
    window_egress: &mut u64,
    sites: usize,
) {
    while *next_sample <= t {
        let totals = schedule::totals(rollout, (*next_sample * 1000.0) as u64);
        let done = totals.sites["scheduled"] as f64 / sites as f64;
        out.samples.push(Sample {
            t: *next_sample,
            done,
            egress: *window_egress as f64 / SAMPLE_S,
        });
        *window_egress = 0;
        *next_sample += SAMPLE_S;
    }
}

/// The rollout as the tower would create it for `images`.
fn rollout_of(images: &[Vec<Blob>], setup: &Setup) -> Rollout {
    Rollout {
        id: "r-model".into(),
        application: "pos".into(),
        images: images
            .iter()
            .enumerate()
            .map(|(i, blobs)| Image {
                requested: format!("registry.example/pos/image-{i}:release"),
                repository: format!("registry.example/pos/image-{i}"),
                tag: Some("release".into()),
                digest: format!("sha256:image-{i}"),
                manifests: vec![Manifest {
                    digest: format!("sha256:image-{i}"),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    size: 1000,
                }],
                blobs: blobs.clone(),
            })
            .collect(),
        selector: serde_json::json!({}),
        max_parallel: setup.max_parallel,
        bandwidth: None,
        created_ms: 0,
        cancelled_ms: None,
        superseded_by: None,
        sites: Default::default(),
        pulling: None,
    }
}
