//! `towerd migrate --from DATA_DIR --to postgres://...`: every record of one store
//! written into another (sites, manifests, API tokens, rollouts with their sites'
//! progress). The target is checked empty first, so a move is never merged into another
//! tower's state; the source is only read.

use super::{Store, StoreError, Written};

/// What a move copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Sites.
    pub sites: usize,
    /// Rollouts.
    pub rollouts: usize,
    /// Manifests.
    pub manifests: usize,
    /// API tokens.
    pub tokens: usize,
}

/// Copies every record of `from` into `to`, which must hold none.
pub async fn copy_all(from: &dyn Store, to: &dyn Store) -> Result<Copied, StoreError> {
    let held = to.count_sites().await? as usize
        + to.rollouts().await?.len()
        + to.manifest_digests().await?.len()
        + to.tokens().await?.len();
    if held > 0 {
        return Err(StoreError(
            "the target already holds a tower's records: a move goes into an empty database".into(),
        ));
    }
    let mut copied = Copied::default();
    for site in from.sites().await? {
        match to.insert_site(&site).await? {
            Written::Done => copied.sites += 1,
            other => {
                return Err(StoreError(format!(
                    "site {} cannot be written: {other:?}",
                    site.id
                )))
            }
        }
    }
    for digest in from.manifest_digests().await? {
        if let Some(body) = from.manifest(&digest).await? {
            to.put_manifest(&digest, &body).await?;
            copied.manifests += 1;
        }
    }
    for t in from.tokens().await? {
        to.put_token(&t.name, &t.role, &t.hash).await?;
        copied.tokens += 1;
    }
    for rollout in from.rollouts().await? {
        to.put_rollout(&rollout).await?;
        copied.rollouts += 1;
    }
    Ok(copied)
}
