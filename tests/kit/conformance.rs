//! The OCI distribution-spec conformance suite (`../shared/tools/oci-conformance`: the
//! release v1.1.1 and the development suite) run against a registry with push on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

/// The suite's binary `name`, or `None` (skip) when the tools are not beside the
/// checkout; under `CI=true` a missing suite fails the test.
pub fn suite(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/tools/oci-conformance")
        .join(name);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{} is required under CI=true", path.display());
    }
    eprintln!("skipping: no {}", path.display());
    None
}

/// Runs the release suite (every workflow) against the registry at `addr` as
/// `user`/`password`; panics with its output unless it passed with 0 failed and every
/// one of its 74 tests ran. `None`: the suite is not here (outside CI).
pub fn release(addr: SocketAddr, user: &str, password: &str) -> Option<String> {
    let binary = suite("conformance-v1.1.1.test")?;
    let report = tempfile::tempdir().unwrap();
    let (ok, out) = ran(Command::new(&binary)
        .current_dir(report.path())
        .env("OCI_ROOT_URL", format!("http://{addr}"))
        .env("OCI_NAMESPACE", "conformance/a")
        .env("OCI_CROSSMOUNT_NAMESPACE", "conformance/b")
        .env("OCI_USERNAME", user)
        .env("OCI_PASSWORD", password)
        .env("OCI_TEST_PULL", "1")
        .env("OCI_TEST_PUSH", "1")
        .env("OCI_TEST_CONTENT_DISCOVERY", "1")
        .env("OCI_TEST_CONTENT_MANAGEMENT", "1")
        .env("OCI_HIDE_SKIPPED_WORKFLOWS", "0")
        .env("OCI_REPORT_DIR", report.path()));
    assert!(ok && out.contains(" 0 Failed"), "the suite failed:\n{out}");
    assert!(out.contains("74 Passed"), "not every test ran:\n{out}");
    summary("v1.1.1", &out, &["Passed"]);
    Some(out)
}

/// Runs the development suite with every API and data option on (sha512 included,
/// sparse manifests off) against the registry at `addr`; panics with its output unless
/// 0 failed and more than 900 passed. `None`: the suite is not here (outside CI).
pub fn development(addr: SocketAddr, user: &str, password: &str) -> Option<String> {
    let binary = suite("conformance-head")?;
    let dir = tempfile::tempdir().unwrap();
    let options = [
        "apis:\n  pull: true\n  push: true\n  blobs:\n    atomic: true\n    delete: true\n    digestHeader: true\n    mountAnonymous: true\n    uploadCancel: true\n",
        "  manifests:\n    atomic: true\n    delete: true\n    digestHeader: true\n    tagParam: true\n",
        "  tags:\n    atomic: true\n    delete: true\n    list: true\n  referrer: true\n",
        "data:\n  image: true\n  index: true\n  indexList: true\n  sparse: false\n  artifact: true\n  subject: true\n  subjectMissing: true\n  artifactList: true\n  subjectList: true\n  dataField: true\n  nondistributable: true\n  customFields: true\n  noLayers: true\n  emptyBlob: true\n  sha512: true\n",
    ];
    let config = format!(
        "registry: {addr}\ntls: disabled\nrepo1: conformance/h1\nrepo2: conformance/h2\nusername: {user}\npassword: {password}\nresultsDir: ./results\n{}",
        options.concat()
    );
    std::fs::write(dir.path().join("conf.yaml"), config).unwrap();
    let (_, out) = ran(Command::new(&binary)
        .current_dir(dir.path())
        .env("OCI_CONFIGURATION", "conf.yaml"));
    // It exits 0 even when it cannot read its configuration: the results must exist.
    let results = std::fs::read_to_string(dir.path().join("results/results.yaml"))
        .unwrap_or_else(|e| panic!("no results ({e}):\n{out}"));
    let count = |what: &str| -> u64 {
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(what)?
                    .trim_start_matches('.')
                    .trim_start_matches(':')
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {what} count in:\n{out}"))
    };
    assert_eq!(count("FAIL"), 0, "failed tests:\n{out}\n{results}");
    assert!(count("Pass") > 900, "too few tests ran:\n{out}");
    summary("development", &out, &["Pass", "FAIL", "Skip", "Disabled"]);
    Some(out)
}

/// Prints the lines of `out` that begin with one of `starts` (the suite's counts), for the
/// test's output under `--nocapture`.
fn summary(suite: &str, out: &str, starts: &[&str]) {
    for line in out.lines().map(str::trim) {
        if starts
            .iter()
            .any(|s| line.starts_with(s) || line.contains(&format!(" {s} |")))
        {
            eprintln!("conformance {suite}: {line}");
        }
    }
}

/// What a suite printed (colours removed), with its exit status.
fn ran(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), plain(&text))
}

/// `text` without its terminal colours (ANSI escape sequences).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters, up to the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
