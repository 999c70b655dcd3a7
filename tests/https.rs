//! HTTPS on the registry listener (`[registry.tls]`): real clients (skopeo, containerd)
//! push and pull trusting a CA made by openssl here, a client certificate is required
//! when `client_ca` is set, a certificate replaced on disk is served to the next
//! connection while open ones go on, and plain HTTP on the port is refused.

mod kit;

use kit::containerd::Containerd;
use kit::https::{client, der_of, Conn};
use kit::node::{PASSWORD, USER};
use kit::oci::{self, Image, OCI_MANIFEST};
use kit::tls::{Certs, Pair};
use kit::tools::require;
use kit::{request, Node, NodeOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Certificates made by openssl in a temporary directory; `None` outside CI when openssl
/// or skopeo is missing.
fn setup() -> Option<(tempfile::TempDir, Certs)> {
    require("skopeo")?;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path())?;
    Some((dir, certs))
}

/// A node with push on, serving `server` over HTTPS; `more` adds `[registry.tls]` lines.
fn https_node(server: &Pair, more: &str) -> Node {
    Node::start(NodeOptions {
        push: true,
        extra: Some(format!(
            "[registry.tls]\ncert = \"{}\"\nkey = \"{}\"\n{more}\n",
            server.cert.display(),
            server.key.display()
        )),
        ..NodeOptions::default()
    })
}

/// A containers/image (Docker, Podman, skopeo) certificate directory for `node`:
/// `ca.crt`, and `client.cert` / `client.key` when given.
fn cert_dir(work: &Path, node: &Node, ca: &Path, client: Option<&Pair>) -> PathBuf {
    let dir = work
        .join(format!("certs.d-{}", client.is_some()))
        .join(node.addr.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(ca, dir.join("ca.crt")).unwrap();
    if let Some(p) = client {
        std::fs::copy(&p.cert, dir.join("client.cert")).unwrap();
        std::fs::copy(&p.key, dir.join("client.key")).unwrap();
    }
    dir
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pushes `image` as `team/app:v1` with skopeo over HTTPS, trusting `certs` (a
/// certificate directory).
fn push(node: &Node, work: &Path, image: &Image, certs: &Path) {
    let src = work.join("src");
    oci::write_layout(
        &src,
        &[image],
        None,
        &[("v1", &image.manifest, OCI_MANIFEST)],
    );
    ok(
        skopeo(&[
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-cert-dir",
            &certs.display().to_string(),
            "--dest-creds",
            &format!("{USER}:{PASSWORD}"),
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{}/team/app:v1", node.addr),
        ]),
        "skopeo push over HTTPS",
    );
}

/// The digest skopeo reads for `team/app:v1` over HTTPS with `certs`, or its error.
fn inspect(node: &Node, certs: Option<&Path>) -> Result<String, String> {
    let mut args = vec!["inspect".to_owned(), "--raw".into(), "--no-creds".into()];
    if let Some(c) = certs {
        args.extend(["--cert-dir".into(), c.display().to_string()]);
    }
    args.push(format!("docker://{}/team/app:v1", node.addr));
    let out = Command::new("skopeo").args(&args).output().unwrap();
    if out.status.success() {
        let raw = out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout);
        Ok(kit::digest(raw))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The README's containerd `hosts.toml`, for `node`, trusting `ca`, presenting `client`
/// if given: the snippet as written there, with only the host and paths replaced.
fn readme_hosts_dir(work: &Path, node: &Node, ca: &Path, client: Option<&Pair>) -> PathBuf {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let first = "# /etc/containerd/certs.d/site.example:5000/hosts.toml";
    let start = readme
        .find(first)
        .expect("README has the hosts.toml snippet");
    let end = start + readme[start..].find("```").unwrap();
    let mut snippet: String = readme[start..end]
        .lines()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    snippet = snippet
        .replace("site.example:5000", &node.addr.to_string())
        .replace("/etc/site-registry/site-ca.pem", &ca.display().to_string());
    if let Some(p) = client {
        snippet = snippet
            .replace("# client = ", "client = ")
            .replace(
                "/etc/site-registry/client.pem",
                &p.cert.display().to_string(),
            )
            .replace(
                "/etc/site-registry/client.key",
                &p.key.display().to_string(),
            );
    }
    let dir = work.join(format!("hosts-{}", client.is_some()));
    let host = dir.join(node.addr.to_string());
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hosts.toml"), snippet).unwrap();
    dir
}

/// containerd pulls `team/app:v1` from `node` with `hosts` and lists `image`.
fn containerd_pulls(runtime: &Containerd, node: &Node, hosts: &Path, image: &Image) {
    let reference = format!("{}/team/app:v1", node.addr);
    let out = runtime.ctr(&[
        "images",
        "pull",
        "--hosts-dir",
        &hosts.display().to_string(),
        &reference,
    ]);
    assert!(
        out.status.success(),
        "ctr pull over HTTPS: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        runtime.log()
    );
    let listed = runtime.ctr(&["images", "ls"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(&image.digest), "{listed}");
}

#[test]
fn skopeo_and_containerd_push_and_pull_over_https_trusting_the_sites_ca() {
    let Some((work, certs)) = setup() else { return };
    let node = https_node(&certs.node, "");
    let image = oci::image(11, &[1024, 200 * 1024], "amd64");
    let trust = cert_dir(work.path(), &node, &certs.ca, None);
    push(&node, work.path(), &image, &trust);

    assert_eq!(inspect(&node, Some(&trust)).unwrap(), image.digest);
    let out = work.path().join("out");
    ok(
        skopeo(&[
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-cert-dir",
            &trust.display().to_string(),
            "--src-no-creds",
            &format!("docker://{}/team/app:v1", node.addr),
            &format!("oci:{}:pulled", out.display()),
        ]),
        "skopeo pull over HTTPS",
    );
    assert_eq!(oci::pulled_root(&out), image.digest);
    oci::assert_pulled(&oci::verified_blobs(&out), &image);

    // A client that does not trust the CA refuses the registry.
    let refused = inspect(&node, None).unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");

    if let Some(runtime) = Containerd::start() {
        let hosts = readme_hosts_dir(work.path(), &node, &certs.ca, None);
        containerd_pulls(&runtime, &node, &hosts, &image);
    }

    // Plain HTTP on the HTTPS port: a 400 that says so, and a log line.
    let plain = request(node.addr, "GET", "/v2/", &[], b"");
    assert_eq!(plain.status, 400);
    assert!(String::from_utf8_lossy(&plain.body).contains("HTTPS"));
    node.wait_log("plain HTTP refused on the HTTPS registry listener");
}

#[test]
fn a_client_certificate_of_client_ca_is_required_when_it_is_set() {
    let Some((work, certs)) = setup() else { return };
    let node = https_node(
        &certs.node,
        &format!("client_ca = \"{}\"", certs.ca.display()),
    );
    let answer = |identity: Option<&Pair>| {
        Conn::open(node.addr, &client(&certs.ca, identity)).and_then(|mut c| c.get("/healthz"))
    };
    assert!(
        answer(None).is_err(),
        "served a client without a certificate"
    );
    assert!(
        answer(Some(&certs.stranger)).is_err(),
        "served a certificate of another CA"
    );
    assert_eq!(answer(Some(&certs.tower)).unwrap().status, 200);

    let image = oci::image(12, &[4096, 100 * 1024], "amd64");
    let with_cert = cert_dir(work.path(), &node, &certs.ca, Some(&certs.tower));
    push(&node, work.path(), &image, &with_cert);
    assert_eq!(inspect(&node, Some(&with_cert)).unwrap(), image.digest);
    let without = cert_dir(work.path(), &node, &certs.ca, None);
    assert!(inspect(&node, Some(&without)).is_err());

    if let Some(runtime) = Containerd::start() {
        let hosts = readme_hosts_dir(work.path(), &node, &certs.ca, Some(&certs.tower));
        containerd_pulls(&runtime, &node, &hosts, &image);
    }
}

/// Writes `from`'s certificate and key over `to`'s files, each by a rename (the key
/// first, as a renewal script would).
fn replace(from: &Pair, to: &Pair) {
    for (src, dst) in [(&from.key, &to.key), (&from.cert, &to.cert)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }
}

/// Waits (bounded, 20 s) until a new connection is served `cert`.
fn served_to_new_connections(node: &Node, certs: &Certs, cert: &Path) {
    let want = der_of(cert);
    let config = client(&certs.ca, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Between the two renames the files do not match, and no connection opens.
        if let Ok(conn) = Conn::open(node.addr, &config) {
            if conn.server_cert() == want {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} not served within 20 s; log:\n{}",
            cert.display(),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A copy of the node certificate the registry serves from, to be replaced.
fn serving_copy(work: &Path, certs: &Certs) -> Pair {
    let serving = Pair {
        cert: work.join("serving.pem"),
        key: work.join("serving.key"),
    };
    std::fs::copy(&certs.node.cert, &serving.cert).unwrap();
    std::fs::copy(&certs.node.key, &serving.key).unwrap();
    serving
}

#[test]
fn a_certificate_replaced_on_disk_is_served_to_the_next_connection() {
    let Some((work, certs)) = setup() else { return };
    let serving = serving_copy(work.path(), &certs);
    let node = https_node(&serving, "reload_interval = \"200ms\"");
    let config = client(&certs.ca, None);
    let mut open = Conn::open(node.addr, &config).unwrap();
    assert_eq!(open.get("/healthz").unwrap().status, 200);
    assert_eq!(open.server_cert(), der_of(&certs.node.cert));

    let renewed = certs.renewed_server("renewed");
    replace(&renewed, &serving);
    served_to_new_connections(&node, &certs, &renewed.cert);
    node.wait_log("certificate reloaded");
    // The connection opened before goes on.
    assert_eq!(open.get("/healthz").unwrap().status, 200);

    // A change that does not load leaves the last good pair in use.
    std::fs::write(&serving.cert, "not a certificate\n").unwrap();
    node.wait_log_line(&["changed but does not load", "holds no certificate"]);
    let conn = Conn::open(node.addr, &config).unwrap();
    assert_eq!(conn.server_cert(), der_of(&renewed.cert));
}

#[test]
fn sighup_reloads_the_certificate_when_polling_is_off() {
    let Some((work, certs)) = setup() else { return };
    let serving = serving_copy(work.path(), &certs);
    let node = https_node(&serving, "reload_interval = \"0s\"");
    let renewed = certs.renewed_server("renewed");
    replace(&renewed, &serving);
    let conn = Conn::open(node.addr, &client(&certs.ca, None)).unwrap();
    assert_eq!(
        conn.server_cert(),
        der_of(&certs.node.cert),
        "reloaded without a SIGHUP"
    );
    let status = Command::new("kill")
        .args(["-HUP", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    node.wait_log("SIGHUP: registry certificates read again");
    served_to_new_connections(&node, &certs, &renewed.cert);
}

#[test]
fn an_unusable_certificate_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site-agent.toml");
    let key = dir.path().join("registry.key");
    std::fs::write(&key, "not a key\n").unwrap();
    for (cert, said) in [
        (dir.path().join("missing.pem"), "[registry.tls] cert"),
        (key.clone(), "holds no certificate"),
    ] {
        std::fs::write(
            &config,
            format!(
                "[node]\ndata_dir = \"{}\"\n[registry]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n[registry.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                dir.path().join("data").display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_site-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{stderr}");
    }
}

#[test]
fn idle_connections_from_one_address_do_not_keep_other_clients_out() {
    let Some((_work, certs)) = setup() else {
        return;
    };
    let node = https_node(&certs.node, "");
    let rt = kit::grpc::rt();
    // 300 connections that never speak, from another loopback address: more than the
    // listener's handshakes in progress.
    let idle: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..300 {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            idle.push(s.connect(node.addr).await.unwrap());
        }
        idle
    });
    // A client from elsewhere still gets its handshake and its answer...
    let started = Instant::now();
    let mut conn = Conn::open(node.addr, &client(&certs.ca, None)).unwrap();
    assert_eq!(conn.get("/healthz").unwrap().status, 200);
    let took = started.elapsed();
    // ...while the idle connections the listener holds still wait for their first byte
    // (3 s): it did not get in by waiting them out. Those over the listener's limits
    // were closed at once, not kept waiting in a queue.
    let idle: Vec<std::net::TcpStream> =
        rt.block_on(async { idle.into_iter().map(|s| s.into_std().unwrap()).collect() });
    let open = idle
        .iter()
        .filter(|s| {
            use std::io::Read;
            let mut s: &std::net::TcpStream = s;
            s.set_nonblocking(true).unwrap();
            matches!(s.read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    eprintln!(
        "answered {took:?} after the client connected; {open} of {} idle connections still held",
        idle.len()
    );
    assert!(
        open > 0,
        "every idle connection was let go before the client was answered ({took:?})"
    );
    assert!(
        open < idle.len(),
        "none of the idle connections was closed at once: they wait in a queue"
    );
}

/// Over HTTPS (hyper), a request refused before its body was read is answered with
/// `Connection: close` and the connection then closes, or the connection stays usable:
/// never dropped without a word once the client sends the rest.
#[test]
fn a_refusal_before_the_body_over_https_keeps_http_honest() {
    let Some((_dir, certs)) = setup() else { return };
    let node = https_node(&certs.node, "");
    let config = client(&certs.ca, None);
    let auth = kit::http::basic(USER, PASSWORD);
    let zero = "0".repeat(64);
    for (head, status) in [
        (
            format!("PUT /v2/t/app/blobs/uploads/x?digest=sha256:{zero} HTTP/1.1\r\n"),
            401,
        ),
        (
            format!("PATCH /v2/t/app/blobs/uploads/nosuch HTTP/1.1\r\nAuthorization: {auth}\r\n"),
            404,
        ),
        (
            format!("POST /v2/t/app/manifests/v1 HTTP/1.1\r\nAuthorization: {auth}\r\n"),
            405,
        ),
    ] {
        let mut c = Conn::open(node.addr, &config).unwrap();
        c.send(format!("{head}Host: site\r\nContent-Length: 1000\r\n\r\n").as_bytes())
            .unwrap();
        let first = c.answer().expect("an answer before the body");
        assert_eq!(first.status, status, "{head}");
        let _ = c.send(&[b'x'; 1000]);
        let _ = c.send(b"GET /healthz HTTP/1.1\r\nHost: site\r\n\r\n");
        if first
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            assert!(
                c.answer().is_err(),
                "{head}: announced close, then answered"
            );
        } else {
            let second = c.answer().unwrap_or_else(|e| {
                panic!("{head}: {status} without Connection: close, then: {e}")
            });
            assert_eq!(second.status, 200);
        }
    }
}
