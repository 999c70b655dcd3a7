//! [`Store`] in PostgreSQL (`towerd --database postgres://...`), shared by every replica
//! of the tower. Each record is a `jsonb` document (the same serde form as the embedded
//! store's), the schema is `schema.rs`'s, and every write is one statement or one
//! transaction, committed (durable) when it returns.

use super::sql_filter::Sql;
use super::{err, Pending, Store, StoreError, Token, Written};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use site_fleet::{Filter, Rollout, Site, SiteProgress};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Connections kept open to the database.
const POOL_SIZE: usize = 16;
/// Longest wait for a connection (made, taken from the pool, or checked).
const TIMEOUT: Duration = Duration::from_secs(5);

/// [`Store`] in PostgreSQL.
pub struct PgStore {
    pool: Pool,
    /// Where it is, for messages (no password).
    place: String,
}

/// A database error as one line: its SQL state and message, the server's detail.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(&format!(": {detail}"));
            }
            s
        }
        None => e.to_string(),
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError(describe(&e))
}

/// TLS towards the database: its certificate verified against the CA in `ca` (PEM).
fn tls_config(ca: &Path) -> Result<rustls::ClientConfig, StoreError> {
    let roots = crate::access::tls::roots("--database-ca", ca).map_err(StoreError)?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `user@host:port/db` of a connection string, without its password.
fn place(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
            tokio_postgres::config::Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    format!(
        "{}@{}/{}",
        config.get_user().unwrap_or("?"),
        hosts.join(","),
        config.get_dbname().unwrap_or("?")
    )
}

/// The unique index a violation broke, if it was one.
fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    (db.code() == &SqlState::UNIQUE_VIOLATION).then(|| db.constraint().unwrap_or(""))
}

impl PgStore {
    /// Connects to the database at `url` (a libpq URL or key=value string) and brings
    /// its schema up to date. With `ca` (PEM), over TLS only, the server's certificate
    /// verified against that CA and the host named in `url`.
    pub async fn connect(url: &str, ca: Option<&Path>) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError(format!("--database is not a PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(TIMEOUT);
        }
        let place = place(&config);
        let settings = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match ca {
            Some(ca) => {
                // A CA given is a server to verify: never fall back to plain TCP.
                config.ssl_mode(SslMode::Require);
                Manager::from_config(config, MakeRustlsConnect::new(tls_config(ca)?), settings)
            }
            None if config.get_ssl_mode() == SslMode::Require => {
                return Err(StoreError(
                    "--database asks for sslmode=require: give the CA of the database's certificate with --database-ca".into(),
                ))
            }
            None => Manager::from_config(config, NoTls, settings),
        };
        // A database that stops answering fails calls in bounded time (the leases of
        // replicas depend on it), never holds them.
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(err)?;
        let store = PgStore { pool, place };
        let mut client = store.client().await?;
        let applied = super::schema::migrate(&mut client)
            .await
            .map_err(|e| StoreError(format!("database {}: {}", store.place, e.0)))?;
        if !applied.is_empty() {
            tracing::info!(database = %store.place, versions = ?applied, "database schema migrated");
        }
        Ok(store)
    }

    /// Where the database is (`user@host:port/db`).
    pub fn place(&self) -> &str {
        &self.place
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError(format!("cannot reach the database {}: {e}", self.place)))
    }

    async fn select_sites(
        &self,
        condition: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Site>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT record FROM sites WHERE {condition} ORDER BY id COLLATE \"C\""),
                params,
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                let Json(site) = r
                    .try_get::<_, Json<Site>>(0)
                    .map_err(|e| StoreError(format!("a site does not decode: {e}")))?;
                Ok(site)
            })
            .collect()
    }

    /// Inserts `site`, or (`before` given) replaces `before` with it.
    async fn write_site(&self, site: &Site, before: Option<&Site>) -> Result<Written, StoreError> {
        let client = self.client().await?;
        let record = Json(site);
        let written = match before {
            None => {
                client
                    .execute(
                        "INSERT INTO sites (id, record) VALUES ($1, $2)",
                        &[&site.id, &record],
                    )
                    .await
            }
            Some(before) => {
                client
                    .execute(
                        "UPDATE sites SET record = $2 WHERE id = $1 AND record = $3",
                        &[&site.id, &record, &Json(before)],
                    )
                    .await
            }
        };
        match written {
            Ok(0) => {
                let exists = client
                    .query_opt("SELECT 1 FROM sites WHERE id = $1", &[&site.id])
                    .await
                    .map_err(pg)?
                    .is_some();
                Ok(if exists {
                    Written::Changed
                } else {
                    Written::Missing
                })
            }
            Ok(_) => Ok(Written::Done),
            Err(e) => match unique_violation(&e) {
                Some("sites_pkey") => Ok(Written::IdTaken),
                Some("sites_name") => {
                    let holder = client
                        .query_opt(
                            "SELECT id FROM sites WHERE record ->> 'name' = $1",
                            &[&site.name],
                        )
                        .await
                        .map_err(pg)?
                        .map_or_else(String::new, |r| r.get(0));
                    Ok(Written::NameTaken(holder))
                }
                _ => Err(pg(e)),
            },
        }
    }

    /// Rollout headers: every one, or the one `id`.
    async fn headers(&self, id: Option<&str>) -> Result<BTreeMap<String, Rollout>, StoreError> {
        let client = self.client().await?;
        let rows = match id {
            Some(id) => {
                client
                    .query("SELECT id, record FROM rollouts WHERE id = $1", &[&id])
                    .await
            }
            None => client.query("SELECT id, record FROM rollouts", &[]).await,
        }
        .map_err(pg)?;
        let mut rollouts = BTreeMap::new();
        for row in rows {
            let id: String = row.get(0);
            let Json(r) = row
                .try_get::<_, Json<Rollout>>(1)
                .map_err(|e| StoreError(format!("rollout {id} does not decode: {e}")))?;
            rollouts.insert(id, r);
        }
        Ok(rollouts)
    }

    /// Rollouts with their sites: every one, or the one `id`.
    async fn with_sites(&self, id: Option<&str>) -> Result<Vec<Rollout>, StoreError> {
        let mut rollouts = self.headers(id).await?;
        let client = self.client().await?;
        let rows = match id {
            Some(id) => {
                client
                    .query(
                        "SELECT rollout, site, progress FROM rollout_sites WHERE rollout = $1",
                        &[&id],
                    )
                    .await
            }
            None => {
                client
                    .query("SELECT rollout, site, progress FROM rollout_sites", &[])
                    .await
            }
        }
        .map_err(pg)?;
        for row in rows {
            let (id, site): (String, String) = (row.get(0), row.get(1));
            let Json(p) = row.try_get::<_, Json<SiteProgress>>(2).map_err(|e| {
                StoreError(format!("site {site} of rollout {id} does not decode: {e}"))
            })?;
            if let Some(r) = rollouts.get_mut(&id) {
                r.sites.insert(site, p);
            }
        }
        Ok(rollouts.into_values().collect())
    }

    async fn write_header(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO rollouts (id, record) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                &[&rollout.id, &Json(&header_of(rollout))],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn write_rollout(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let header = header_of(rollout);
        let (ids, progress) = columns(
            rollout
                .sites
                .iter()
                .map(|(id, p)| (id.clone(), Some(p.clone()))),
        )?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "INSERT INTO rollouts (id, record) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            &[&rollout.id, &Json(&header)],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "DELETE FROM rollout_sites WHERE rollout = $1 AND NOT (site = ANY($2))",
            &[&rollout.id, &ids],
        )
        .await
        .map_err(pg)?;
        upsert_sites(&tx, &rollout.id, &ids, &progress).await?;
        tx.commit().await.map_err(pg)
    }

    async fn write_sites(
        &self,
        rollout: &str,
        sites: &[(String, Option<SiteProgress>)],
    ) -> Result<(), StoreError> {
        let gone: Vec<String> = sites
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        let (ids, progress) = columns(sites.iter().filter(|(_, p)| p.is_some()).cloned())?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if !gone.is_empty() {
            tx.execute(
                "DELETE FROM rollout_sites WHERE rollout = $1 AND site = ANY($2)",
                &[&rollout, &gone],
            )
            .await
            .map_err(pg)?;
        }
        upsert_sites(&tx, rollout, &ids, &progress).await?;
        tx.commit().await.map_err(pg)
    }
}

/// A rollout without its sites.
fn header_of(rollout: &Rollout) -> Rollout {
    Rollout {
        sites: Default::default(),
        ..rollout.clone()
    }
}

/// Milliseconds of a lease, as PostgreSQL's interval arithmetic takes them.
fn millis(ttl: Duration) -> f64 {
    ttl.as_millis() as f64
}

/// Site ids and their progress as two arrays (for `unnest`).
fn columns(
    sites: impl Iterator<Item = (String, Option<SiteProgress>)>,
) -> Result<(Vec<String>, Vec<Value>), StoreError> {
    let mut ids = Vec::new();
    let mut progress = Vec::new();
    for (id, p) in sites {
        if let Some(p) = p {
            ids.push(id);
            progress.push(serde_json::to_value(p).map_err(err)?);
        }
    }
    Ok((ids, progress))
}

async fn upsert_sites(
    tx: &deadpool_postgres::Transaction<'_>,
    rollout: &str,
    ids: &[String],
    progress: &[Value],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO rollout_sites (rollout, site, progress)
         SELECT $1, s, p FROM unnest($2::text[], $3::jsonb[]) AS t (s, p)
         ON CONFLICT (rollout, site) DO UPDATE SET progress = excluded.progress",
        &[&rollout, &ids, &progress],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

impl Store for PgStore {
    fn sites(&self) -> Pending<'_, Vec<Site>> {
        Box::pin(self.select_sites("TRUE", &[]))
    }

    fn query_sites<'a>(&'a self, filter: &'a Filter) -> Pending<'a, Vec<Site>> {
        Box::pin(async move {
            let sql = Sql::of(filter);
            self.select_sites(&sql.text, &sql.params()).await
        })
    }

    fn count_sites(&self) -> Pending<'_, u64> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT count(*) FROM sites", &[])
                .await
                .map_err(pg)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn site<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Site>> {
        Box::pin(async move {
            let mut sites = self.select_sites("id = $1", &[&id]).await?;
            Ok(sites.pop())
        })
    }

    fn insert_site<'a>(&'a self, site: &'a Site) -> Pending<'a, Written> {
        Box::pin(self.write_site(site, None))
    }

    fn update_site<'a>(&'a self, before: &'a Site, site: &'a Site) -> Pending<'a, Written> {
        Box::pin(self.write_site(site, Some(before)))
    }

    fn remove_site<'a>(&'a self, id: &'a str) -> Pending<'a, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            let n = client
                .execute("DELETE FROM sites WHERE id = $1", &[&id])
                .await
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn inventory_version(&self) -> Pending<'_, u64> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT version FROM inventory", &[])
                .await
                .map_err(pg)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn rollouts(&self) -> Pending<'_, Vec<Rollout>> {
        Box::pin(self.with_sites(None))
    }

    fn rollout_headers(&self) -> Pending<'_, Vec<Rollout>> {
        Box::pin(async move { Ok(self.headers(None).await?.into_values().collect()) })
    }

    fn rollout<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Rollout>> {
        Box::pin(async move { Ok(self.with_sites(Some(id)).await?.pop()) })
    }

    fn put_rollout<'a>(&'a self, rollout: &'a Rollout) -> Pending<'a, ()> {
        Box::pin(self.write_rollout(rollout))
    }

    fn put_rollout_header<'a>(&'a self, rollout: &'a Rollout) -> Pending<'a, ()> {
        Box::pin(self.write_header(rollout))
    }

    fn site_progress<'a>(
        &'a self,
        rollout: &'a str,
        site: &'a str,
    ) -> Pending<'a, Option<SiteProgress>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT progress FROM rollout_sites WHERE rollout = $1 AND site = $2",
                    &[&rollout, &site],
                )
                .await
                .map_err(pg)?;
            row.map(|r| {
                r.try_get::<_, Json<SiteProgress>>(0)
                    .map(|Json(p)| p)
                    .map_err(|e| {
                        StoreError(format!(
                            "site {site} of rollout {rollout} does not decode: {e}"
                        ))
                    })
            })
            .transpose()
        })
    }

    fn put_sites<'a>(
        &'a self,
        rollout: &'a str,
        sites: &'a [(String, Option<SiteProgress>)],
    ) -> Pending<'a, ()> {
        Box::pin(self.write_sites(rollout, sites))
    }

    fn add_sites<'a>(
        &'a self,
        rollout: &'a str,
        sites: &'a [(String, SiteProgress)],
    ) -> Pending<'a, ()> {
        Box::pin(async move {
            let (ids, progress) = columns(sites.iter().map(|(s, p)| (s.clone(), Some(p.clone()))))?;
            if ids.is_empty() {
                return Ok(());
            }
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO rollout_sites (rollout, site, progress)
                     SELECT $1, s, p FROM unnest($2::text[], $3::jsonb[]) AS t (s, p)
                     ON CONFLICT (rollout, site) DO NOTHING",
                    &[&rollout, &ids, &progress],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn put_manifest<'a>(&'a self, digest: &'a str, body: &'a [u8]) -> Pending<'a, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO manifests (digest, body) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
                    &[&digest, &body],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn manifest<'a>(&'a self, digest: &'a str) -> Pending<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT body FROM manifests WHERE digest = $1", &[&digest])
                .await
                .map_err(pg)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn manifest_digests(&self) -> Pending<'_, Vec<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT digest FROM manifests ORDER BY digest COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn put_token<'a>(&'a self, name: &'a str, role: &'a str, hash: &'a str) -> Pending<'a, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            let n = client
                .execute(
                    "INSERT INTO tokens (name, role, hash) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                    &[&name, &role, &hash],
                )
                .await
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn revoke_token<'a>(&'a self, name: &'a str) -> Pending<'a, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            let n = client
                .execute("DELETE FROM tokens WHERE name = $1", &[&name])
                .await
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn token<'a>(&'a self, hash: &'a str) -> Pending<'a, Option<(String, String)>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT name, role FROM tokens WHERE hash = $1", &[&hash])
                .await
                .map_err(pg)?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    fn tokens(&self) -> Pending<'_, Vec<Token>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT name, role, hash FROM tokens ORDER BY name COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| Token {
                    name: r.get(0),
                    role: r.get(1),
                    hash: r.get(2),
                })
                .collect())
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn claim<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> Pending<'a, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "INSERT INTO leases (key, holder, expires_at)
                     VALUES ($1, $2, now() + $3 * interval '1 millisecond')
                     ON CONFLICT (key) DO UPDATE
                       SET holder = excluded.holder, expires_at = excluded.expires_at
                       WHERE leases.holder = excluded.holder OR leases.expires_at < now()
                     RETURNING holder",
                    &[&key, &holder, &millis(ttl)],
                )
                .await
                .map_err(pg)?;
            Ok(row.is_some())
        })
    }

    fn renew<'a>(
        &'a self,
        keys: &'a [String],
        holder: &'a str,
        ttl: Duration,
    ) -> Pending<'a, Vec<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "UPDATE leases SET expires_at = now() + $3 * interval '1 millisecond'
                     WHERE key = ANY($1) AND holder = $2 AND expires_at >= now()
                     RETURNING key",
                    &[&keys, &holder, &millis(ttl)],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn release<'a>(&'a self, keys: &'a [String], holder: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "DELETE FROM leases WHERE key = ANY($1) AND holder = $2",
                    &[&keys, &holder],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn leases(&self) -> Pending<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT key, holder FROM leases WHERE expires_at >= now()",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}
