//! The OCI distribution-spec conformance suite itself (`../shared/tools/oci-conformance`:
//! the release v1.1.1 and the development suite with every API and data option on)
//! against a node with push and the pull-through cache both on, its upstream a real
//! `docker-registry`: what a repository deleted is gone from it, whatever the site holds
//! for other repositories, and misses the upstream cannot fill are the spec's 404s.

mod kit;

use kit::node::{PASSWORD, USER};
use kit::tools::require;
use kit::upstream::ReferenceRegistry;
use kit::{Node, NodeOptions};

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

#[test]
fn the_release_suite_passes_with_push_and_pull_through_on() {
    let Some((_upstream, node)) = pushing_and_pulling() else {
        return;
    };
    kit::conformance::release(node.addr, USER, PASSWORD);
}

#[test]
fn the_development_suite_passes_with_push_and_pull_through_on() {
    let Some((_upstream, node)) = pushing_and_pulling() else {
        return;
    };
    kit::conformance::development(node.addr, USER, PASSWORD);
}
