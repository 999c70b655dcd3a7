//! External tools the tests drive. Under `CI=true` a missing tool fails the test; on a
//! developer machine the test says what to install and is skipped.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of `tool` if installed. `None` means: skip (only outside CI).
pub fn require(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is required under CI=true but is not installed (see .ci/run)");
        }
        eprintln!("skipping: {tool} is not installed (apt-get install {tool})");
    }
    found
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// This build's `towerctl`: the `site-tower` crate's binary.
pub fn towerctl_bin() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        workspace_bin(
            "site-tower",
            "towerctl",
            &[
                "crates/tower",
                "crates/delivery",
                "crates/fleet-api",
                "crates/fleet",
                "crates/upstream",
                "crates/proto",
                "crates/entry",
                "crates/state",
                "crates/core",
            ],
        )
    })
}

/// This build's `towerd`: the `site-towerd` crate's binary.
pub fn towerd_bin() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        workspace_bin(
            "site-towerd",
            "towerd",
            &[
                "crates/towerd",
                "crates/fleet",
                "crates/fleet-api",
                "crates/delivery",
                "crates/upstream",
                "crates/proto",
                "crates/entry",
                "crates/state",
                "crates/core",
                // The tower's registry: the node's library and what it builds on.
                ".",
                "crates/http",
                "crates/api",
                "crates/pull",
                "crates/node",
                "crates/replica",
            ],
        )
    })
}

/// The binary `bin` of the workspace's package `package`, beside the test binaries. When
/// it is missing there, or older than a source of `crates`, it is built first (once per
/// test binary; the first test to ask waits about a minute). `cargo test --workspace`
/// does not build other packages' binaries, so a fresh CI run builds `towerctl` and
/// `towerd` here, on first use; a `cargo build --release` of the package before `cargo
/// bench` leaves it in place. Cargo names only the binaries of the package under test,
/// hence the search.
fn workspace_bin(package: &str, bin: &str, crates: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let beside = profile_dir.join(bin);
    let built = std::fs::metadata(&beside).and_then(|m| m.modified()).ok();
    if built.is_some_and(|b| b >= newest_source(crates)) {
        return beside;
    }
    eprintln!("building {bin} (cargo build -p {package})");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", package, "--bin", bin])
        .args(["--message-format", "json-render-diagnostics"]);
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    let out = run(&mut cargo);
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo names the {bin} it built"))
}

/// The newest modification time among the sources (`src`, `Cargo.toml`, `build.rs`) of
/// `crates`, which name every crate of the workspace the binary builds on (`site-proto`
/// builds on `site-entry`, which builds on `site-state`), and the workspace files.
fn newest_source(crates: &[&str]) -> std::time::SystemTime {
    fn walk(path: &std::path::Path, newest: &mut std::time::SystemTime) {
        if let Ok(t) = std::fs::metadata(path).and_then(|m| m.modified()) {
            *newest = (*newest).max(t);
        }
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            walk(&e.path(), newest);
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for crate_dir in crates {
        for part in ["src", "Cargo.toml", "build.rs"] {
            walk(&root.join(crate_dir).join(part), &mut newest);
        }
    }
    for path in ["proto", "Cargo.lock", "Cargo.toml"] {
        walk(&root.join(path), &mut newest);
    }
    newest
}

/// Runs this build's `towerctl` with no Docker credentials around.
pub fn towerctl(args: &[&str]) -> Output {
    Command::new(towerctl_bin())
        .args(args)
        .env("HOME", "/nonexistent")
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run towerctl")
}

/// The stdout of a `towerctl` run that must have succeeded.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "towerctl failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Seconds `towerctl deliver` takes to deliver `upstream/image` (plain HTTP upstream) to
/// the nodes `sites` of a site.
pub fn timed_deliver(sites: &[std::net::SocketAddr], upstream: &str, image: &str) -> f64 {
    let sites: Vec<String> = sites.iter().map(ToString::to_string).collect();
    // Found (or built) before the clock starts.
    towerctl_bin();
    let start = std::time::Instant::now();
    let out = towerctl(&[
        "deliver",
        "--site",
        &sites.join(","),
        "--insecure-registry",
        upstream,
        &format!("{upstream}/{image}"),
    ]);
    let secs = start.elapsed().as_secs_f64();
    ok(out);
    secs
}

/// A tmpfs of `bytes` mounted on a new directory, unmounted when dropped: a small disk
/// that fills up for real. `None` (skip) where mounting is not allowed, outside CI.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = as_root("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("cannot mount a tmpfs under CI=true (run as root): {why}");
                }
                eprintln!("skipping: cannot mount a tmpfs (run as root): {why}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = as_root("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// `program` as root: itself when the tests run as root, else through `sudo -n`.
fn as_root(program: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

/// A CPU quota for processes (cgroup v1 `cpu` controller, as root): each process put in
/// it gets `percent` of one core, as if it ran on a machine of its own that small. The
/// group is removed when dropped (once its processes have exited or moved).
pub struct CpuQuota {
    dir: PathBuf,
}

impl CpuQuota {
    /// A new group named `name` under `/sys/fs/cgroup/cpu`, allowing `percent` of a core.
    pub fn new(name: &str, percent: u64) -> CpuQuota {
        let dir =
            PathBuf::from("/sys/fs/cgroup/cpu").join(format!("site-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the cgroup {} (the cgroup v1 cpu controller, as root): {e}",
                dir.display()
            )
        });
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").unwrap();
        std::fs::write(dir.join("cpu.cfs_quota_us"), (percent * 1000).to_string()).unwrap();
        CpuQuota { dir }
    }

    /// Puts process `pid` (every thread of it, and what it starts later) in the group.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// Seconds the group's processes were held back by the quota so far.
    pub fn throttled_seconds(&self) -> f64 {
        std::fs::read_to_string(self.dir.join("cpu.stat"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("throttled_time "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(0.0, |ns| ns as f64 / 1e9)
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // Processes still in it go back to the root group, then it goes.
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write("/sys/fs/cgroup/cpu/cgroup.procs", pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Copies a child's stderr, line by line, into the log file at `path` on a thread; the
/// first line for which `found` gives something is sent on the returned channel (the
/// address the process says it listens on).
pub fn pipe_log<T: Send + 'static>(
    stderr: std::process::ChildStderr,
    path: PathBuf,
    found: impl Fn(&str) -> Option<T> + Send + 'static,
) -> std::sync::mpsc::Receiver<T> {
    use std::io::{BufRead, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = writeln!(log, "{line}");
            if let Some(t) = found(&line) {
                let _ = tx.send(t);
            }
        }
    });
    rx
}
