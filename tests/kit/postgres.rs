//! Debian's PostgreSQL 15, started by the tests themselves: one server per test binary
//! (a cluster made by `initdb` in a directory of its own, run as the unprivileged
//! `postgres` user when the tests run as root, on a free loopback port with a socket
//! directory of its own), and a fresh database per test.
//!
//! The server lives as long as the test binary: it is started by a thread that never
//! ends, and told to stop (SIGQUIT, PostgreSQL's immediate shutdown) when that thread's
//! process ends. Directories left by earlier runs are removed when the next one starts.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where Debian puts PostgreSQL 15's programs.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running server.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub dir: PathBuf,
    /// The CA of its TLS certificate (for 127.0.0.1), when `openssl` made one.
    pub ca: Option<PathBuf>,
    /// The user its programs run as (uid, gid), when the tests run as root.
    user: Option<(u32, u32)>,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// PostgreSQL's programs, or `None` (the test skips) when they are not installed outside
/// CI. Under `CI=true` a missing PostgreSQL fails the test.
pub fn installed() -> bool {
    let found = Path::new(BIN).join("postgres").is_file();
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PostgreSQL 15 ({BIN}) is required under CI=true but is not installed (see .ci/run)");
        }
        eprintln!("skipping: PostgreSQL 15 is not installed (apt-get install postgresql)");
    }
    found
}

/// The URL of a new, empty database on this binary's server (started on first use), or
/// `None` when PostgreSQL is not installed (outside CI).
pub fn database() -> Option<String> {
    let server = SERVER.get_or_init(|| installed().then(start)).as_ref()?;
    let name = format!("t{}", DATABASES.fetch_add(1, Ordering::SeqCst));
    let out = server
        .command("createdb")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            &name,
        ])
        .output()
        .expect("run createdb");
    assert!(
        out.status.success(),
        "createdb {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(server.url(&name))
}

/// The CA of this binary's server's TLS certificate (for 127.0.0.1), once the server is
/// started (`database` starts it); `None` where `openssl` is missing.
pub fn ca() -> Option<PathBuf> {
    SERVER.get()?.as_ref()?.ca.clone()
}

/// A CA and a certificate for 127.0.0.1 it signed, in the server's directory (the key
/// the server's user's alone, as PostgreSQL demands); the CA's path.
fn certificates(server: &Server) -> Option<PathBuf> {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .current_dir(&server.dir)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let made = openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=test-db-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    ) && openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    ) && std::fs::write(
        server.dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .is_ok()
        && openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
    if !made {
        eprintln!("PostgreSQL without TLS: openssl could not make its certificate");
        return None;
    }
    // The server reads its key and certificate from its data directory.
    for name in ["server.key", "server.pem"] {
        let to = server.dir.join("data").join(name);
        std::fs::copy(server.dir.join(name), &to).ok()?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).ok()?;
        if let Some((uid, gid)) = server.user {
            std::os::unix::fs::chown(&to, Some(uid), Some(gid)).ok()?;
        }
    }
    Some(server.dir.join("ca.pem"))
}

/// Runs SQL on a database of this binary's server with `psql`; returns its output (rows
/// unaligned, `|` between columns).
pub fn psql(url: &str, sql: &str) -> String {
    let server = SERVER.get().and_then(Option::as_ref).expect("a server");
    let out = server
        .command("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Server {
    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// One of PostgreSQL's programs, as the server's user.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(Path::new(BIN).join(program));
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd.env_remove("PGPASSWORD").env("PGCONNECT_TIMEOUT", "10");
        cmd.current_dir(&self.dir);
        cmd
    }
}

/// The uid and gid of the `postgres` user, when this process runs as root (PostgreSQL
/// refuses to run as root).
fn unprivileged() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("a postgres user (made by Debian's postgresql package)");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}

/// Whether process `pid` runs (a zombie does not).
fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn start() -> Server {
    let root = std::env::temp_dir();
    // What earlier runs left.
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("site-registry-pg-") {
                if pid.parse().is_ok_and(|p: u32| !pid_alive(p)) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = root.join(format!("site-registry-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("socket")).unwrap();
    let user = unprivileged();
    for d in [dir.clone(), dir.join("socket")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
        }
    }
    let mut server = Server {
        port: 0,
        dir: dir.clone(),
        ca: None,
        user,
    };
    let out = server
        .command("initdb")
        .args([
            "-D",
            "data",
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.ca = certificates(&server);
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        server.port = port;
        if run(&server) {
            return server;
        }
    }
    panic!(
        "PostgreSQL did not start; log:\n{}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
}

/// Starts the server from a thread that lives as long as the test binary; true once it
/// accepts connections.
fn run(server: &Server) -> bool {
    let mut cmd = server.command("postgres");
    cmd.args(["-D", "data", "-p", &server.port.to_string(), "-k"])
        .arg(server.dir.join("socket"))
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=300",
        ])
        .args(if server.ca.is_some() {
            &[
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=server.pem",
                "-c",
                "ssl_key_file=server.key",
            ][..]
        } else {
            &[][..]
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(server.dir.join("log")).unwrap());
    unsafe {
        cmd.pre_exec(|| {
            // Stopped (immediate shutdown) when the thread that started it ends: the
            // end of the test binary.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = cmd.spawn();
        let ok = child.is_ok();
        let _ = tx.send(child.map(|c| c.id()));
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    let pid = rx.recv().unwrap().expect("spawn postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return false;
        }
        let ready = server
            .command("pg_isready")
            .args(["-h", "127.0.0.1", "-p", &server.port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
