//! The tower's API answers as its own OpenAPI document says: every route is exercised
//! (answers and refusals), and each live answer's status is documented for its route and
//! its JSON matches the documented schema, with no undocumented field.

mod kit;

use kit::fleet::Upstream;
use kit::openapi::Spec;
use kit::tower::{Backend, Towerd};
use kit::{Node, NodeOptions};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

struct Checked<'a> {
    tower: &'a Towerd,
    spec: Spec,
    seen: BTreeSet<(String, String)>,
}

impl Checked<'_> {
    /// `METHOD path` that must answer `status`, its answer checked against the document.
    fn call(&mut self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
        let r = self.tower.call(method, path, body);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, status, "{method} {path}: {text}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        let answer: Value = serde_json::from_slice(&r.body).expect("JSON");
        if let Err(e) = self.spec.check(method, path, status, &answer) {
            panic!("{e}\n{answer:#}");
        }
        let template = self
            .spec
            .operations()
            .into_iter()
            .filter(|(m, t)| {
                m == method
                    && t.split('/').count() == path.split('/').count()
                    && t.split('/')
                        .zip(path.split('/'))
                        .all(|(t, p)| t.starts_with('{') || t == p)
            })
            .max_by_key(|(_, t)| !t.contains('{'))
            .expect("a documented operation");
        self.seen.insert(template);
        answer
    }
}

fn every_answer_matches_the_document(backend: Backend) {
    let Some(up) = Upstream::start() else {
        return;
    };
    let img = kit::oci::image(95, &[64 << 10], "amd64");
    up.put(&img, "team/menu:v1");
    let Some(tower) = Towerd::start_on(backend, &["--insecure-registry", &up.addr]) else {
        return;
    };
    let doc = tower.expect("GET", "/openapi.json", None, 200);
    let mut api = Checked {
        tower: &tower,
        spec: Spec::new(doc.clone()),
        seen: BTreeSet::new(),
    };
    api.call("GET", "/openapi.json", None, 200);
    let node = Node::start(NodeOptions::default());

    // The inventory.
    let site = api.call(
        "POST",
        "/sites",
        Some(&json!({"name": "cafe-1", "nodes": [node.api.to_string()], "labels": {"region": "eu"}, "metadata": {"floor": 2}})),
        201,
    );
    let id = site["id"].as_str().unwrap().to_owned();
    api.call(
        "POST",
        "/sites",
        Some(&json!({"name": "cafe-1", "nodes": ["127.0.0.1:9"]})),
        409,
    );
    api.call(
        "POST",
        "/sites",
        Some(&json!({"name": "x", "nodes": []})),
        400,
    );
    api.call(
        "POST",
        "/sites",
        Some(&json!({"name": "x", "nodez": []})),
        400,
    );
    api.call("GET", "/sites", None, 200);
    api.call(
        "POST",
        "/sites/query",
        Some(&json!({"filter": {"labels.region": "eu"}})),
        200,
    );
    api.call(
        "POST",
        "/sites/query",
        Some(&json!({"filter": {"$nope": 1}})),
        400,
    );
    api.call("GET", &format!("/sites/{id}"), None, 200);
    api.call("GET", "/sites/none", None, 404);
    api.call(
        "PUT",
        &format!("/sites/{id}"),
        Some(&json!({"labels": {"tier": "gold"}})),
        200,
    );
    api.call("PUT", "/sites/none", Some(&json!({})), 404);
    api.call("GET", &format!("/sites/{id}/health"), None, 200);
    api.call("GET", "/sites/none/health", None, 404);

    // Rollouts.
    let created = api.call(
        "POST",
        "/rollouts",
        Some(&json!({"application": "menu", "images": [format!("{}/team/menu:v1", up.addr)], "selector": {}})),
        201,
    );
    let rid = created["id"].as_str().unwrap().to_owned();
    api.call(
        "POST",
        "/rollouts",
        Some(&json!({"application": "menu", "images": [format!("{}/team/none:v1", up.addr)], "selector": {}})),
        422,
    );
    api.call(
        "POST",
        "/rollouts",
        Some(
            &json!({"application": "menu", "images": ["x"], "selector": {"labels.region": "mars"}}),
        ),
        400,
    );
    tower.wait_for(
        &format!("/rollouts/{rid}"),
        Duration::from_secs(60),
        "complete",
        |r| r["status"] == "complete",
    );
    api.call("GET", &format!("/rollouts/{rid}"), None, 200);
    api.call("GET", "/rollouts", None, 200);
    api.call("GET", "/rollouts/none", None, 404);
    api.call("DELETE", &format!("/rollouts/{rid}"), None, 200);
    api.call("DELETE", "/rollouts/none", None, 404);
    api.call("DELETE", &format!("/sites/{id}"), None, 200);
    api.call("DELETE", &format!("/sites/{id}"), None, 404);

    // Every documented operation was exercised, and every route of the API is documented.
    let documented: BTreeSet<(String, String)> = api.spec.operations().into_iter().collect();
    assert_eq!(api.seen, documented);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[test]
fn every_answer_matches_the_document_on_the_embedded_store() {
    every_answer_matches_the_document(Backend::Embedded);
}

#[test]
fn every_answer_matches_the_document_on_postgresql() {
    every_answer_matches_the_document(Backend::Postgres);
}

/// The validator itself refuses what the document does not say.
#[test]
fn an_answer_the_document_does_not_describe_is_refused() {
    let doc = json!({
        "openapi": "3.1.0",
        "paths": {"/things/{id}": {"get": {"responses": {"200": {"description": "a thing",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}}}},
        "components": {"schemas": {"Thing": {"type": "object", "required": ["n"],
            "properties": {"n": {"type": "integer", "minimum": 0}, "tag": {"type": ["string", "null"]}}}}}
    });
    let spec = Spec::new(doc);
    assert!(spec
        .check("GET", "/things/1", 200, &json!({"n": 1, "tag": null}))
        .is_ok());
    for (status, body) in [
        (200, json!({"n": -1})),
        (200, json!({"tag": "x"})),
        (200, json!({"n": 1, "extra": true})),
        (200, json!({"n": "1"})),
        (404, json!({"n": 1})),
    ] {
        assert!(
            spec.check("GET", "/things/1", status, &body).is_err(),
            "{status} {body}"
        );
    }
    assert!(spec
        .check("POST", "/things/1", 200, &json!({"n": 1}))
        .is_err());
}
