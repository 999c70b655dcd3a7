//! The OCI distribution-spec conformance suite itself (`../shared/tools/oci-conformance`:
//! the release v1.1.1 and the development suite with every API and data option on)
//! against a node with push and the pull-through cache both on, its upstream a real
//! `docker-registry`: what a repository deleted is gone from it, whatever the site holds
//! for other repositories, and misses the upstream cannot fill are the spec's 404s.

mod kit;

use kit::node::USER;
use kit::tools::require;
use kit::upstream::ReferenceRegistry;
use kit::{Node, NodeOptions};
use std::path::PathBuf;
use std::process::Command;

/// The suite's binary `name`, or `None` (skip) when the tools are not beside the
/// checkout; under `CI=true` a missing suite fails the test.
fn suite(name: &str) -> Option<PathBuf> {
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

/// A node with push (user [`USER`]) and `[pull] policy = "IfNotPresent"` from a fresh
/// docker-registry, the registry of names without a host.
fn pushing_and_pulling() -> Option<(ReferenceRegistry, Node)> {
    let binary = require("docker-registry")?;
    let upstream = ReferenceRegistry::start(&binary);
    let node = Node::start(NodeOptions {
        push: true,
        ..NodeOptions::pulling(upstream.addr, "IfNotPresent", "")
    });
    Some((upstream, node))
}

/// What a suite printed, with its exit status.
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

#[test]
fn the_release_suite_passes_with_push_and_pull_through_on() {
    let Some(binary) = suite("conformance-v1.1.1.test") else {
        return;
    };
    let Some((_upstream, node)) = pushing_and_pulling() else {
        return;
    };
    let report = tempfile::tempdir().unwrap();
    let (ok, out) = ran(Command::new(&binary)
        .current_dir(report.path())
        .env("OCI_ROOT_URL", format!("http://{}", node.addr))
        .env("OCI_NAMESPACE", "conformance/a")
        .env("OCI_CROSSMOUNT_NAMESPACE", "conformance/b")
        .env("OCI_USERNAME", USER)
        .env("OCI_PASSWORD", kit::node::PASSWORD)
        .env("OCI_TEST_PULL", "1")
        .env("OCI_TEST_PUSH", "1")
        .env("OCI_TEST_CONTENT_DISCOVERY", "1")
        .env("OCI_TEST_CONTENT_MANAGEMENT", "1")
        .env("OCI_HIDE_SKIPPED_WORKFLOWS", "0")
        .env("OCI_REPORT_DIR", report.path()));
    assert!(ok && out.contains(" 0 Failed"), "the suite failed:\n{out}");
    assert!(out.contains("74 Passed"), "not every test ran:\n{out}");
}

#[test]
fn the_development_suite_passes_with_push_and_pull_through_on() {
    let Some(binary) = suite("conformance-head") else {
        return;
    };
    let Some((_upstream, node)) = pushing_and_pulling() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let options = [
        "apis:\n  pull: true\n  push: true\n  blobs:\n    atomic: true\n    delete: true\n    digestHeader: true\n    mountAnonymous: true\n    uploadCancel: true\n",
        "  manifests:\n    atomic: true\n    delete: true\n    digestHeader: true\n    tagParam: true\n",
        "  tags:\n    atomic: true\n    delete: true\n    list: true\n  referrer: true\n",
        "data:\n  image: true\n  index: true\n  indexList: true\n  sparse: false\n  artifact: true\n  subject: true\n  subjectMissing: true\n  artifactList: true\n  subjectList: true\n  dataField: true\n  nondistributable: true\n  customFields: true\n  noLayers: true\n  emptyBlob: true\n  sha512: true\n",
    ];
    let config = format!(
        "registry: {}\ntls: disabled\nrepo1: conformance/h1\nrepo2: conformance/h2\nusername: {USER}\npassword: {}\nresultsDir: ./results\n{}",
        node.addr,
        kit::node::PASSWORD,
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
                let l = l.trim();
                l.strip_prefix(what)?
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
}
