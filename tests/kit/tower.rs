//! A real `towerd` process on a free loopback port, with its own data directory, and its
//! JSON API as the tests call it.

use super::http::{request, Response};
use super::tools::towerd_bin;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running tower. Killed when dropped; its log is printed if the test is failing.
pub struct Towerd {
    pub addr: SocketAddr,
    /// The tower's registry (its embedded node's OCI API).
    pub registry: SocketAddr,
    /// Its node's gRPC API.
    pub registry_api: SocketAddr,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// More of the registry's `site-agent.toml`.
    registry_more: String,
    /// Its PostgreSQL database (`--database`), if it keeps its state there.
    pub database: Option<String>,
    /// The name its leases are held under (logged at start).
    pub holder: String,
    /// Its registry node's id, cluster listener and peers, when the registries of
    /// several towers form one site.
    registry_cluster: Option<RegistryNode>,
    child: Option<Child>,
}

/// A tower's registry node in a site of several: its id, cluster listener and peers.
type RegistryNode = (u64, SocketAddr, Vec<(u64, SocketAddr)>);

/// Where a tower keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store under `--data`.
    Embedded,
    /// A new database on the test binary's PostgreSQL server (`super::postgres`).
    Postgres,
}

impl Towerd {
    /// Starts `towerd --data DIR --listen 127.0.0.1:0` with `args` besides (a retry
    /// backoff short enough for tests unless `args` gives one, and its registry on a
    /// free loopback port, filling itself from the `--insecure-registry` hosts, unless
    /// `args` gives `--registry`).
    pub fn start(args: &[&str]) -> Towerd {
        Towerd::start_with(args, "")
    }

    /// [`Towerd::start`], with `more` added to its registry's `site-agent.toml` (push
    /// users, say).
    pub fn start_with(args: &[&str], more: &str) -> Towerd {
        Towerd::start_in(None, args, more)
    }

    /// [`Towerd::start`] keeping its state on `backend`; `None` (the test skips) when
    /// that is PostgreSQL and it is not installed, outside CI.
    pub fn start_on(backend: Backend, args: &[&str]) -> Option<Towerd> {
        let database = match backend {
            Backend::Embedded => None,
            Backend::Postgres => Some(super::postgres::database()?),
        };
        Some(Towerd::start_in(database, args, ""))
    }

    /// [`Towerd::start_with`] on the PostgreSQL database `database`, if given.
    pub fn start_in(database: Option<String>, args: &[&str], more: &str) -> Towerd {
        Towerd::launch(database, None, args, more)
    }

    /// `n` replicas on the PostgreSQL database `database`, whose registries form one
    /// site (node ids 1..=n), each started with `args` and `more` for its registry.
    pub fn replicas(n: u64, database: &str, args: &[&str], more: &str) -> Vec<Towerd> {
        let addrs: Vec<(u64, SocketAddr)> =
            (1..=n).map(|id| (id, super::node::free_addr())).collect();
        addrs
            .iter()
            .map(|&(id, listen)| {
                let peers = addrs.iter().filter(|(p, _)| *p != id).cloned().collect();
                let node = Some((id, listen, peers));
                Towerd::launch(Some(database.to_owned()), node, args, more)
            })
            .collect()
    }

    fn launch(
        database: Option<String>,
        registry_cluster: Option<RegistryNode>,
        args: &[&str],
        more: &str,
    ) -> Towerd {
        let mut tower = Towerd {
            database,
            holder: String::new(),
            registry_cluster,
            addr: ([127, 0, 0, 1], 0).into(),
            registry: ([127, 0, 0, 1], 0).into(),
            registry_api: ([127, 0, 0, 1], 0).into(),
            dir: tempfile::tempdir().unwrap(),
            args: args.iter().map(|a| a.to_string()).collect(),
            registry_more: more.to_owned(),
            child: None,
        };
        tower.spawn();
        tower
    }

    /// Starts the process again on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "towerd still running");
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(towerd_bin());
        cmd.arg("--data")
            .arg(self.dir.path().join("data"))
            .args(["--listen", &self.addr.to_string()]);
        if !self.args.iter().any(|a| a == "--retry-first") {
            cmd.args(["--retry-first", "500ms", "--retry-max", "2s"]);
        }
        if !self.args.iter().any(|a| a == "--registry") {
            cmd.arg("--registry").arg(self.registry_config());
        }
        if let Some(url) = &self.database {
            cmd.args(["--database", url]);
        }
        let mut child = cmd
            .args(&self.args)
            .env("HOME", "/nonexistent")
            .env_remove("DOCKER_CONFIG")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn towerd");
        let stderr = child.stderr.take().unwrap();
        let rx = super::tools::pipe_log(stderr, self.log_path(), |line| {
            if !line.contains("tower listening") {
                return None;
            }
            line.split_whitespace()
                .find_map(|w| w.strip_prefix("address="))
                .and_then(|a| a.parse::<SocketAddr>().ok())
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    self.addr = addr;
                    let log = self.log();
                    let line = log
                        .lines()
                        .rfind(|l| l.contains("tower registry listening"))
                        .expect("the tower's registry in its log");
                    let field = |name: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(name))
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            .unwrap_or_else(|| panic!("no {name} in {line}"))
                    };
                    self.registry = field("address=");
                    self.registry_api = field("api=");
                    self.holder = log
                        .lines()
                        .rfind(|l| l.contains("tower listening"))
                        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("holder=")))
                        .expect("the tower's holder in its log")
                        .to_owned();
                    self.child = Some(child);
                    return;
                }
                Err(_) if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("towerd did not start; log:\n{}", self.log());
                }
                Err(_) => {}
            }
        }
    }

    /// A `site-agent.toml` for the tower's registry: a single node in the tower's data
    /// directory on a free loopback port, pulling `IfNotPresent` from the
    /// `--insecure-registry` hosts of the tower's arguments.
    fn registry_config(&self) -> PathBuf {
        let insecure: Vec<String> = self
            .args
            .windows(2)
            .filter(|w| w[0] == "--insecure-registry")
            .map(|w| format!("{:?}", w[1]))
            .collect();
        let (id, cluster) = match &self.registry_cluster {
            Some((id, listen, peers)) => {
                let peers: Vec<String> = peers
                    .iter()
                    .map(|(p, a)| format!("{{ id = {p}, address = \"{a}\" }}"))
                    .collect();
                (
                    format!("id = {id}\n"),
                    format!(
                        "[cluster]\nlisten = \"{listen}\"\npeers = [{}]\n",
                        peers.join(", ")
                    ),
                )
            }
            None => (String::new(), String::new()),
        };
        let config = format!(
            "[node]\n{id}data_dir = {:?}\n{cluster}[registry]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n{}[pull]\npolicy = \"IfNotPresent\"\ninsecure_registries = [{}]\ntimeout = \"3s\"\n{}\n",
            self.dir.path().join("data/registry").display().to_string(),
            // A test that sets GC gives the whole `[gc]` table.
            if self.registry_more.contains("[gc]") {
                ""
            } else {
                "[gc]\ninterval = \"1h\"\n"
            },
            insecure.join(", "),
            self.registry_more
        );
        let path = self.dir.path().join("registry.toml");
        std::fs::write(&path, config).unwrap();
        path
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the process to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("towerd running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "towerd did not stop within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("towerd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `METHOD path` with a JSON body (or none).
    pub fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Response {
        self.call_as(None, method, path, body)
    }

    /// [`Towerd::call`] with `Authorization: Bearer TOKEN` when a token is given.
    pub fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Response {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        if let Some(b) = &bearer {
            headers.push(("Authorization", b));
        }
        request(self.addr, method, path, &headers, body.as_bytes())
    }

    /// Runs `towerd ARGS` (a command: `token`, `migrate`) on this tower's data directory
    /// or database; its output.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(towerd_bin());
        cmd.args(args);
        match &self.database {
            Some(url) => cmd.args(["--database", url]),
            None => cmd.arg("--data").arg(self.data_dir()),
        };
        cmd.env("NO_COLOR", "1").output().expect("run towerd")
    }

    /// `towerd token create NAME --role ROLE`: the token (the last line it printed).
    pub fn create_token(&self, name: &str, role: &str) -> String {
        let out = self.command(&["token", "create", name, "--role", role]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "towerd token create: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout.lines().last().expect("a token").to_owned()
    }

    /// `METHOD path` that must answer `status`; its JSON body.
    pub fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        status: u16,
    ) -> serde_json::Value {
        let r = self.call(method, path, body);
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Waits (bounded) until `GET path` gives a body for which `done` holds; that body.
    pub fn wait_for(
        &self,
        path: &str,
        within: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let body = self.expect("GET", path, None, 200);
            if done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "not within {within:?}: {what}; last {path}:\n{body:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Towerd {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- towerd log ---\n{}", self.log());
        }
    }
}
