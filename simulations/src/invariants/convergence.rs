//! Nodes that can talk converge: once the faults stop, every node of the site applies
//! the same state and holds a good copy of every blob it records.

use crate::node::Node;
use crate::oracle::Oracle;
use site_core::Digest;

/// Why the nodes have not converged yet (`None`: they have).
pub fn pending(nodes: &[&Node]) -> Option<String> {
    use raft::Storage;
    let Some(first) = nodes.first().and_then(|n| n.run.as_ref()) else {
        return Some("no node is up".into());
    };
    // One leader that every node follows, whose whole log is committed.
    let Some(leader) = nodes
        .iter()
        .filter_map(|n| n.run.as_ref())
        .find(|r| r.driver.engine().is_leader())
    else {
        return Some("no leader".into());
    };
    let commit = leader.driver.engine().status().commit;
    let last = leader.driver.engine().storage().last_index().unwrap_or(0);
    if last != commit {
        return Some(format!("the leader has committed {commit} of {last}"));
    }
    for n in nodes {
        let Some(run) = &n.run else {
            return Some(format!("node {} is down", n.id));
        };
        let status = run.driver.engine().status();
        if status.leader != leader.driver.engine().status().leader {
            return Some(format!("node {} follows another leader", n.id));
        }
        if status.applied < commit {
            return Some(format!(
                "node {} applied {} of {commit}",
                n.id, status.applied
            ));
        }
        if run.state.read(|a| first.state.read(|b| a != b)) {
            return Some(format!(
                "node {} holds another state than node {}",
                n.id, nodes[0].id
            ));
        }
        let blobs: Vec<Digest> = run
            .state
            .read(|s| s.blobs().map(|(d, _)| d.clone()).collect());
        for d in blobs {
            match n.disk.blobs.get(&d) {
                Some(b) if Digest::of(&b) == d => {}
                Some(_) => return Some(format!("node {} holds a bad copy of {d}", n.id)),
                None => return Some(format!("node {} lacks blob {d}", n.id)),
            }
        }
    }
    None
}

/// At the end: every acknowledged blob the state still records has its bytes on some
/// node, and every acknowledged entry was applied.
pub fn final_check(nodes: &[&Node], oracle: &Oracle) -> Vec<String> {
    let mut out = Vec::new();
    let Some(run) = nodes
        .iter()
        .filter_map(|n| n.run.as_ref())
        .max_by_key(|r| r.driver.engine().status().applied)
    else {
        return out;
    };
    let applied = run.driver.engine().status().applied;
    for (index, fp) in &oracle.acked {
        if *index > applied {
            out.push(format!(
                "acknowledged entry {fp:x} at index {index} is past the site's applied index {applied}"
            ));
        }
    }
    for (d, bytes) in &oracle.blobs {
        if run.state.read(|s| s.blob(d).is_some())
            && !nodes
                .iter()
                .any(|n| n.disk.blobs.get(d).as_ref() == Some(bytes))
        {
            out.push(format!("acknowledged blob {d} lost: no node holds it"));
        }
    }
    out
}
