//! A node cut off from its peers by a network fault (its peer links black-holed: bytes
//! swallowed, nothing refused) while towerctl delivers through it, listed first: the
//! node refuses writes as soon as it knows it has no leader, towerctl goes on with the
//! next node, and the delivery completes through the others; once the links heal, every
//! node serves everything that was acknowledged.

mod kit;

use kit::blackhole::BlackHole;
use kit::node::{free_addr, leader, served, status};
use kit::oci;
use kit::proxy::CountingProxy;
use kit::tools::require;
use kit::upstream::ReferenceRegistry;
use kit::{Node, NodeOptions};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Three nodes whose every peer link (one per direction and pair) runs through a
/// [`BlackHole`].
struct Site {
    nodes: Vec<Node>,
    links: BTreeMap<(u64, u64), BlackHole>,
}

impl Site {
    fn start() -> Site {
        Site::start_with(false)
    }

    /// Three nodes started with every peer link already black-holed: none can elect a
    /// leader until [`Site::heal`].
    fn start_cut() -> Site {
        Site::start_with(true)
    }

    fn start_with(cut: bool) -> Site {
        let listens: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, free_addr())).collect();
        let mut links = BTreeMap::new();
        for &(from, _) in &listens {
            for &(to, addr) in &listens {
                if from != to {
                    let link = BlackHole::start(addr);
                    if cut {
                        link.cut();
                    }
                    links.insert((from, to), link);
                }
            }
        }
        let nodes = listens
            .iter()
            .map(|&(id, listen)| {
                let peers = listens
                    .iter()
                    .filter(|(p, _)| *p != id)
                    .map(|(p, _)| (*p, links[&(id, *p)].addr))
                    .collect();
                Node::start(NodeOptions {
                    id: Some(id),
                    cluster: Some((listen, peers)),
                    ..Default::default()
                })
            })
            .collect();
        Site { nodes, links }
    }

    /// Black-holes every link to and from node `id`.
    fn cut(&self, id: u64) {
        for ((from, to), link) in &self.links {
            if *from == id || *to == id {
                link.cut();
            }
        }
    }

    fn heal(&self) {
        self.links.values().for_each(BlackHole::heal);
    }

    fn id(&self, i: usize) -> u64 {
        status(&self.nodes[i]).expect("status").node_id
    }
}

/// Delivers an image through `first` then the others, cutting node `first` off once
/// its bytes flow: the node must refuse as cut off (NO_QUORUM, rather than a timeout)
/// and the delivery complete through the others; after healing, every node serves it.
fn delivery_survives_the_cut_of(pick: impl Fn(&Site, usize) -> usize) {
    let Some(registry) = require("docker-registry") else {
        return;
    };
    let up = ReferenceRegistry::start(&registry);
    let img = oci::image(91, &[3 << 20, 3 << 20, 3 << 20], "amd64");
    oci::push_image_as(up.addr, "team/big", "v1", &img);
    // A thin upstream link (4 MiB/s): the cut comes while the image's bytes flow.
    let link = CountingProxy::start_throttled(up.addr, Some(4 << 20));
    let site = Site::start();
    let all: Vec<&Node> = site.nodes.iter().collect();
    let l = leader(&all);
    let first = pick(&site, l);
    let cut_id = site.id(first);
    let mut order = vec![first];
    order.extend((0..3).filter(|i| *i != first));
    let sites: Vec<String> = order
        .iter()
        .map(|i| site.nodes[*i].api.to_string())
        .collect();
    let upstream = link.addr.to_string();
    let image = format!("{upstream}/team/big:v1");
    let mut child = std::process::Command::new(kit::tools::towerctl_bin())
        .args(["deliver", "--site", &sites.join(","), "--insecure-registry"])
        .args([&upstream, &image])
        .env("HOME", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bytes of the image are on their way to the first node: now cut it off.
    link.wait_received(1 << 20);
    site.cut(cut_id);
    let cut_at = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(60),
            "towerctl still runs 60 s after the cut"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = cut_at.elapsed();
    eprintln!("node {cut_id} cut off; the delivery completed {took:?} after the cut");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "towerctl failed: {stderr}");
    // The node refused as soon as it knew itself cut off (rather than towerctl waiting
    // out a commit or transport timeout), and towerctl went on with another node.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("going on with another node") && l.contains("NO_QUORUM")),
        "towerctl went on with another node when the cut one refused (NO_QUORUM): {stderr}"
    );
    // The node that was cut off serves everything once the links heal.
    site.heal();
    let manifest = format!("/v2/{upstream}/team/big/manifests/v1");
    for n in &site.nodes {
        assert_eq!(served(n, &manifest), img.digest);
        for b in img.blobs() {
            let path = format!("/v2/{upstream}/team/big/blobs/{}", b.digest);
            assert_eq!(served(n, &path), b.digest);
        }
    }
}

#[test]
fn a_delivery_through_a_leader_cut_off_from_its_peers_completes_through_the_others() {
    delivery_survives_the_cut_of(|_, leader| leader);
}

#[test]
fn a_delivery_through_a_follower_cut_off_from_its_peers_completes_through_the_others() {
    delivery_survives_the_cut_of(|_, leader| (leader + 1) % 3);
}

/// A site with no leader (two of three nodes down: the third refuses with NO_QUORUM)
/// takes a delivery once its nodes are back: towerctl waits for a leader (the nodes it
/// cannot reach do not count against the wait) rather than give up at the first round.
#[test]
fn a_delivery_to_a_site_without_a_leader_goes_through_once_one_is_elected() {
    let Some(registry) = require("docker-registry") else {
        return;
    };
    let up = ReferenceRegistry::start(&registry);
    let img = oci::image(92, &[512 << 10], "amd64");
    oci::push_image_as(up.addr, "team/small", "v1", &img);
    let mut nodes = kit::node::cluster(3, &NodeOptions::default());
    leader(&nodes.iter().collect::<Vec<_>>());
    nodes[1].kill9();
    nodes[2].kill9();
    // Alone, the first node stops naming a leader (check-quorum, pre-vote).
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&nodes[0]).is_none_or(|s| s.leader_id != 0) {
        assert!(Instant::now() < deadline, "node 1 still names a leader");
        std::thread::sleep(Duration::from_millis(50));
    }
    let upstream = up.addr.to_string();
    let image = format!("{upstream}/team/small:v1");
    let (mut child, said) = deliver(&apis(&nodes), &upstream, &image, &[]);
    // Node 1 knows no leader and the others cannot be reached: towerctl waits for a
    // leader (asking again) rather than give up; then the two others come back.
    let mut told = Vec::new();
    while !told.iter().any(|l: &String| l.contains("asking again")) {
        let line = said
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("towerctl never went round again: {told:?}"));
        told.push(line);
    }
    assert!(
        told.iter().any(|l| l.contains("NO_QUORUM")),
        "node 1 refused with NO_QUORUM: {told:?}"
    );
    nodes[1].restart();
    nodes[2].restart();
    let status = child.wait().unwrap();
    told.extend(said.try_iter());
    assert!(status.success(), "towerctl failed: {told:?}");
    let manifest = format!("/v2/{upstream}/team/small/manifests/v1");
    for n in &nodes {
        assert_eq!(served(n, &manifest), img.digest);
    }
}

/// Starts `towerctl deliver` of `image` (from the plain-HTTP `upstream`) to `sites`, with
/// `more` arguments; its stderr is sent line by line.
fn deliver(
    sites: &[String],
    upstream: &str,
    image: &str,
    more: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = std::process::Command::new(kit::tools::towerctl_bin())
        .args(["deliver", "--site", &sites.join(","), "--insecure-registry"])
        .args([upstream, image])
        .args(more)
        .env("HOME", "/nonexistent")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, said) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    (child, said)
}

/// Every node's API address.
fn apis(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(|n| n.api.to_string()).collect()
}

/// A site whose nodes have just started knows no leader until their first election:
/// towerctl waits for one (here held back by cut links until towerctl has said it
/// waits) rather than report the site unreachable.
#[test]
fn a_delivery_to_a_site_before_its_first_election_waits_for_a_leader() {
    let Some(registry) = require("docker-registry") else {
        return;
    };
    let up = ReferenceRegistry::start(&registry);
    let img = oci::image(93, &[256 << 10], "amd64");
    oci::push_image_as(up.addr, "team/fresh", "v1", &img);
    let upstream = up.addr.to_string();
    let site = Site::start_cut();
    let image = format!("{upstream}/team/fresh:v1");
    let (mut child, said) = deliver(
        &apis(&site.nodes),
        &upstream,
        &image,
        &["--leader-wait", "60s"],
    );
    let mut told = Vec::new();
    while !told
        .iter()
        .any(|l: &String| l.contains("no node knows a leader"))
    {
        let line = said
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("towerctl never said it waits for a leader: {told:?}"));
        told.push(line);
    }
    assert!(told.iter().any(|l| l.contains("NO_QUORUM")), "{told:?}");
    site.heal();
    let status = child.wait().unwrap();
    told.extend(said.iter());
    assert!(status.success(), "towerctl failed: {told:?}");
    let manifest = format!("/v2/{upstream}/team/fresh/manifests/v1");
    for n in &site.nodes {
        assert_eq!(served(n, &manifest), img.digest);
    }
}

/// With every node cut off from its peers for good, towerctl gives up once
/// `--leader-wait` has passed (plus at most a round of calls), exit code 8.
#[test]
fn a_site_that_never_elects_a_leader_is_reported_unreachable_after_the_leader_wait() {
    let Some(registry) = require("docker-registry") else {
        return;
    };
    let up = ReferenceRegistry::start(&registry);
    let img = oci::image(94, &[64 << 10], "amd64");
    oci::push_image_as(up.addr, "team/never", "v1", &img);
    let upstream = up.addr.to_string();
    let site = Site::start_cut();
    let started = Instant::now();
    let image = format!("{upstream}/team/never:v1");
    let (mut child, said) = deliver(
        &apis(&site.nodes),
        &upstream,
        &image,
        &["--leader-wait", "3s"],
    );
    let status = child.wait().unwrap();
    let took = started.elapsed();
    // The child has exited: its stderr ends, and so does the channel.
    let told: Vec<String> = said.iter().collect();
    assert_eq!(status.code(), Some(8), "{told:?}");
    assert!(
        took >= Duration::from_secs(3),
        "gave up after {took:?}: {told:?}"
    );
    assert!(
        took <= Duration::from_secs(8),
        "gave up after {took:?}: {told:?}"
    );
    assert!(
        told.iter()
            .any(|l| l.contains("no node knew a leader of the site for 3s: giving up")),
        "{told:?}"
    );
}
