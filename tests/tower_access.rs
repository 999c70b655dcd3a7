//! Who may use the tower's API: bearer tokens made by `towerd token create` (a read token
//! lists but cannot change; no token, a wrong or a revoked one is refused), client
//! certificates of `--client-ca` with their role in the organisational unit, and a tower
//! that will not listen beyond loopback without users.

mod kit;

use kit::tools::{ok, towerctl, towerd_bin};
use kit::tower::{Backend, Towerd};
use serde_json::json;

/// An error answer's status and code, and its `WWW-Authenticate` header.
fn refusal(r: &kit::http::Response) -> (u16, String, Option<String>) {
    assert_eq!(r.header("content-type"), Some("application/json"));
    let code = r.json()["error"]["code"].as_str().unwrap_or("").to_owned();
    (
        r.status,
        code,
        r.header("www-authenticate").map(str::to_owned),
    )
}

fn tokens_decide_who_reads_and_who_writes(backend: Backend) {
    let Some(mut tower) = Towerd::start_on(backend, &[]) else {
        return;
    };
    // No token yet: the API on loopback is open, as before.
    assert_eq!(tower.call("GET", "/sites", None).status, 200);
    // The embedded store is the running tower's alone: tokens are made while it is
    // stopped (on PostgreSQL, while it runs).
    if backend == Backend::Embedded {
        let busy = tower.command(&["token", "create", "ops", "--role", "write"]);
        assert_eq!(busy.status.code(), Some(1));
        let why = String::from_utf8_lossy(&busy.stderr);
        assert!(why.contains("in use by a running towerd"), "{why}");
        assert!(tower.terminate().success());
    }
    let writer = tower.create_token("ops", "write");
    let reader = tower.create_token("dashboard", "read");
    assert!(writer.starts_with("twr_") && writer.len() == 68, "{writer}");
    let again = tower.command(&["token", "create", "ops", "--role", "read"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let bad_role = tower.command(&["token", "create", "x", "--role", "admin"]);
    assert_eq!(bad_role.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&tower.command(&["token", "list"]).stdout).into_owned();
    assert_eq!(listed, "dashboard\tread\nops\twrite\n");
    assert!(!listed.contains("twr_"), "the list shows no token");
    if backend == Backend::Embedded {
        tower.restart();
    }

    // Every request needs a user now.
    let site = json!({"name": "shop-1", "nodes": ["127.0.0.1:9"]});
    for (token, expected) in [(None, 401), (Some("twr_0000"), 401), (Some(""), 401)] {
        let r = tower.call_as(token, "GET", "/sites", None);
        let (status, code, challenge) = refusal(&r);
        assert_eq!(
            (status, code.as_str()),
            (expected, "UNAUTHORIZED"),
            "{token:?}"
        );
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"towerd\""));
    }
    // A read token reads (a query is a read) and changes nothing.
    assert_eq!(
        tower.call_as(Some(&reader), "GET", "/sites", None).status,
        200
    );
    let q = json!({"filter": {}});
    assert_eq!(
        tower
            .call_as(Some(&reader), "POST", "/sites/query", Some(&q))
            .status,
        200
    );
    for (method, path, body) in [
        ("POST", "/sites", Some(&site)),
        ("DELETE", "/rollouts/r-1", None),
        ("POST", "/rollouts", Some(&json!({}))),
    ] {
        let r = tower.call_as(Some(&reader), method, path, body);
        assert_eq!(
            (r.status, refusal(&r).1.as_str()),
            (403, "FORBIDDEN"),
            "{method} {path}"
        );
    }
    assert_eq!(
        tower.expect("GET", "/sites", None, 401)["error"]["code"],
        "UNAUTHORIZED"
    );
    // A write token changes.
    let r = tower.call_as(Some(&writer), "POST", "/sites", Some(&site));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // The status page's HTML holds no data: served to anyone; its script sends the token.
    let page = kit::request(tower.addr, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("Authorization"));

    // towerctl takes the token as --token or TOWERCTL_TOKEN.
    let url = format!("http://{}", tower.addr);
    let listed = ok(towerctl(&[
        "sites", "list", "--tower", &url, "--token", &reader,
    ]));
    assert!(listed.contains("shop-1"), "{listed}");
    let out = std::process::Command::new(kit::tools::towerctl_bin())
        .args(["sites", "list", "--json", "--tower", &url])
        .env("TOWERCTL_TOKEN", &reader)
        .output()
        .unwrap();
    assert!(out.status.success());
    let add = towerctl(&[
        "sites",
        "add",
        "shop-2",
        "--node",
        "127.0.0.1:9",
        "--tower",
        &url,
        "--token",
        &reader,
    ]);
    assert_eq!(add.status.code(), Some(11), "the tower refused it");
    assert!(String::from_utf8_lossy(&add.stderr).contains("FORBIDDEN"));
    let none = towerctl(&["sites", "list", "--tower", &url]);
    assert_eq!(none.status.code(), Some(11));
    assert!(String::from_utf8_lossy(&none.stderr).contains("UNAUTHORIZED"));

    // A revoked token is refused from then on (on PostgreSQL at once; the embedded store
    // is changed while the tower is stopped).
    if backend == Backend::Embedded {
        assert!(tower.terminate().success());
    }
    let revoked = tower.command(&["token", "revoke", "dashboard"]);
    assert!(revoked.status.success());
    if backend == Backend::Embedded {
        tower.restart();
    }
    let r = tower.call_as(Some(&reader), "GET", "/sites", None);
    assert_eq!(refusal(&r).0, 401);
    assert_eq!(
        tower.call_as(Some(&writer), "GET", "/sites", None).status,
        200
    );

    // Refusals are logged with the user, never with a token.
    let log = tower.log();
    assert!(log.contains("API request refused"), "{log}");
    assert!(log.contains("token dashboard"), "{log}");
    for secret in [&writer, &reader] {
        assert!(!log.contains(secret.as_str()), "a token in the log");
    }
}

#[test]
fn tokens_decide_who_reads_and_who_writes_on_the_embedded_store() {
    tokens_decide_who_reads_and_who_writes(Backend::Embedded);
}

#[test]
fn tokens_decide_who_reads_and_who_writes_on_postgresql() {
    tokens_decide_who_reads_and_who_writes(Backend::Postgres);
}

#[test]
fn a_tower_will_not_listen_beyond_loopback_without_users() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: the refusal comes first.
    let out = std::process::Command::new(towerd_bin())
        .arg("--data")
        .arg(dir.path())
        .args(["--listen", "192.0.2.1:7070"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing to listen on 192.0.2.1:7070, which is not loopback, with no user"),
        "{err}"
    );
    assert!(err.contains("towerd token create"), "{err}");
}

#[test]
fn client_certificates_of_the_ca_carry_their_role_in_their_unit() {
    use kit::https::{client, Conn};
    let work = tempfile::tempdir().unwrap();
    let Some(certs) = kit::tls::Certs::generate(work.path()) else {
        return;
    };
    let writer = certs.client_in_unit("ci-bot", "write");
    let reader = certs.client_in_unit("wallboard", "read");
    let tower = Towerd::start(&[
        "--tls-cert",
        certs.node.cert.to_str().unwrap(),
        "--tls-key",
        certs.node.key.to_str().unwrap(),
        "--client-ca",
        certs.ca.to_str().unwrap(),
    ]);
    let body = json!({"name": "vault-1", "nodes": ["127.0.0.1:9"]}).to_string();
    let post = format!(
        "POST /sites HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        tower.addr,
        body.len()
    );
    let as_who = |identity: Option<&kit::tls::Pair>| {
        Conn::open(tower.addr, &client(&certs.ca, identity)).expect("a handshake")
    };

    // The write unit writes and reads.
    let mut c = as_who(Some(&writer));
    c.send(post.as_bytes()).unwrap();
    let r = c.answer().unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(c.get("/sites").unwrap().status, 200);
    // The read unit reads only.
    let mut c = as_who(Some(&reader));
    assert_eq!(c.get("/sites").unwrap().status, 200);
    c.send(post.replace("vault-1", "vault-2").as_bytes())
        .unwrap();
    let r = c.answer().unwrap();
    assert_eq!((r.status, refusal(&r).1.as_str()), (403, "FORBIDDEN"));
    // A certificate of the CA without a unit has no role; none at all is no user.
    let mut c = as_who(Some(&certs.tower));
    assert_eq!(c.get("/sites").unwrap().status, 403);
    let mut c = as_who(None);
    let r = c.get("/sites").unwrap();
    assert_eq!((r.status, refusal(&r).1.as_str()), (401, "UNAUTHORIZED"));
    // Another CA's certificate does not get through the handshake.
    let stranger = Conn::open(tower.addr, &client(&certs.ca, Some(&certs.stranger)))
        .and_then(|mut c| c.get("/sites"));
    assert!(stranger.is_err(), "a stranger's certificate was let in");
    // Plain HTTP to the HTTPS listener is told to use HTTPS.
    let plain = kit::request(tower.addr, "GET", "/sites", &[], b"");
    assert_eq!(
        (plain.status, refusal(&plain).1.as_str()),
        (400, "BAD_REQUEST")
    );
    assert!(String::from_utf8_lossy(&plain.body).contains("https://"));
    let log = tower.log();
    assert!(log.contains("certificate wallboard"), "{log}");
}
