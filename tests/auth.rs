//! Real users on the registry: an htpasswd file of bcrypt entries written by Apache's
//! `htpasswd -B`, read again when it changes; pulls restricted to users with
//! `read = "authenticated"`; failed logins logged without the password and slowed down.

mod kit;

use kit::http::basic;
use kit::oci::{self, OCI_MANIFEST};
use kit::tools::{require, run};
use kit::{request, Node, NodeOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ALICE: &str = "alice";
const ALICE_PW: &str = "correct-horse-battery";

/// An htpasswd file with alice, made by `htpasswd -B`; `None` outside CI when htpasswd or
/// skopeo is missing.
fn htpasswd(dir: &Path) -> Option<PathBuf> {
    require("htpasswd")?;
    require("skopeo")?;
    let file = dir.join("htpasswd");
    run(Command::new("htpasswd")
        .args(["-cbB"])
        .arg(&file)
        .args([ALICE, ALICE_PW]));
    Some(file)
}

fn node_with(file: &Path, more: &str) -> Node {
    Node::start(NodeOptions {
        extra: Some(format!(
            "[registry.push]\nenabled = true\n[registry.auth]\nhtpasswd = \"{}\"\n{more}\n",
            file.display()
        )),
        ..NodeOptions::default()
    })
}

/// Pushes a small image as `team/app:v1` with skopeo as `creds`; whether it worked.
fn skopeo_push(node: &Node, work: &Path, creds: &str) -> bool {
    let image = oci::image(21, &[2048, 64 * 1024], "amd64");
    let src = work.join("src");
    oci::write_layout(
        &src,
        &[&image],
        None,
        &[("v1", &image.manifest, OCI_MANIFEST)],
    );
    Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
        ])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("docker://{}/team/app:v1", node.addr))
        .output()
        .unwrap()
        .status
        .success()
}

fn start_upload(node: &Node, user: &str, password: &str) -> kit::http::Response {
    let auth = basic(user, password);
    request(
        node.addr,
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[("Authorization", &auth)],
        b"",
    )
}

#[test]
fn an_htpasswd_user_pushes_and_a_wrong_password_is_refused_and_logged_without_it() {
    let work = tempfile::tempdir().unwrap();
    let Some(file) = htpasswd(work.path()) else {
        return;
    };
    let node = node_with(&file, "");
    assert!(skopeo_push(
        &node,
        work.path(),
        &format!("{ALICE}:{ALICE_PW}")
    ));

    let wrong = "wrong-pw-7f3a9";
    let r = start_upload(&node, ALICE, wrong);
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "UNAUTHORIZED");
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
    node.wait_log_line(&["login failed", ALICE]);
    assert!(!node.log().contains(wrong), "the password was logged");
    assert!(!skopeo_push(
        &node,
        work.path(),
        &format!("{ALICE}:{wrong}")
    ));

    // A user added to the file can push once the node has read it again.
    run(Command::new("htpasswd")
        .args(["-bB"])
        .arg(&file)
        .args(["bob", "bobs-own-password"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while start_upload(&node, "bob", "bobs-own-password").status != 202 {
        assert!(Instant::now() < deadline, "bob never accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Metrics count the failures.
    let metrics = String::from_utf8(request(node.addr, "GET", "/metrics", &[], b"").body).unwrap();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("site_login_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 2, "{metrics}");
}

#[test]
fn authenticated_reads_refuse_anonymous_pulls_with_a_basic_challenge() {
    let work = tempfile::tempdir().unwrap();
    let Some(file) = htpasswd(work.path()) else {
        return;
    };
    let node = node_with(&file, "read = \"authenticated\"");
    assert!(skopeo_push(
        &node,
        work.path(),
        &format!("{ALICE}:{ALICE_PW}")
    ));

    for path in [
        "/v2/",
        "/v2/team/app/manifests/v1",
        "/v2/team/app/tags/list",
    ] {
        let r = request(node.addr, "GET", path, &[], b"");
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="site-registry""#),
            "{path}"
        );
    }
    let auth = basic(ALICE, ALICE_PW);
    let r = request(
        node.addr,
        "GET",
        "/v2/team/app/tags/list",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(request(node.addr, "GET", "/healthz", &[], b"").status, 200);

    let pull = |creds: Option<&str>, out: &Path| {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--src-tls-verify=false"]);
        match creds {
            Some(c) => cmd.args(["--src-creds", c]),
            None => cmd.arg("--src-no-creds"),
        };
        cmd.arg(format!("docker://{}/team/app:v1", node.addr))
            .arg(format!("oci:{}:pulled", out.display()))
            .output()
            .unwrap()
    };
    let anonymous = pull(None, &work.path().join("anon"));
    assert!(!anonymous.status.success());
    let said = String::from_utf8_lossy(&anonymous.stderr).to_lowercase();
    assert!(
        said.contains("unauthorized") || said.contains("authentication"),
        "{said}"
    );
    let out = work.path().join("out");
    let authed = pull(Some(&format!("{ALICE}:{ALICE_PW}")), &out);
    assert!(
        authed.status.success(),
        "{}",
        String::from_utf8_lossy(&authed.stderr)
    );
    assert!(!oci::verified_blobs(&out).is_empty());
}

#[test]
fn repeated_failures_from_one_address_are_slowed_down() {
    let work = tempfile::tempdir().unwrap();
    let Some(file) = htpasswd(work.path()) else {
        return;
    };
    let node = node_with(&file, "");
    for _ in 0..5 {
        assert_eq!(start_upload(&node, ALICE, "guess").status, 401);
    }
    // The sixth answer is held back (half a second, doubling with each further failure).
    let t = Instant::now();
    assert_eq!(start_upload(&node, ALICE, "guess").status, 401);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert_eq!(start_upload(&node, ALICE, "guess").status, 401);
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    node.wait_log_line(&["login failed", "\"failures_in_a_row\":7"]);
    // The right password still gets in, and the address starts afresh.
    assert_eq!(start_upload(&node, ALICE, ALICE_PW).status, 202);
    assert_eq!(start_upload(&node, ALICE, "guess").status, 401);
    let ones = |log: &str| {
        log.lines()
            .filter(|l| l.contains("login failed") && l.contains("\"failures_in_a_row\":1,"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while ones(&node.log()) < 2 {
        assert!(Instant::now() < deadline, "{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn plain_text_users_still_push_with_a_deprecation_warning() {
    let node = Node::start(NodeOptions::push());
    node.wait_log("deprecated");
    let r = start_upload(&node, kit::node::USER, kit::node::PASSWORD);
    assert_eq!(r.status, 202);
}
