use crate::site::{check_unique, Site};
use serde_json::json;

fn body() -> serde_json::Value {
    json!({
        "name": "shop-17",
        "nodes": ["10.0.0.5:50051", "10.0.0.6:50051"],
        "labels": {"region": "eu"},
        "metadata": {"owner": "ops"}
    })
}

#[test]
fn a_body_makes_a_site_with_the_generated_id_unless_given() {
    let site = Site::create(&body(), "s-0123").unwrap();
    assert_eq!(site.id, "s-0123");
    assert_eq!(site.nodes.len(), 2);
    assert_eq!(site.labels["region"], "eu");
    let mut given = body();
    given["id"] = json!("shop-17");
    assert_eq!(Site::create(&given, "s-0123").unwrap().id, "shop-17");
    let doc = site.document();
    assert_eq!(doc["metadata"]["owner"], "ops");
    assert_eq!(doc["labels"]["region"], "eu");
}

#[test]
fn bad_bodies_are_refused() {
    let cases = [
        json!([]),
        json!({"nodes": ["10.0.0.5:50051"]}),
        json!({"name": "", "nodes": ["10.0.0.5:50051"]}),
        json!({"name": "x", "nodes": []}),
        json!({"name": "x", "nodes": ["10.0.0.5"]}),
        json!({"name": "x", "nodes": ["10.0.0.5:0"]}),
        json!({"name": "x", "nodes": ["10.0.0.5:99999"]}),
        json!({"name": "x", "nodes": ["http://a:1"]}),
        json!({"name": "x", "nodes": ["a:1"], "labels": {"re.gion": "eu"}}),
        json!({"name": "x", "nodes": ["a:1"], "labels": {"region": 1}}),
        json!({"name": "x", "nodes": ["a:1"], "metadata": []}),
        json!({"name": "x", "nodes": ["a:1"], "colour": "red"}),
        json!({"name": "x", "nodes": ["a:1"], "id": "Has Space"}),
        json!({"name": "x", "nodes": ["a:1"], "id": "../etc"}),
        json!({"name": "x", "nodes": ["a:1"], "tls": {"ca_pem": "nope"}}),
        json!({"name": "x", "nodes": ["a:1"], "tls": {"ca_pem": "-----BEGIN CERTIFICATE-----", "cert_pem": "-----BEGIN CERTIFICATE-----"}}),
    ];
    for case in cases {
        let e = Site::create(&case, "s-1").expect_err(&case.to_string());
        assert_eq!(e.code, "BAD_REQUEST", "{case}");
    }
    assert!(Site::create(&json!({"name": "x", "nodes": ["[::1]:50051"]}), "s-1").is_ok());
}

#[test]
fn an_update_is_a_merge_patch() {
    let site = Site::create(&body(), "s-1").unwrap();
    let changed = site
        .patched(&json!({"labels": {"tier": "gold", "region": null}, "nodes": ["10.0.0.7:1"]}))
        .unwrap();
    assert_eq!(changed.nodes, ["10.0.0.7:1"]);
    assert_eq!(changed.labels.len(), 1);
    assert_eq!(changed.labels["tier"], "gold");
    assert_eq!(changed.metadata, site.metadata);
    assert_eq!(changed.name, site.name);
    assert_eq!(
        site.patched(&json!({"id": "other"})).unwrap_err().code,
        "BAD_REQUEST"
    );
    assert_eq!(
        site.patched(&json!({"nodes": []})).unwrap_err().code,
        "BAD_REQUEST"
    );
    assert_eq!(site.patched(&json!("x")).unwrap_err().code, "BAD_REQUEST");
}

#[test]
fn the_private_key_is_never_shown() {
    let mut b = body();
    b["tls"] = json!({
        "ca_pem": "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n",
        "cert_pem": "-----BEGIN CERTIFICATE-----\nBB\n-----END CERTIFICATE-----\n",
        "key_pem": "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n"
    });
    let site = Site::create(&b, "s-1").unwrap();
    let shown = site.document().to_string();
    assert!(!shown.contains("SECRET"), "{shown}");
    let debugged = format!("{site:?}");
    assert!(!debugged.contains("SECRET"), "{debugged}");
    assert!(shown.contains("\"client_key\":true"), "{shown}");
}

#[test]
fn names_are_unique() {
    let a = Site::create(&body(), "a").unwrap();
    let b = Site::create(&body(), "b").unwrap();
    assert_eq!(check_unique(&b, [&a]).unwrap_err().code, "CONFLICT");
    assert!(check_unique(&a, [&a]).is_ok());
}
