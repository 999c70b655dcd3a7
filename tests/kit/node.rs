//! A real `site-agent` process on a free loopback port, with its own data directory.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Push user of nodes started with push enabled.
pub const USER: &str = "ci";
/// Its password.
pub const PASSWORD: &str = "s3cret-pw";

/// How to configure a node.
#[derive(Clone, Default)]
pub struct NodeOptions {
    pub push: bool,
    pub max_manifest_size: Option<u64>,
    pub max_blob_size: Option<u64>,
    pub default_upstream: Option<String>,
    /// `[gc] grace_period`, e.g. "2s".
    pub grace: Option<String>,
    /// `[gc] cache_ttl`, e.g. "1s".
    pub cache_ttl: Option<String>,
    /// `[node] scrub_interval`, e.g. "1s" (off unless given).
    pub scrub: Option<String>,
    /// `[node] verify_reads` ("first" unless given).
    pub verify_reads: Option<String>,
    /// `[gc] capacity` in bytes.
    pub capacity: Option<u64>,
    /// `[registry] upload_ttl`, e.g. "1s".
    pub upload_ttl: Option<String>,
    /// `[node] id` (default 1).
    pub id: Option<u64>,
    /// `[cluster] listen` and `peers` (id, address).
    pub cluster: Option<(SocketAddr, Vec<(u64, SocketAddr)>)>,
    /// `[cluster] join`: joins a running site.
    pub join: bool,
    /// Where its temporary directory is made (default: the system's temp directory).
    pub dir_in: Option<PathBuf>,
    /// `[cluster] snapshot_entries`.
    pub snapshot_entries: Option<u64>,
    /// `[tls]`: the node's certificate and key, and the site CA.
    pub tls: Option<(super::tls::Pair, PathBuf)>,
    /// TOML appended to the configuration as it is (`[pull]` and `[[pull.registry]]`).
    pub extra: Option<String>,
    /// Environment of the process besides the test's (e.g. a `PATH` with credential
    /// helpers).
    pub env: Vec<(String, String)>,
}

impl NodeOptions {
    /// Push enabled for [`USER`].
    pub fn push() -> NodeOptions {
        NodeOptions {
            push: true,
            ..Default::default()
        }
    }

    /// A pull-through cache under `policy` filling itself from `upstream` (plain HTTP),
    /// the registry of names without a host, with a 3 s timeout; `more` adds `[pull]`
    /// lines.
    pub fn pulling(upstream: SocketAddr, policy: &str, more: &str) -> NodeOptions {
        NodeOptions {
            default_upstream: Some(upstream.to_string()),
            extra: Some(format!(
                "[pull]\npolicy = \"{policy}\"\ninsecure_registries = [\"{upstream}\"]\ntimeout = \"3s\"\n{more}"
            )),
            ..NodeOptions::default()
        }
    }
}

/// A running node. Killed when dropped; its log is printed if the test is failing.
pub struct Node {
    pub addr: SocketAddr,
    /// The gRPC API (`[api] listen`).
    pub api: SocketAddr,
    /// `[cluster] listen`, when it has peers.
    pub cluster: Option<SocketAddr>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Node {
    pub fn start(opts: NodeOptions) -> Node {
        Node::try_start(opts).unwrap_or_else(|log| panic!("site-agent did not start; log:\n{log}"))
    }

    /// Starts a node; its log when it exited before listening.
    pub fn try_start(opts: NodeOptions) -> Result<Node, String> {
        let dir = match &opts.dir_in {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .expect("temp dir");
        let mut config = format!(
            "[node]\nid = {}\ndata_dir = \"{}\"\nscrub_interval = \"{}\"\nverify_reads = \"{}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n",
            opts.id.unwrap_or(1),
            dir.path().join("data").display(),
            opts.scrub.as_deref().unwrap_or("0s"),
            opts.verify_reads.as_deref().unwrap_or("first")
        );
        if let Some((listen, peers)) = &opts.cluster {
            let peers: Vec<String> = peers
                .iter()
                .map(|(id, a)| format!("{{ id = {id}, address = \"{a}\" }}"))
                .collect();
            config.push_str(&format!(
                "[cluster]\nlisten = \"{listen}\"\npeers = [{}]\njoin = {}\nsnapshot_entries = {}\n\n",
                peers.join(", "),
                opts.join,
                opts.snapshot_entries.unwrap_or(1000)
            ));
        }
        config.push_str("[registry]\nlisten = \"127.0.0.1:0\"\n");
        if let Some(m) = opts.max_manifest_size {
            config.push_str(&format!("max_manifest_size = {m}\n"));
        }
        if let Some(m) = opts.max_blob_size {
            config.push_str(&format!("max_blob_size = {m}\n"));
        }
        if let Some(t) = &opts.upload_ttl {
            config.push_str(&format!("upload_ttl = \"{t}\"\n"));
        }
        if let Some(u) = &opts.default_upstream {
            config.push_str(&format!("default_upstream = \"{u}\"\n"));
        }
        // The periodic sweep is left to the tests, which run GC on demand.
        config.push_str("\n[gc]\ninterval = \"1h\"\n");
        if let Some(g) = &opts.grace {
            config.push_str(&format!("grace_period = \"{g}\"\n"));
        }
        if let Some(t) = &opts.cache_ttl {
            config.push_str(&format!("cache_ttl = \"{t}\"\n"));
        }
        if let Some(c) = opts.capacity {
            config.push_str(&format!("capacity = {c}\n"));
        }
        if let Some((pair, ca)) = &opts.tls {
            config.push_str(&format!(
                "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
                pair.cert.display(),
                pair.key.display(),
                ca.display()
            ));
        }
        if let Some(extra) = &opts.extra {
            config.push_str(&format!("\n{extra}\n"));
        }
        if opts.push {
            config.push_str(&format!(
                "\n[registry.push]\nenabled = true\nusers = [{{ name = \"{USER}\", password = \"{PASSWORD}\" }}]\n"
            ));
        }
        std::fs::write(dir.path().join("site-agent.toml"), config).unwrap();
        let mut node = Node {
            addr: ([127, 0, 0, 1], 0).into(),
            api: ([127, 0, 0, 1], 0).into(),
            cluster: opts.cluster.as_ref().map(|(listen, _)| *listen),
            dir,
            child: None,
            env: opts.env.clone(),
        };
        node.try_spawn()?;
        Ok(node)
    }

    /// Starts the process again on the same data directory (after a kill or stop).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node still running");
        if let Err(log) = self.try_spawn() {
            panic!("site-agent did not start; log:\n{log}");
        }
    }

    /// Starts the process again on the same data directory and on the same registry and
    /// API ports, as a site that comes back after an outage would.
    pub fn restart_same_ports(&mut self) {
        let path = self.config_path();
        let config = std::fs::read_to_string(&path).unwrap();
        let config = config
            .replacen(
                "[api]\nlisten = \"127.0.0.1:0\"",
                &format!("[api]\nlisten = \"{}\"", self.api),
                1,
            )
            .replacen(
                "[registry]\nlisten = \"127.0.0.1:0\"",
                &format!("[registry]\nlisten = \"{}\"", self.addr),
                1,
            );
        std::fs::write(&path, config).unwrap();
        let (addr, api) = (self.addr, self.api);
        self.restart();
        assert_eq!(
            (self.addr, self.api),
            (addr, api),
            "the node came back on its ports"
        );
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_site-agent"))
            .args(["run", "--config"])
            .arg(self.dir.path().join("site-agent.toml"))
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn site-agent");
        let stderr = child.stderr.take().unwrap();
        let rx = super::tools::pipe_log(stderr, self.log_path(), |line| {
            if !line.contains("registry listening") {
                return None;
            }
            let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
            let addr = |k: &str| v[k].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
            Some((addr("addr")?, addr("api")?))
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((addr, api)) => {
                    (self.addr, self.api) = (addr, api);
                    self.child = Some(child);
                    return Ok(());
                }
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.log());
                }
                Err(_) => {
                    if let Ok(Some(_)) = child.try_wait() {
                        // Exited: its log is complete once the reader has drained it.
                        std::thread::sleep(Duration::from_millis(100));
                        return Err(self.log());
                    }
                }
            }
        }
    }

    /// SIGKILL, as a power cut would leave it (minus the page cache).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("node running");
        let pid = c.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("site-agent did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Process id, for measurements.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("site-agent.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits (bounded, 20 s) until one line of the node's log contains every one of
    /// `parts` (its message and field values).
    pub fn wait_log_line(&self, parts: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .log()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
        {
            assert!(
                Instant::now() < deadline,
                "{} never logged a line with {parts:?} within 20 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded, 20 s) until the node's log contains `text`.
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{} never logged {text:?} within 20 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every blob file on disk with its size, sorted.
    pub fn blob_files(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        walk(&self.data_dir().join("blobs"), &mut out);
        out.sort();
        out
    }

    /// Files of upload sessions in progress.
    pub fn upload_files(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        walk(&self.data_dir().join("uploads"), &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push((
                p.display().to_string(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            ));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- site-agent log ----\n{}", self.log());
        }
    }
}

/// A loopback port free now, for a process that binds it later. Taken below the kernel's
/// ephemeral range (32768 and up), where nothing binding port 0 lands, so that the
/// nodes, proxies and registries of the tests running alongside cannot take it first;
/// within the test process, each port is handed out once.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Where this process starts: apart from the other test binaries' (run one by one).
    let base = std::process::id().wrapping_mul(997);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            n < SPAN,
            "no free loopback port left below the ephemeral range"
        );
        let port = LOW + base.wrapping_add(n) % SPAN;
        let addr: SocketAddr = ([127, 0, 0, 1], port as u16).into();
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// `n` nodes forming one site (ids 1..=n), each started with `opts` and its `[cluster]`.
pub fn cluster(n: u64, opts: &NodeOptions) -> Vec<Node> {
    cluster_with(n, |_| opts.clone())
}

/// `n` nodes forming one site (ids 1..=n), node `id` started with `opts(id)` and its
/// `[cluster]`.
///
/// A cluster port is picked free before its node binds it; if something took it
/// meanwhile, the site is started again on other ports (at most 3 times).
pub fn cluster_with(n: u64, opts: impl Fn(u64) -> NodeOptions) -> Vec<Node> {
    let mut attempt = 0;
    'site: loop {
        attempt += 1;
        let addrs: Vec<(u64, SocketAddr)> = (1..=n).map(|id| (id, free_addr())).collect();
        let mut nodes = Vec::new();
        for &(id, listen) in &addrs {
            let peers = addrs.iter().filter(|(p, _)| *p != id).cloned().collect();
            match Node::try_start(NodeOptions {
                id: Some(id),
                cluster: Some((listen, peers)),
                ..opts(id)
            }) {
                Ok(node) => nodes.push(node),
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    eprintln!("cluster port {listen} taken before node {id} bound it: starting the site again");
                    continue 'site;
                }
                Err(log) => panic!("site-agent did not start; log:\n{log}"),
            }
        }
        return nodes;
    }
}

/// Waits (bounded) until `node` serves `path` with status 200; returns the body's digest.
pub fn served(node: &Node, path: &str) -> String {
    served_at(node.addr, path)
}

/// [`served`], by the registry at `addr`.
pub fn served_at(addr: SocketAddr, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = super::request(addr, "GET", path, &[], b"");
        if r.status == 200 {
            return super::digest(&r.body);
        }
        assert!(
            Instant::now() < deadline,
            "{path} not served by {addr} within 10 s: {}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample `name` in a `/metrics` text whose labels include every one of
/// `labels`.
pub fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        (n == name
            && labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
        .then(|| v.parse().unwrap())
    })
}

/// The value of the sample `name` with `labels` that `node` exposes on `/metrics`.
pub fn metric(node: &Node, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let r = super::request(node.addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "/metrics of {}", node.addr);
    metric_in(&String::from_utf8(r.body).unwrap(), name, labels)
}

/// The node's status over gRPC, if it answers.
pub fn status(node: &Node) -> Option<site_api::pb::StatusResponse> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = site_api::pb::site_client::SiteClient::connect(format!("http://{}", node.api))
            .await
            .ok()?;
        c.status(site_api::pb::StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    })
}

/// Waits (bounded) until every node of `nodes` names the same leader among them; returns
/// its index in `nodes`.
pub fn leader(nodes: &[&Node]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Vec<u64> = nodes
            .iter()
            .map(|n| status(n).map_or(0, |s| s.leader_id))
            .collect();
        if seen[0] != 0 && seen.iter().all(|l| *l == seen[0]) {
            if let Some(i) = nodes
                .iter()
                .position(|n| status(n).map(|s| s.node_id) == Some(seen[0]))
            {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within 20 s: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
