//! Serving benchmark: `site-agent`, Debian's nginx and Debian's `docker-registry` side by
//! side on the same content, one load generator (`wrk`, 2 threads, keep-alive
//! connections), one run. Prints requests/s for GETs of a manifest and of 1 MiB and
//! 64 MiB blobs over plain HTTP, the ratios against nginx (`sendfile on`, `tcp_nopush
//! on`, 2 workers: the machine's limit for bytes from files) and against the reference
//! registry, and each server's CPU seconds per GiB served; then the same blobs over
//! HTTPS against nginx with TLS; then the peak memory of each registry while it serves a
//! 1 GiB blob to several clients at once.
//!
//! Run: `cargo bench --bench serve` (needs `docker-registry`, `nginx-light`, `wrk` and
//! `openssl`: `apt-get install docker-registry nginx-light wrk openssl`).
//! Knobs: `BENCH_SECS` (per measurement, default 5), `BENCH_CLIENTS` (connections,
//! default 16).

#[path = "../tests/kit/mod.rs"]
mod kit;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kit::oci::{self, push_blob_two_step};
use kit::upstream::ReferenceRegistry;
use kit::{bytes, Node, NodeOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPO: &str = "bench/app";
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// What one `wrk` run measured.
struct Run {
    rps: f64,
    /// CPU seconds the server spent per GiB it served.
    cpu_per_gib: f64,
}

/// CPU seconds (user + system) of `pid` and its children so far.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = |p: &str| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) are space-separated;
        // utime and stime are the 14th and 15th of the line.
        let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split(' ').collect();
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let parent = |p: &str| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
    };
    let mut total = ticks(&pid.to_string());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.bytes().all(|b| b.is_ascii_digit()) && parent(&name) == Some(pid) {
            total += ticks(&name);
        }
    }
    // /proc counts in USER_HZ, 100 per second on Linux.
    total as f64 / 100.0
}

/// `wrk` against `url` for `secs` with `clients` connections; the server's CPU is read
/// from `pid` (and its children) around the run.
fn wrk(wrk: &Path, url: &str, clients: usize, secs: u64, pid: u32) -> Run {
    let before = cpu_seconds(pid);
    let out = Command::new(wrk)
        .args(["-t2", &format!("-c{clients}"), &format!("-d{secs}s")])
        .args(["-H", &format!("Accept: {ACCEPT}")])
        .arg(url)
        .output()
        .expect("run wrk");
    let cpu = cpu_seconds(pid) - before;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk {url}: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "{url} answered errors under load: {text}"
    );
    let field = |name: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
    };
    let rps: f64 = field("Requests/sec:").unwrap().parse().unwrap();
    let total = field("Transfer/sec:").map(per_second).unwrap_or(0.0) * secs as f64;
    Run {
        rps,
        cpu_per_gib: cpu / (total / (1u64 << 30) as f64).max(1e-9),
    }
}

/// `4.34GB` and the like, as wrk prints sizes (binary units), in bytes.
fn per_second(v: &str) -> f64 {
    let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = n.parse().unwrap_or(0.0);
    n * match unit {
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    }
}

/// Debian's nginx serving `root` on `plain` and, with TLS, on `tls`.
struct Nginx {
    master: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(
        bin: &Path,
        root: &Path,
        plain: SocketAddr,
        tls: SocketAddr,
        pair: &kit::tls::Pair,
    ) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{ listen {plain}; root {root}; }}\n\
               server {{ listen {tls} ssl; ssl_certificate {cert}; ssl_certificate_key {key}; root {root}; }}\n}}\n",
            d = dir.path().display(),
            root = root.display(),
            cert = pair.cert.display(),
            key = pair.key.display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let master = Command::new(bin)
            .args(["-c", &dir.path().join("nginx.conf").display().to_string()])
            .args(["-p", &dir.path().display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(plain).is_err()
            || std::net::TcpStream::connect(tls).is_err()
        {
            assert!(Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { master, _dir: dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then itself (SIGKILL would leave the
        // workers running).
        let stopped = Command::new("kill")
            .args(["-TERM", &self.master.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.master.kill();
        }
        let _ = self.master.wait();
    }
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Peak RSS of `pid` while `clients` clients each GET `path` once, and the time it took.
async fn peak_memory(addr: SocketAddr, pid: u32, path: &str, clients: usize) -> (u64, f64) {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = rss(pid);
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let start = Instant::now();
    let gets: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_owned();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let req = hyper::Request::get(path.as_str())
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let mut body = sender.send_request(req).await.unwrap().into_body();
                while let Some(f) = body.frame().await {
                    f.unwrap();
                }
            })
        })
        .collect();
    for g in gets {
        g.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    (sampler.await.unwrap(), secs)
}

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tools: Option<Vec<_>> = ["docker-registry", "nginx", "wrk", "openssl"]
        .iter()
        .map(|t| kit::tools::require(t))
        .collect();
    let Some(tools) = tools else {
        return;
    };
    let (reference, nginx_bin, wrk_bin) = (&tools[0], &tools[1], &tools[2]);
    let secs: u64 = env_or("BENCH_SECS", 5);
    let clients: usize = env_or("BENCH_CLIENTS", 16);

    let mut node = Node::start(NodeOptions::push());
    let upstream = ReferenceRegistry::start(reference);
    let auth = oci::auth();
    let small = bytes(1, 1 << 20);
    let large = bytes(2, 64 << 20);
    let huge = bytes(3, 1 << 30);
    let image = oci::image(4, &[1 << 20], "amd64");
    eprintln!("loading the same content into the registries and nginx's directory...");
    for (addr, a) in [(node.addr, Some(auth.as_str())), (upstream.addr, None)] {
        for data in [&small, &large, &huge] {
            assert_eq!(push_blob_two_step(addr, REPO, data, a).status, 201);
        }
        for b in image.blobs() {
            assert_eq!(push_blob_two_step(addr, REPO, &b.data, a).status, 201);
        }
        let headers: Vec<(&str, &str)> = a
            .map(|a| ("Authorization", a))
            .into_iter()
            .chain([("Content-Type", oci::OCI_MANIFEST)])
            .collect();
        let r = kit::request(
            addr,
            "PUT",
            &format!("/v2/{REPO}/manifests/v1"),
            &headers,
            &image.manifest,
        );
        assert_eq!(r.status, 201);
    }
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("small"), &small).unwrap();
    std::fs::write(www.path().join("large"), &large).unwrap();
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = kit::tls::Certs::generate(certs_dir.path()).expect("openssl");
    let (nginx_plain, nginx_tls) = (kit::node::free_addr(), kit::node::free_addr());
    let nginx = Nginx::start(nginx_bin, www.path(), nginx_plain, nginx_tls, &certs.node);
    let nginx_pid = nginx.master.id();
    drop(huge);

    let blob = |d: &[u8]| format!("/v2/{REPO}/blobs/{}", kit::digest(d));
    let cases = [
        ("blob 1 MiB", blob(&small), "small"),
        ("blob 64 MiB", blob(&large), "large"),
    ];
    // Warm-up: every file in the page cache, and each copy's first read after its
    // write done (see verify_reads).
    for (_, path, file) in &cases {
        wrk(
            wrk_bin,
            &format!("http://{}{path}", node.addr),
            2,
            1,
            node.pid(),
        );
        wrk(
            wrk_bin,
            &format!("http://{}{path}", upstream.addr),
            2,
            1,
            upstream.pid(),
        );
        wrk(
            wrk_bin,
            &format!("http://{nginx_plain}/{file}"),
            2,
            1,
            nginx_pid,
        );
    }

    println!("\nGET over plain HTTP, {clients} keep-alive connections, wrk -t2, {secs} s per cell, loopback\n");
    println!("| request | site-agent req/s | nginx req/s | docker-registry req/s | vs nginx | vs docker-registry | CPU s/GiB site-agent | nginx | docker-registry |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let manifest = format!("/v2/{REPO}/manifests/v1");
    let ours = wrk(
        wrk_bin,
        &format!("http://{}{manifest}", node.addr),
        clients,
        secs,
        node.pid(),
    );
    let theirs = wrk(
        wrk_bin,
        &format!("http://{}{manifest}", upstream.addr),
        clients,
        secs,
        upstream.pid(),
    );
    println!(
        "| manifest (by tag) | {:.0} | - | {:.0} | - | {:.2}x | - | - | - |",
        ours.rps,
        theirs.rps,
        ours.rps / theirs.rps
    );
    for (what, path, file) in &cases {
        let ours = wrk(
            wrk_bin,
            &format!("http://{}{path}", node.addr),
            clients,
            secs,
            node.pid(),
        );
        let limit = wrk(
            wrk_bin,
            &format!("http://{nginx_plain}/{file}"),
            clients,
            secs,
            nginx_pid,
        );
        let theirs = wrk(
            wrk_bin,
            &format!("http://{}{path}", upstream.addr),
            clients,
            secs,
            upstream.pid(),
        );
        println!(
            "| {what} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.2}x | {:.2} | {:.2} | {:.2} |",
            ours.rps,
            limit.rps,
            theirs.rps,
            ours.rps / limit.rps,
            ours.rps / theirs.rps,
            ours.cpu_per_gib,
            limit.cpu_per_gib,
            theirs.cpu_per_gib
        );
    }

    // The same node over HTTPS: its bytes are read and encrypted (no sendfile).
    node.terminate();
    let config = node.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}\n[registry.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            certs.node.cert.display(),
            certs.node.key.display()
        ),
    )
    .unwrap();
    node.restart();
    for (_, path, _) in &cases {
        wrk(
            wrk_bin,
            &format!("https://{}{path}", node.addr),
            2,
            1,
            node.pid(),
        );
    }
    println!("\nGET over HTTPS, {clients} connections, {secs} s per cell\n");
    println!("| request | site-agent req/s | nginx (TLS) req/s | vs nginx | CPU s/GiB site-agent | nginx |");
    println!("|---|---|---|---|---|---|");
    for (what, path, file) in &cases {
        let ours = wrk(
            wrk_bin,
            &format!("https://{}{path}", node.addr),
            clients,
            secs,
            node.pid(),
        );
        let limit = wrk(
            wrk_bin,
            &format!("https://{nginx_tls}/{file}"),
            clients,
            secs,
            nginx_pid,
        );
        println!(
            "| {what} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} |",
            ours.rps,
            limit.rps,
            ours.rps / limit.rps,
            ours.cpu_per_gib,
            limit.cpu_per_gib
        );
    }
    drop(nginx);

    // Memory, back on plain HTTP.
    node.terminate();
    std::fs::write(&config, text).unwrap();
    node.restart();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let huge_path = format!("/v2/{REPO}/blobs/{}", kit::digest(&bytes(3, 1 << 30)));
    let readers = 4;
    let (ours, ours_secs) = rt.block_on(peak_memory(node.addr, node.pid(), &huge_path, readers));
    let (theirs, theirs_secs) = rt.block_on(peak_memory(
        upstream.addr,
        upstream.pid(),
        &huge_path,
        readers,
    ));
    println!("\nPeak resident memory while serving a 1 GiB blob to {readers} clients at once (the node's first read after a start: hashed)\n");
    println!("| server | peak RSS | time for {readers} x 1 GiB | aggregate MB/s |");
    println!("|---|---|---|---|");
    for (who, peak, s) in [
        ("site-agent", ours, ours_secs),
        ("docker-registry", theirs, theirs_secs),
    ] {
        println!(
            "| {who} | {:.1} MiB | {s:.2} s | {:.0} |",
            peak as f64 / (1 << 20) as f64,
            readers as f64 * (1u64 << 30) as f64 / s / 1e6
        );
    }
}
