//! GC never deletes what a scheduled application or a pin references: a node removes
//! no file of a blob that its state still holds, nor of one a live image needs.

use crate::msg::Out;
use site_core::Digest;
use site_state::State;
use std::collections::BTreeSet;

/// Blobs the live images of `state` need.
pub fn live_blobs(state: &State) -> BTreeSet<Digest> {
    state
        .live_manifests()
        .iter()
        .filter_map(|m| state.manifest(m))
        .flat_map(|m| m.blobs.iter().cloned())
        .collect()
}

/// Node `node` is about to remove the files of `removed`, its state as applied now.
pub fn check_removal(node: u64, state: &State, removed: &[Digest], out: &mut Out) {
    let live = live_blobs(state);
    for d in removed {
        if live.contains(d) {
            out.violations.push(format!(
                "node {node}: a sweep removed blob {d}, which a scheduled or pinned image needs"
            ));
        } else if state.blob(d).is_some() {
            out.violations.push(format!(
                "node {node}: a sweep removed the file of blob {d}, which the site still holds"
            ));
        }
    }
}
