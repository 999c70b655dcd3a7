//! [`Store`] in an embedded sled database under the data directory. Every write is
//! flushed (fsynced) before it returns.

use super::{decode, encode, err, Pending, Store, StoreError, Token, Written};
use site_fleet::{Filter, Rollout, Site, SiteProgress};
use sled::Transactional;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// [`Store`] in an embedded sled database.
pub struct SledStore {
    db: sled::Db,
    sites: sled::Tree,
    /// Site name -> its id: names are unique.
    names: sled::Tree,
    /// Rollout id -> the rollout without its sites.
    rollouts: sled::Tree,
    /// Rollout id, 0, site id -> that site's progress.
    progress: sled::Tree,
    manifests: sled::Tree,
    /// Token name -> `{"role", "hash"}`.
    tokens: sled::Tree,
    /// Token hash -> its name.
    token_hashes: sled::Tree,
    /// Bumped at each write of a site (one process uses the store).
    inventory: AtomicU64,
    /// Leases, in memory: one tower uses this store, so they only keep its own workers
    /// apart.
    leases: Mutex<HashMap<String, (String, Instant)>>,
}

/// The key of a site's progress in a rollout.
fn progress_key(rollout: &str, site: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(rollout.len() + 1 + site.len());
    key.extend_from_slice(rollout.as_bytes());
    key.push(0);
    key.extend_from_slice(site.as_bytes());
    key
}

type Conflict = sled::transaction::ConflictableTransactionError<Written>;

/// Runs a blocking call of the store off the runtime's workers' async duty (flushes
/// fsync).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl SledStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|e| match &e {
                // sled's message for a lock another process holds.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError(format!(
                        "{} is in use by a running towerd (the embedded store is one process's): stop it first, or keep the tower's state in PostgreSQL (--database)",
                        path.display()
                    ))
                }
                _ => StoreError(format!("cannot open {}: {e}", path.display())),
            })?;
        let store = SledStore {
            sites: db.open_tree("sites").map_err(err)?,
            names: db.open_tree("site_names").map_err(err)?,
            rollouts: db.open_tree("rollouts").map_err(err)?,
            progress: db.open_tree("rollout_sites").map_err(err)?,
            manifests: db.open_tree("manifests").map_err(err)?,
            tokens: db.open_tree("tokens").map_err(err)?,
            token_hashes: db.open_tree("token_hashes").map_err(err)?,
            db,
            inventory: AtomicU64::new(0),
            leases: Mutex::new(HashMap::new()),
        };
        // A database of an earlier version has no name index: made from the sites.
        if store.names.is_empty() && !store.sites.is_empty() {
            for site in store.all_sites()? {
                store
                    .names
                    .insert(&site.name, site.id.as_bytes())
                    .map_err(err)?;
            }
            store.flush()?;
        }
        Ok(store)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(err)
    }

    fn all_sites(&self) -> Result<Vec<Site>, StoreError> {
        all(&self.sites)
    }

    /// Writes `site` (its id free, for an insert), its name taken for it, the name it
    /// had released.
    fn write_site(&self, site: &Site, insert: bool) -> Result<Written, StoreError> {
        let record = encode(site)?;
        // The name it had, released when it changes (writes of the inventory are
        // serialised by the API, so it is still the name when the transaction runs).
        let before: Option<Site> = match self.sites.get(&site.id).map_err(err)? {
            Some(_) if insert => return Ok(Written::IdTaken),
            Some(b) => Some(decode(&b)?),
            None if !insert => return Ok(Written::Missing),
            None => None,
        };
        let outcome = (&self.sites, &self.names).transaction(|(sites, names)| {
            if insert && sites.get(site.id.as_bytes())?.is_some() {
                return Err(Conflict::Abort(Written::IdTaken));
            }
            if let Some(holder) = names.get(site.name.as_bytes())? {
                if holder != site.id.as_bytes() {
                    let holder = String::from_utf8_lossy(&holder).into_owned();
                    return Err(Conflict::Abort(Written::NameTaken(holder)));
                }
            }
            if let Some(before) = before.as_ref().filter(|b| b.name != site.name) {
                names.remove(before.name.as_bytes())?;
            }
            names.insert(site.name.as_bytes(), site.id.as_bytes())?;
            sites.insert(site.id.as_bytes(), record.as_slice())?;
            Ok(())
        });
        match outcome {
            Ok(()) => {
                self.flush()?;
                self.inventory.fetch_add(1, Ordering::SeqCst);
                Ok(Written::Done)
            }
            Err(sled::transaction::TransactionError::Abort(w)) => Ok(w),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(err(e)),
        }
    }

    fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let Some(before) = self.sites.get(id).map_err(err)? else {
            return Ok(false);
        };
        let before: Site = decode(&before)?;
        (&self.sites, &self.names)
            .transaction(|(sites, names)| {
                sites.remove(id.as_bytes())?;
                if names.get(before.name.as_bytes())?.as_deref() == Some(id.as_bytes()) {
                    names.remove(before.name.as_bytes())?;
                }
                Ok::<(), Conflict>(())
            })
            .map_err(|e| StoreError(format!("site {id}: {e:?}")))?;
        self.flush()?;
        self.inventory.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    fn all_rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        let mut rollouts: Vec<Rollout> = all(&self.rollouts)?;
        for r in &mut rollouts {
            self.read_sites(r)?;
        }
        Ok(rollouts)
    }

    fn read_sites(&self, r: &mut Rollout) -> Result<(), StoreError> {
        let prefix = progress_key(&r.id, "");
        for item in self.progress.scan_prefix(&prefix) {
            let (key, value) = item.map_err(err)?;
            let site = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            r.sites.insert(site, decode(&value)?);
        }
        Ok(())
    }

    fn one_rollout(&self, id: &str) -> Result<Option<Rollout>, StoreError> {
        let Some(header) = self.rollouts.get(id).map_err(err)? else {
            return Ok(None);
        };
        let mut r: Rollout = decode(&header)?;
        self.read_sites(&mut r)?;
        Ok(Some(r))
    }

    fn write_rollout(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let header = encode(&header_of(rollout))?;
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

    fn write_sites(
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
}

/// A rollout without its sites.
fn header_of(rollout: &Rollout) -> Rollout {
    Rollout {
        sites: Default::default(),
        ..rollout.clone()
    }
}

fn all<T: serde::de::DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .values()
        .map(|v| decode(&v.map_err(err)?))
        .collect()
}

/// A result now, as the trait's future.
fn now<'a, T: Send + 'a>(f: impl FnOnce() -> Result<T, StoreError>) -> Pending<'a, T> {
    Box::pin(std::future::ready(blocking(f)))
}

impl Store for SledStore {
    fn sites(&self) -> Pending<'_, Vec<Site>> {
        now(|| self.all_sites())
    }

    fn query_sites<'a>(&'a self, filter: &'a Filter) -> Pending<'a, Vec<Site>> {
        now(|| {
            let mut sites = self.all_sites()?;
            sites.retain(|s| filter.matches(&s.document()));
            Ok(sites)
        })
    }

    fn count_sites(&self) -> Pending<'_, u64> {
        now(|| Ok(self.sites.len() as u64))
    }

    fn site<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Site>> {
        now(|| {
            self.sites
                .get(id)
                .map_err(err)?
                .map(|v| decode(&v))
                .transpose()
        })
    }

    fn insert_site<'a>(&'a self, site: &'a Site) -> Pending<'a, Written> {
        now(|| self.write_site(site, true))
    }

    fn update_site<'a>(&'a self, before: &'a Site, site: &'a Site) -> Pending<'a, Written> {
        now(|| match self.sites.get(&site.id).map_err(err)? {
            Some(stored) if decode::<Site>(&stored)? != *before => Ok(Written::Changed),
            _ => self.write_site(site, false),
        })
    }

    fn remove_site<'a>(&'a self, id: &'a str) -> Pending<'a, bool> {
        now(|| self.remove(id))
    }

    fn inventory_version(&self) -> Pending<'_, u64> {
        now(|| Ok(self.inventory.load(Ordering::SeqCst)))
    }

    fn rollouts(&self) -> Pending<'_, Vec<Rollout>> {
        now(|| self.all_rollouts())
    }

    fn rollout_headers(&self) -> Pending<'_, Vec<Rollout>> {
        now(|| all(&self.rollouts))
    }

    fn rollout<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Rollout>> {
        now(|| self.one_rollout(id))
    }

    fn put_rollout<'a>(&'a self, rollout: &'a Rollout) -> Pending<'a, ()> {
        now(|| self.write_rollout(rollout))
    }

    fn put_rollout_header<'a>(&'a self, rollout: &'a Rollout) -> Pending<'a, ()> {
        now(|| {
            self.rollouts
                .insert(rollout.id.as_bytes(), encode(&header_of(rollout))?)
                .map_err(err)?;
            self.flush()
        })
    }

    fn site_progress<'a>(
        &'a self,
        rollout: &'a str,
        site: &'a str,
    ) -> Pending<'a, Option<SiteProgress>> {
        now(|| {
            self.progress
                .get(progress_key(rollout, site))
                .map_err(err)?
                .map(|v| decode(&v))
                .transpose()
        })
    }

    fn put_sites<'a>(
        &'a self,
        rollout: &'a str,
        sites: &'a [(String, Option<SiteProgress>)],
    ) -> Pending<'a, ()> {
        now(|| self.write_sites(rollout, sites))
    }

    fn add_sites<'a>(
        &'a self,
        rollout: &'a str,
        sites: &'a [(String, SiteProgress)],
    ) -> Pending<'a, ()> {
        now(|| {
            for (site, progress) in sites {
                let _ = self
                    .progress
                    .compare_and_swap(
                        progress_key(rollout, site),
                        None::<&[u8]>,
                        Some(encode(progress)?),
                    )
                    .map_err(err)?;
            }
            self.flush()
        })
    }

    fn put_manifest<'a>(&'a self, digest: &'a str, body: &'a [u8]) -> Pending<'a, ()> {
        now(|| {
            self.manifests.insert(digest, body).map_err(err)?;
            self.flush()
        })
    }

    fn manifest<'a>(&'a self, digest: &'a str) -> Pending<'a, Option<Vec<u8>>> {
        now(|| Ok(self.manifests.get(digest).map_err(err)?.map(|v| v.to_vec())))
    }

    fn manifest_digests(&self) -> Pending<'_, Vec<String>> {
        now(|| {
            self.manifests
                .iter()
                .keys()
                .map(|k| Ok(String::from_utf8_lossy(&k.map_err(err)?).into_owned()))
                .collect()
        })
    }

    fn put_token<'a>(&'a self, name: &'a str, role: &'a str, hash: &'a str) -> Pending<'a, bool> {
        now(|| {
            let record = encode(&serde_json::json!({"role": role, "hash": hash}))?;
            let written = (&self.tokens, &self.token_hashes)
                .transaction(|(tokens, hashes)| {
                    if tokens.get(name.as_bytes())?.is_some() {
                        return Ok(false);
                    }
                    tokens.insert(name.as_bytes(), record.as_slice())?;
                    hashes.insert(hash.as_bytes(), name.as_bytes())?;
                    Ok::<bool, sled::transaction::ConflictableTransactionError<()>>(true)
                })
                .map_err(|e| StoreError(format!("token {name}: {e:?}")))?;
            self.flush()?;
            Ok(written)
        })
    }

    fn revoke_token<'a>(&'a self, name: &'a str) -> Pending<'a, bool> {
        now(|| {
            let Some(record) = self.tokens.get(name).map_err(err)? else {
                return Ok(false);
            };
            let record: serde_json::Value = decode(&record)?;
            let hash = record["hash"].as_str().unwrap_or_default().to_owned();
            (&self.tokens, &self.token_hashes)
                .transaction(|(tokens, hashes)| {
                    tokens.remove(name.as_bytes())?;
                    hashes.remove(hash.as_bytes())?;
                    Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| StoreError(format!("token {name}: {e:?}")))?;
            self.flush()?;
            Ok(true)
        })
    }

    fn token<'a>(&'a self, hash: &'a str) -> Pending<'a, Option<(String, String)>> {
        now(|| {
            let Some(name) = self.token_hashes.get(hash).map_err(err)? else {
                return Ok(None);
            };
            let Some(record) = self.tokens.get(&name).map_err(err)? else {
                return Ok(None);
            };
            let record: serde_json::Value = decode(&record)?;
            let role = record["role"].as_str().unwrap_or_default().to_owned();
            Ok(Some((String::from_utf8_lossy(&name).into_owned(), role)))
        })
    }

    fn tokens(&self) -> Pending<'_, Vec<Token>> {
        now(|| {
            self.tokens
                .iter()
                .map(|item| {
                    let (name, record) = item.map_err(err)?;
                    let record: serde_json::Value = decode(&record)?;
                    let field = |k: &str| record[k].as_str().unwrap_or_default().to_owned();
                    Ok(Token {
                        name: String::from_utf8_lossy(&name).into_owned(),
                        role: field("role"),
                        hash: field("hash"),
                    })
                })
                .collect()
        })
    }

    fn shared(&self) -> bool {
        false
    }

    fn claim<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> Pending<'a, bool> {
        now(|| {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let free = leases
                .get(key)
                .is_none_or(|(h, until)| h == holder || *until < now);
            if free {
                leases.insert(key.to_owned(), (holder.to_owned(), now + ttl));
            }
            Ok(free)
        })
    }

    fn renew<'a>(
        &'a self,
        keys: &'a [String],
        holder: &'a str,
        ttl: Duration,
    ) -> Pending<'a, Vec<String>> {
        now(|| {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let mut held = Vec::new();
            for key in keys {
                if let Some((h, until)) = leases.get_mut(key) {
                    if h == holder && *until >= now {
                        *until = now + ttl;
                        held.push(key.clone());
                    }
                }
            }
            Ok(held)
        })
    }

    fn release<'a>(&'a self, keys: &'a [String], holder: &'a str) -> Pending<'a, ()> {
        now(|| {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            for key in keys {
                if leases.get(key).is_some_and(|(h, _)| h == holder) {
                    leases.remove(key);
                }
            }
            Ok(())
        })
    }

    fn leases(&self) -> Pending<'_, Vec<(String, String)>> {
        now(|| {
            let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            Ok(leases
                .iter()
                .filter(|(_, (_, until))| *until >= now)
                .map(|(k, (h, _))| (k.clone(), h.clone()))
                .collect())
        })
    }
}
