//! The tower's state behind one interface: the sites of the inventory, the rollouts, and
//! the manifests the rollouts deliver (exact bytes, by digest).
//!
//! Two stores: [`SledStore`], an embedded sled database in the data directory (the
//! default), and [`PgStore`], PostgreSQL (`--database`), which several `towerd` replicas
//! share. A rollout is a header and one record per site in both, so that a site's
//! progress is written alone (a rollout to 10,000 sites is not rewritten at each step of
//! one of them). Site names are unique in both (an index, not a check before a write, so
//! that two replicas onboarding one name at once get one site). Filters run in the store:
//! PostgreSQL answers them from a `jsonb` index (`sql_filter.rs`).
//!
//! Every write is durable when it returns.

mod copy;
mod postgres;
mod schema;
mod sled;
mod sql_filter;

pub use self::copy::{copy_all, Copied};
pub use self::postgres::PgStore;
pub use self::sled::SledStore;
use futures_util::future::BoxFuture;
use site_fleet::{Filter, Rollout, Site, SiteProgress};
use std::time::Duration;

/// A failure of the store itself: the API answers 500 and changes nothing.
#[derive(Debug, thiserror::Error)]
#[error("tower store: {0}")]
pub struct StoreError(pub String);

/// What a store call returns, later.
pub type Pending<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// How a write of a site went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// It is written.
    Done,
    /// Nothing written: the id is taken (an insert).
    IdTaken,
    /// Nothing written: another site (this id) has the name.
    NameTaken(String),
    /// Nothing written: there is no such site (an update).
    Missing,
    /// Nothing written: the site changed since it was read (an update).
    Changed,
}

/// An API token as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Its name.
    pub name: String,
    /// `read` or `write`.
    pub role: String,
    /// The SHA-256 of the token (hex).
    pub hash: String,
}

/// What the tower keeps.
pub trait Store: Send + Sync + 'static {
    /// Every site, by id.
    fn sites(&self) -> Pending<'_, Vec<Site>>;
    /// The sites `filter` matches, by id.
    fn query_sites<'a>(&'a self, filter: &'a Filter) -> Pending<'a, Vec<Site>>;
    /// How many sites there are.
    fn count_sites(&self) -> Pending<'_, u64>;
    /// One site.
    fn site<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Site>>;
    /// Adds a site, unless its id or its name is taken.
    fn insert_site<'a>(&'a self, site: &'a Site) -> Pending<'a, Written>;
    /// Replaces site `before` with `site`, unless another site has its name or the
    /// stored site is no longer `before` (another tower changed it since it was read).
    fn update_site<'a>(&'a self, before: &'a Site, site: &'a Site) -> Pending<'a, Written>;
    /// Removes a site; `false` when there was none.
    fn remove_site<'a>(&'a self, id: &'a str) -> Pending<'a, bool>;
    /// A number that changes whenever a site is added, changed or removed (by any
    /// tower sharing the store).
    fn inventory_version(&self) -> Pending<'_, u64>;
    /// Every rollout, by id, with its sites.
    fn rollouts(&self) -> Pending<'_, Vec<Rollout>>;
    /// Every rollout, by id, without its sites.
    fn rollout_headers(&self) -> Pending<'_, Vec<Rollout>>;
    /// One rollout with its sites.
    fn rollout<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Rollout>>;
    /// Writes a rollout whole (new or changed), its sites included, in one transaction.
    fn put_rollout<'a>(&'a self, rollout: &'a Rollout) -> Pending<'a, ()>;
    /// Writes a rollout's header (all of it but its sites).
    fn put_rollout_header<'a>(&'a self, rollout: &'a Rollout) -> Pending<'a, ()>;
    /// The progress of one site of a rollout, as the store has it.
    fn site_progress<'a>(
        &'a self,
        rollout: &'a str,
        site: &'a str,
    ) -> Pending<'a, Option<SiteProgress>>;
    /// Writes the progress of some sites of a rollout (`None` removes a site).
    fn put_sites<'a>(
        &'a self,
        rollout: &'a str,
        sites: &'a [(String, Option<SiteProgress>)],
    ) -> Pending<'a, ()>;
    /// Writes the progress of sites that join a rollout, each only if the rollout has no
    /// record of it yet (another tower may have written one since).
    fn add_sites<'a>(
        &'a self,
        rollout: &'a str,
        sites: &'a [(String, SiteProgress)],
    ) -> Pending<'a, ()>;
    /// Keeps a manifest's exact bytes under its digest.
    fn put_manifest<'a>(&'a self, digest: &'a str, body: &'a [u8]) -> Pending<'a, ()>;
    /// A manifest kept by [`Store::put_manifest`].
    fn manifest<'a>(&'a self, digest: &'a str) -> Pending<'a, Option<Vec<u8>>>;
    /// Every manifest's digest (for a move to another store).
    fn manifest_digests(&self) -> Pending<'_, Vec<String>>;

    /// Keeps an API token: its name, role (`read` or `write`) and the SHA-256 of the
    /// token (hex); `false` (nothing written) when the name is taken.
    fn put_token<'a>(&'a self, name: &'a str, role: &'a str, hash: &'a str) -> Pending<'a, bool>;
    /// Forgets the token `name`; `false` when there was none.
    fn revoke_token<'a>(&'a self, name: &'a str) -> Pending<'a, bool>;
    /// The name and role of the token whose SHA-256 is `hash`.
    fn token<'a>(&'a self, hash: &'a str) -> Pending<'a, Option<(String, String)>>;
    /// Every token, by name.
    fn tokens(&self) -> Pending<'_, Vec<Token>>;

    /// Whether other towers may share this store (then each works only what it holds a
    /// lease on, and reads what the others wrote).
    fn shared(&self) -> bool;
    /// Takes the lease `key` for `holder` for `ttl` (or extends it, if `holder` has it);
    /// `false` when another holder has it and it has not expired.
    fn claim<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> Pending<'a, bool>;
    /// Extends the leases of `keys` that `holder` still has (not expired); returns them.
    fn renew<'a>(
        &'a self,
        keys: &'a [String],
        holder: &'a str,
        ttl: Duration,
    ) -> Pending<'a, Vec<String>>;
    /// Gives the leases `keys` up, those `holder` has.
    fn release<'a>(&'a self, keys: &'a [String], holder: &'a str) -> Pending<'a, ()>;
    /// The leases not expired, as `(key, holder)`.
    fn leases(&self) -> Pending<'_, Vec<(String, String)>>;
}

/// Opens the store `config` names: PostgreSQL with `--database`, else sled in the data
/// directory.
pub async fn open(config: &crate::cli::Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_at(
        Some(&config.data),
        config.database.as_deref(),
        config.database_ca.as_deref(),
    )
    .await
}

/// Opens the PostgreSQL database `database` if given, else the embedded store of data
/// directory `data`.
pub async fn open_at(
    data: Option<&std::path::Path>,
    database: Option<&str>,
    ca: Option<&std::path::Path>,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(match (database, data) {
        (Some(url), _) => std::sync::Arc::new(PgStore::connect(url, ca).await?),
        (None, Some(dir)) => std::sync::Arc::new(SledStore::open(&dir.join("db"))?),
        (None, None) => return Err(StoreError("no --data and no --database".into())),
    })
}

/// `towerd migrate`: the embedded store of data directory `from` copied into the
/// PostgreSQL database `to` (migrated first, and empty; over TLS with `ca`).
pub async fn move_to_postgres(
    from: &std::path::Path,
    to: &str,
    ca: Option<&std::path::Path>,
) -> Result<copy::Copied, StoreError> {
    let db = from.join("db");
    if !db.exists() {
        return Err(StoreError(format!(
            "{} holds no tower database (no {})",
            from.display(),
            db.display()
        )));
    }
    let source = SledStore::open(&db)?;
    let target = PgStore::connect(to, ca).await?;
    let copied = copy_all(&source, &target).await?;
    tracing::info!(from = %from.display(), to = %target.place(), ?copied, "tower state moved");
    Ok(copied)
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(err)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError(format!("a record does not decode: {e}")))
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}
