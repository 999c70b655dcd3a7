//! The PostgreSQL schema, created and moved forward by towerd at start: numbered
//! migrations (`migrations/NNNN_*.sql`), each applied once, in order, in one transaction
//! with its row in `towerd_migrations`. Replicas starting together take an advisory lock
//! first, so one applies and the others find it done. A database whose schema is newer
//! than this towerd knows is refused (an older replica must not write to it).

use super::{err, StoreError};
use tokio_postgres::Client;

/// Every migration: its version, what it does, its SQL.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "sites, rollouts and manifests",
        include_str!("migrations/0001_init.sql"),
    ),
    (
        2,
        "leases and the inventory's version",
        include_str!("migrations/0002_leases.sql"),
    ),
    (3, "API tokens", include_str!("migrations/0003_tokens.sql")),
];

/// The advisory lock the migrating replica holds ("towerd" in ASCII).
const LOCK: i64 = 0x746f_7765_7264;

/// The newest schema version this towerd knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Brings the schema to [`latest`]; returns the versions applied now.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS towerd_migrations (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(err)?;
    let applied: Vec<i32> = tx
        .query(
            "SELECT version FROM towerd_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(newer) = applied.iter().find(|v| **v > latest()) {
        return Err(StoreError(format!(
            "the database's schema is at version {newer}, newer than this towerd knows ({}): run a towerd as new as the one that wrote it",
            latest()
        )));
    }
    let mut now = Vec::new();
    for (version, description, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError(format!(
                "migration {version} ({description}): {}",
                super::postgres::describe(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO towerd_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await
        .map_err(err)?;
        now.push(*version);
    }
    tx.commit().await.map_err(err)?;
    Ok(now)
}
