//! One suite of the tower's `Store` interface, run on both stores: the embedded sled
//! store and PostgreSQL (a server the test starts, a database per test). What the API
//! relies on holds the same on both: names unique, filters meaning what the language
//! says (checked against `Filter::matches` on the same sites), a rollout as a header and
//! a record per site, manifests byte for byte, records durable across a reopen.

#[path = "../../../tests/kit/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use serde_json::{json, Value};
use site_fleet::{Filter, Rollout, Site};
use site_towerd::store::{copy_all, PgStore, SledStore, Store, Written};
use std::sync::Arc;

fn site(id: &str, body: Value) -> Site {
    Site::create(&body, id).unwrap()
}

/// A fleet whose documents reach every case of the language.
fn fleet() -> Vec<Site> {
    vec![
        site(
            "s-1",
            json!({"name": "shop-1", "nodes": ["a:1", "b:1"], "labels": {"region": "eu", "tier": "gold"},
                   "metadata": {"rack": {"row": 1, "slot": [1, 2]}, "owner": null, "count": 3}}),
        ),
        site(
            "s-2",
            json!({"name": "shop-2", "nodes": ["c:1"], "labels": {"region": "us"},
                   "metadata": {"rack": {"row": 2}, "tags": ["x", "y"], "flag": true}}),
        ),
        site(
            "s-3",
            json!({"name": "ship-3", "nodes": ["d:1"], "labels": {"region": "eu"},
                   "metadata": {"tags": [["x"], {"k": "v"}]}}),
        ),
        site(
            "s-4",
            json!({"name": "cell-4", "nodes": ["e:1", "a:1"], "labels": {},
                   "metadata": {"count": "3", "list": ["0"]}}),
        ),
    ]
}

/// Filters reaching every case: the reference answer is `Filter::matches`.
fn filters() -> Vec<Value> {
    vec![
        json!({}),
        json!({"labels.region": "eu"}),
        json!({"labels.region": {"$ne": "eu"}}),
        json!({"labels.tier": {"$exists": false}}),
        json!({"labels.region": {"$in": ["us", "ap"]}, "name": {"$nin": ["shop-2"]}}),
        json!({"nodes": "a:1"}),
        json!({"nodes": ["c:1"]}),
        json!({"nodes": {"$ne": "a:1"}}),
        json!({"metadata.rack.row": 1}),
        json!({"metadata.rack": {"row": 2}}),
        json!({"metadata.rack": {"$eq": {"row": 1}}}),
        json!({"metadata.rack.slot": 2}),
        json!({"metadata.rack.slot": [1, 2]}),
        json!({"metadata.owner": null}),
        json!({"metadata.owner": {"$exists": true}}),
        json!({"metadata.count": 3}),
        json!({"metadata.count": "3"}),
        json!({"metadata.count": 3.0}),
        json!({"metadata.count": {"$ne": 3.0}}),
        json!({"metadata.rack": {"row": 1.0, "slot": [1.0, 2]}}),
        json!({"metadata.tags": "x"}),
        json!({"metadata.tags": ["x"]}),
        json!({"metadata.tags": {"k": "v"}}),
        json!({"metadata.list.0": "0"}),
        json!({"metadata.flag": true}),
        json!({"$or": [{"name": "cell-4"}, {"labels.tier": "gold"}]}),
        json!({"$and": [{"labels.region": "eu"}, {"$or": [{"metadata.tags": {"$exists": true}}, {"nodes": "b:1"}]}]}),
        json!({"id": {"$in": []}}),
        json!({"id": {"$nin": []}}),
    ]
}

fn ids(sites: &[Site]) -> Vec<String> {
    sites.iter().map(|s| s.id.clone()).collect()
}

async fn suite(store: Arc<dyn Store>) {
    // Sites: ids and names are taken once.
    let sites = fleet();
    for s in &sites {
        assert_eq!(store.insert_site(s).await.unwrap(), Written::Done);
    }
    assert_eq!(
        store.insert_site(&sites[0]).await.unwrap(),
        Written::IdTaken
    );
    let twin = site("s-9", json!({"name": "shop-1", "nodes": ["z:1"]}));
    assert_eq!(
        store.insert_site(&twin).await.unwrap(),
        Written::NameTaken("s-1".into())
    );
    assert_eq!(store.count_sites().await.unwrap(), 4);
    let mut renamed = sites[1].clone();
    renamed.name = "shop-1".into();
    assert_eq!(
        store.update_site(&sites[1], &renamed).await.unwrap(),
        Written::NameTaken("s-1".into())
    );
    renamed.name = "shop-two".into();
    assert_eq!(
        store.update_site(&sites[1], &renamed).await.unwrap(),
        Written::Done
    );
    // An update from a stale read changes nothing.
    let mut stale = sites[1].clone();
    stale.labels.insert("tier".into(), "x".into());
    assert_eq!(
        store.update_site(&sites[1], &stale).await.unwrap(),
        Written::Changed
    );
    // The old name is free again.
    let takes_old = site("s-5", json!({"name": "shop-2", "nodes": ["z:1"]}));
    assert_eq!(store.insert_site(&takes_old).await.unwrap(), Written::Done);
    assert!(store.remove_site("s-5").await.unwrap());
    assert!(!store.remove_site("s-5").await.unwrap());
    assert_eq!(
        store.update_site(&takes_old, &takes_old).await.unwrap(),
        Written::Missing
    );
    let back = sites[1].clone();
    assert_eq!(
        store.update_site(&renamed, &back).await.unwrap(),
        Written::Done
    );
    assert_eq!(store.site("s-2").await.unwrap(), Some(sites[1].clone()));
    assert_eq!(store.site("s-5").await.unwrap(), None);
    assert_eq!(store.sites().await.unwrap(), sites);

    // Filters: the store's answer is the language's.
    for f in filters() {
        let filter = Filter::parse(&f).unwrap();
        let expected: Vec<String> = sites
            .iter()
            .filter(|s| filter.matches(&s.document()))
            .map(|s| s.id.clone())
            .collect();
        let got = ids(&store.query_sites(&filter).await.unwrap());
        assert_eq!(got, expected, "filter {f}");
    }

    // A rollout: a header and a record per site.
    let mut rollout = Rollout {
        id: "r-1".into(),
        application: "pos".into(),
        images: Vec::new(),
        selector: json!({"labels.region": "eu"}),
        max_parallel: 2,
        bandwidth: Some(1000),
        created_ms: 7,
        cancelled_ms: None,
        superseded_by: None,
        sites: Default::default(),
        pulling: None,
    };
    rollout.join(["s-1", "s-3", "s-4"]);
    store.put_rollout(&rollout).await.unwrap();
    rollout.start("s-3", 5);
    rollout.sent("s-3", 42);
    store
        .put_sites("r-1", &[("s-3".into(), Some(rollout.sites["s-3"].clone()))])
        .await
        .unwrap();
    assert_eq!(store.rollouts().await.unwrap(), vec![rollout.clone()]);
    rollout.forget("s-4");
    store.put_rollout(&rollout).await.unwrap();
    assert_eq!(store.rollouts().await.unwrap(), vec![rollout.clone()]);
    store
        .put_sites("r-1", &[("s-1".into(), None)])
        .await
        .unwrap();
    rollout.forget("s-1");
    assert_eq!(store.rollouts().await.unwrap(), vec![rollout.clone()]);

    // One rollout, its header alone, one site's progress.
    assert_eq!(store.rollout("r-1").await.unwrap(), Some(rollout.clone()));
    assert_eq!(store.rollout("r-2").await.unwrap(), None);
    rollout.cancel(9, None);
    store.put_rollout_header(&rollout).await.unwrap();
    let headers = store.rollout_headers().await.unwrap();
    assert_eq!(headers.len(), 1);
    assert!(headers[0].sites.is_empty() && headers[0].cancelled());
    let stored = store.rollout("r-1").await.unwrap().unwrap();
    assert!(stored.cancelled());
    assert_eq!(
        stored.sites["s-3"].bytes_done, 42,
        "a header write leaves the sites' records alone"
    );
    assert_eq!(
        store.site_progress("r-1", "s-3").await.unwrap(),
        Some(stored.sites["s-3"].clone())
    );
    assert_eq!(store.site_progress("r-1", "s-1").await.unwrap(), None);

    // Manifests, byte for byte.
    let body = b"{\"schemaVersion\":2,  \"x\":\"\\u00e9\"}\n\0";
    store.put_manifest("sha256:aa", body).await.unwrap();
    store.put_manifest("sha256:aa", body).await.unwrap();
    assert_eq!(store.manifest("sha256:aa").await.unwrap().unwrap(), body);
    assert_eq!(store.manifest("sha256:bb").await.unwrap(), None);
    assert_eq!(store.manifest_digests().await.unwrap(), vec!["sha256:aa"]);

    // API tokens: kept by the hash, names taken once.
    assert!(store.put_token("ops", "write", "h1").await.unwrap());
    assert!(!store.put_token("ops", "read", "h2").await.unwrap());
    assert!(store.put_token("wall", "read", "h3").await.unwrap());
    assert_eq!(
        store.token("h1").await.unwrap(),
        Some(("ops".into(), "write".into()))
    );
    assert_eq!(store.token("h2").await.unwrap(), None);
    assert!(store.revoke_token("wall").await.unwrap());
    assert!(!store.revoke_token("wall").await.unwrap());
    assert_eq!(store.token("h3").await.unwrap(), None);
    let names: Vec<String> = store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["ops"]);
}

/// Leases and the inventory's version, as replicas use them.
async fn leases(store: Arc<dyn Store>) {
    use std::time::Duration;
    let ttl = Duration::from_millis(300);
    assert!(store.claim("s-1", "a", ttl).await.unwrap());
    assert!(
        store.claim("s-1", "a", ttl).await.unwrap(),
        "its holder keeps it"
    );
    assert!(!store.claim("s-1", "b", ttl).await.unwrap());
    assert!(store.claim("pull:r-1", "b", ttl).await.unwrap());
    let mut live = store.leases().await.unwrap();
    live.sort();
    assert_eq!(
        live,
        [
            ("pull:r-1".to_owned(), "b".to_owned()),
            ("s-1".into(), "a".into())
        ]
    );
    let keys = ["s-1".to_owned(), "pull:r-1".to_owned()];
    assert_eq!(store.renew(&keys, "a", ttl).await.unwrap(), ["s-1"]);
    // Expired: anyone takes it, and its old holder can no longer renew it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.leases().await.unwrap().is_empty());
    assert!(store.renew(&keys, "a", ttl).await.unwrap().is_empty());
    assert!(store.claim("s-1", "b", ttl).await.unwrap());
    store.release(&["s-1".to_owned()], "a").await.unwrap();
    assert!(
        !store.claim("s-1", "a", ttl).await.unwrap(),
        "only its holder gives it back"
    );
    store.release(&["s-1".to_owned()], "b").await.unwrap();
    assert!(store.claim("s-1", "a", ttl).await.unwrap());

    let before = store.inventory_version().await.unwrap();
    let s = site("s-8", json!({"name": "lease-8", "nodes": ["q:1"]}));
    store.insert_site(&s).await.unwrap();
    let added = store.inventory_version().await.unwrap();
    assert_ne!(added, before);
    store.remove_site("s-8").await.unwrap();
    assert_ne!(store.inventory_version().await.unwrap(), added);
}

/// What the suite leaves, as any store reads it back.
async fn holds_what_the_suite_left(store: &dyn Store) {
    assert_eq!(
        ids(&store.sites().await.unwrap()),
        ["s-1", "s-2", "s-3", "s-4"]
    );
    let rollouts = store.rollouts().await.unwrap();
    assert_eq!(rollouts.len(), 1);
    assert_eq!(rollouts[0].sites.keys().collect::<Vec<_>>(), ["s-3"]);
    assert_eq!(rollouts[0].sites["s-3"].bytes_done, 42);
    assert!(store.manifest("sha256:aa").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_keeps_the_contract_and_its_records_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    suite(store.clone()).await;
    leases(store).await;
    let store = SledStore::open(dir.path()).unwrap();
    holds_what_the_suite_left(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_keeps_the_same_contract_and_its_schema_is_migrated_once() {
    let Some(url) = postgres::database() else {
        return;
    };
    let store = Arc::new(PgStore::connect(&url, None).await.unwrap());
    suite(store.clone()).await;
    leases(store).await;
    // A second connection (another replica) migrates nothing and reads the same.
    let store = PgStore::connect(&url, None).await.unwrap();
    holds_what_the_suite_left(&store).await;
    let versions = postgres::psql(&url, "SELECT version FROM towerd_migrations ORDER BY 1");
    assert_eq!(
        versions.split_whitespace().collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    // Filters are answered from the index, not by reading every site.
    let plan = postgres::psql(
        &url,
        "SET enable_seqscan = off; EXPLAIN SELECT record FROM sites WHERE record @> '{\"labels\":{\"region\":\"eu\"}}'",
    );
    assert!(plan.contains("sites_record"), "{plan}");
    // A schema newer than this towerd knows is refused.
    postgres::psql(
        &url,
        "INSERT INTO towerd_migrations (version, description) VALUES (999, 'from the future')",
    );
    let refused = PgStore::connect(&url, None).await.err().expect("refused");
    assert!(
        refused
            .to_string()
            .contains("version 999, newer than this towerd knows"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_copies_every_record_into_an_empty_database_only() {
    let Some(url) = postgres::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    suite(sled.clone()).await;
    let pg = PgStore::connect(&url, None).await.unwrap();
    let copied = copy_all(sled.as_ref(), &pg).await.unwrap();
    assert_eq!(
        (
            copied.sites,
            copied.rollouts,
            copied.manifests,
            copied.tokens
        ),
        (4, 1, 1, 1)
    );
    assert_eq!(pg.tokens().await.unwrap(), sled.tokens().await.unwrap());
    holds_what_the_suite_left(&pg).await;
    assert_eq!(pg.rollouts().await.unwrap(), sled.rollouts().await.unwrap());
    assert_eq!(pg.sites().await.unwrap(), sled.sites().await.unwrap());
    let again = copy_all(sled.as_ref(), &pg).await.unwrap_err();
    assert!(again.to_string().contains("empty database"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_is_reached_over_tls_when_a_ca_is_given() {
    let Some(url) = postgres::database() else {
        return;
    };
    let Some(ca) = postgres::ca() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "openssl is required under CI=true"
        );
        return;
    };
    let store = PgStore::connect(&url, Some(&ca)).await.unwrap();
    store.put_manifest("sha256:tls", b"{}").await.unwrap();
    // Every connection of the store's pool is encrypted.
    let ours = postgres::psql(
        &url,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND s.ssl",
    );
    assert!(ours.trim().parse::<u32>().unwrap() >= 1, "{ours}");
    // Another CA's certificate is refused: nothing is reached.
    let other = std::env::temp_dir().join(format!("other-ca-{}.pem", std::process::id()));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
            "-keyout",
            "/dev/null",
            "-out",
        ])
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success());
    let refused = PgStore::connect(&url, Some(&other))
        .await
        .err()
        .expect("refused");
    let _ = std::fs::remove_file(&other);
    assert!(
        refused.to_string().contains("cannot reach the database"),
        "{refused}"
    );
    // sslmode=require without a CA says what to give.
    let url_require = format!("{url}?sslmode=require");
    let e = PgStore::connect(&url_require, None)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("--database-ca"), "{e}");
}
