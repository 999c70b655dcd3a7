//! Start-up reconciliation: after a crash, make the files agree with the state so that
//! nothing partial is ever served.
//!
//! - upload files without a session record, and records without a file, are removed;
//!   sessions idle past the upload TTL are dropped; partial tower uploads are kept (a
//!   delivery resumes from them; `Uploads::expire_uploads` drops them once idle too);
//! - a blob file the state does not hold was never acknowledged (installed just before
//!   a crash) or was deleted by a sweep that the crash interrupted: a node alone removes
//!   it; in a cluster it may be a copy held for a delivery not yet learned of, and is
//!   removed later if it stays unrecorded past the upload TTL;
//! - a blob the state holds without its whole file is fetched from a peer in a cluster
//!   (`replication.rs`); a node alone forgets it through the log (`ForgetBlobs`), which
//!   drops every manifest that needs it, so that no image is served incomplete.

use crate::{Node, Result};
use site_core::Digest;
use site_state::Command;
use std::collections::HashMap;

/// Makes `node`'s blob files agree with the (replayed) state. `alone`: the node is a
/// group of one, so a blob whose file is gone has no other copy and is forgotten; in a
/// cluster it stays (peers hold it).
pub(crate) async fn reconcile(node: &Node, alone: bool) -> Result<()> {
    reconcile_blobs(node, alone).await?;
    node.db.flush_async().await?;
    Ok(())
}

async fn reconcile_blobs(node: &Node, alone: bool) -> Result<()> {
    let on_disk: HashMap<Digest, u64> = node.files.scan()?.into_iter().collect();
    let (lost, stray) = node.state.read(|s| {
        let lost: Vec<Digest> = s
            .blobs()
            .filter(|(d, b)| on_disk.get(*d) != Some(&b.size))
            .map(|(d, _)| d.clone())
            .collect();
        let stray: Vec<Digest> = on_disk
            .keys()
            .filter(|d| s.blob(d).is_none())
            .cloned()
            .collect();
        (lost, stray)
    });
    // In a cluster, a file the state does not hold yet may be a copy this node was
    // asked to hold for a delivery whose entry it has not learned of: kept, and
    // removed once old if it is never recorded (`sweep.rs`: `Strays`).
    if alone {
        for d in &stray {
            tracing::info!(blob = %d, "removing blob file the state does not hold");
            node.files.remove(d)?;
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    for d in &lost {
        if alone {
            tracing::error!(blob = %d, "blob without its whole file: forgetting it and the images that need it");
        } else {
            tracing::warn!(blob = %d, "blob without its whole file: fetching it from a peer");
        }
        // A partly written file may be left under the digest's name.
        node.files.remove(d)?;
    }
    if alone {
        node.orderer
            .execute(Command::ForgetBlobs { digests: lost })
            .await?;
    } else {
        for d in &lost {
            if let Some(size) = node.state.read(|s| s.blob(d).map(|b| b.size)) {
                node.missing.note(d, size);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "reconcile_test.rs"]
mod tests;
