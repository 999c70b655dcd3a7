//! The tower's state behind one interface: the sites of the inventory, the rollouts, and
//! the manifests the rollouts deliver (exact bytes, by digest).
//!
//! [`SledStore`] keeps them in an embedded sled database in the data directory. A rollout
//! is a header and one record per site, so that a site's progress is written alone (a
//! rollout to 10,000 sites is not rewritten at each step of one of them). A highly
//! available tower would implement [`Store`] over a shared database (PostgreSQL: a table
//! per tree below, keyed by id, the record as `jsonb`; a unique index on the site name),
//! run several `towerd` against it, and let the one holding an advisory lock run the
//! rollouts while every one answers the API.
//!
//! Every write is durable when it returns (sled's flush fsyncs).

use serde::{de::DeserializeOwned, Serialize};
use site_fleet::{Rollout, Site, SiteProgress};
use sled::Transactional;
use std::path::Path;

/// A failure of the store itself: the API answers 500 and changes nothing.
#[derive(Debug, thiserror::Error)]
#[error("tower store: {0}")]
pub struct StoreError(pub String);

/// What the tower keeps.
pub trait Store: Send + Sync + 'static {
    /// Every site, by id.
    fn sites(&self) -> Result<Vec<Site>, StoreError>;
    /// One site.
    fn site(&self, id: &str) -> Result<Option<Site>, StoreError>;
    /// Adds a site; `false` (and nothing written) when its id is taken.
    fn insert_site(&self, site: &Site) -> Result<bool, StoreError>;
    /// Replaces a site that exists.
    fn update_site(&self, site: &Site) -> Result<(), StoreError>;
    /// Removes a site; `false` when there was none.
    fn remove_site(&self, id: &str) -> Result<bool, StoreError>;
    /// Every rollout, by id, with its sites.
    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError>;
    /// Writes a rollout whole (new or changed), its sites included, in one transaction.
    fn put_rollout(&self, rollout: &Rollout) -> Result<(), StoreError>;
    /// Writes the progress of some sites of a rollout (`None` removes a site).
    fn put_sites(
        &self,
        rollout: &str,
        sites: &[(String, Option<SiteProgress>)],
    ) -> Result<(), StoreError>;
    /// Keeps a manifest's exact bytes under its digest.
    fn put_manifest(&self, digest: &str, body: &[u8]) -> Result<(), StoreError>;
    /// A manifest kept by [`Store::put_manifest`].
    fn manifest(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// [`Store`] in an embedded sled database.
pub struct SledStore {
    db: sled::Db,
    sites: sled::Tree,
    /// Rollout id -> the rollout without its sites.
    rollouts: sled::Tree,
    /// Rollout id, 0, site id -> that site's progress.
    progress: sled::Tree,
    manifests: sled::Tree,
}

/// The key of a site's progress in a rollout.
fn progress_key(rollout: &str, site: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(rollout.len() + 1 + site.len());
    key.extend_from_slice(rollout.as_bytes());
    key.push(0);
    key.extend_from_slice(site.as_bytes());
    key
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl SledStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        Ok(SledStore {
            sites: db.open_tree("sites").map_err(err)?,
            rollouts: db.open_tree("rollouts").map_err(err)?,
            progress: db.open_tree("rollout_sites").map_err(err)?,
            manifests: db.open_tree("manifests").map_err(err)?,
            db,
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(err)
    }

    fn all<T: DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<T>, StoreError> {
        tree.iter()
            .values()
            .map(|v| decode(&v.map_err(err)?))
            .collect()
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(err)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError(format!("a record does not decode: {e}")))
}

impl Store for SledStore {
    fn sites(&self) -> Result<Vec<Site>, StoreError> {
        SledStore::all(&self.sites)
    }

    fn site(&self, id: &str) -> Result<Option<Site>, StoreError> {
        self.sites
            .get(id)
            .map_err(err)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn insert_site(&self, site: &Site) -> Result<bool, StoreError> {
        let swapped = self
            .sites
            .compare_and_swap(&site.id, None::<&[u8]>, Some(encode(site)?))
            .map_err(err)?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    fn update_site(&self, site: &Site) -> Result<(), StoreError> {
        self.sites.insert(&site.id, encode(site)?).map_err(err)?;
        self.flush()
    }

    fn remove_site(&self, id: &str) -> Result<bool, StoreError> {
        let had = self.sites.remove(id).map_err(err)?.is_some();
        self.flush()?;
        Ok(had)
    }

    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        let mut rollouts: Vec<Rollout> = SledStore::all(&self.rollouts)?;
        for r in &mut rollouts {
            let prefix = progress_key(&r.id, "");
            for item in self.progress.scan_prefix(&prefix) {
                let (key, value) = item.map_err(err)?;
                let site = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                r.sites.insert(site, decode(&value)?);
            }
        }
        Ok(rollouts)
    }

    fn put_rollout(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let header = Rollout {
            sites: Default::default(),
            ..rollout.clone()
        };
        let header = encode(&header)?;
        let prefix = progress_key(&rollout.id, "");
        let mut gone = Vec::new();
        for key in self.progress.scan_prefix(&prefix).keys() {
            let key = key.map_err(err)?;
            let site = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if !rollout.sites.contains_key(&site) {
                gone.push(key);
            }
        }
        let sites = rollout
            .sites
            .iter()
            .map(|(id, p)| Ok((progress_key(&rollout.id, id), encode(p)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        (&self.rollouts, &self.progress)
            .transaction(|(rollouts, progress)| {
                rollouts.insert(rollout.id.as_bytes(), header.as_slice())?;
                for key in &gone {
                    progress.remove(key)?;
                }
                for (key, value) in &sites {
                    progress.insert(key.as_slice(), value.as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| StoreError(format!("rollout {}: {e:?}", rollout.id)))?;
        self.flush()
    }

    fn put_sites(
        &self,
        rollout: &str,
        sites: &[(String, Option<SiteProgress>)],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (site, progress) in sites {
            let key = progress_key(rollout, site);
            match progress {
                Some(p) => batch.insert(key, encode(p)?),
                None => batch.remove(key),
            }
        }
        self.progress.apply_batch(batch).map_err(err)?;
        self.flush()
    }

    fn put_manifest(&self, digest: &str, body: &[u8]) -> Result<(), StoreError> {
        self.manifests.insert(digest, body).map_err(err)?;
        self.flush()
    }

    fn manifest(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.manifests.get(digest).map_err(err)?.map(|v| v.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_survive_a_reopen_and_ids_are_not_taken_twice() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::create(&json!({"name": "a", "nodes": ["h:1"]}), "s-1").unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            assert!(store.insert_site(&site).unwrap());
            let mut other = site.clone();
            other.name = "b".into();
            assert!(!store.insert_site(&other).unwrap());
            store.put_manifest("sha256:aa", b"{}").unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.sites().unwrap(), vec![site]);
        assert_eq!(store.manifest("sha256:aa").unwrap().unwrap(), b"{}");
        assert!(store.remove_site("s-1").unwrap());
        assert!(!store.remove_site("s-1").unwrap());
        assert!(store.site("s-1").unwrap().is_none());
    }

    #[test]
    fn a_rollout_is_a_header_and_a_record_per_site() {
        let dir = tempfile::tempdir().unwrap();
        let mut rollout = Rollout {
            id: "r-1".into(),
            application: "pos".into(),
            images: Vec::new(),
            selector: json!({}),
            max_parallel: 2,
            bandwidth: None,
            created_ms: 1,
            cancelled_ms: None,
            superseded_by: None,
            sites: Default::default(),
            pulling: None,
        };
        rollout.join(["a", "b", "c"]);
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.put_rollout(&rollout).unwrap();
            rollout.start("b", 5);
            rollout.sent("b", 42);
            store
                .put_sites("r-1", &[("b".into(), Some(rollout.sites["b"].clone()))])
                .unwrap();
            rollout.forget("c");
            store.put_rollout(&rollout).unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.rollouts().unwrap(), vec![rollout.clone()]);
        store.put_sites("r-1", &[("a".into(), None)]).unwrap();
        rollout.forget("a");
        assert_eq!(store.rollouts().unwrap(), vec![rollout]);
    }
}
