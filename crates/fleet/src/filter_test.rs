use crate::filter::{merge_patch, Filter};
use serde_json::{json, Value};

fn shop(id: &str, region: &str, nodes: &[&str]) -> Value {
    json!({
        "id": id,
        "name": format!("shop-{id}"),
        "nodes": nodes,
        "labels": {"region": region},
        "metadata": {"owner": {"team": "ops"}, "tier": 2}
    })
}

fn matching(filter: Value, docs: &[Value]) -> Vec<String> {
    let f = Filter::parse(&filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    docs.iter()
        .filter(|d| f.matches(d))
        .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn fleet() -> Vec<Value> {
    vec![
        shop("a", "eu", &["10.0.0.1:50051"]),
        shop("b", "us", &["10.0.0.2:50051", "10.0.0.3:50051"]),
        shop("c", "eu", &["10.0.0.4:50051"]),
        json!({"id": "d", "name": "bare", "nodes": ["10.0.0.9:1"], "labels": {}, "metadata": {}}),
    ]
}

#[test]
fn equality_in_and_exists() {
    let docs = fleet();
    assert_eq!(matching(json!({}), &docs), ["a", "b", "c", "d"]);
    assert_eq!(matching(json!({"labels.region": "eu"}), &docs), ["a", "c"]);
    assert_eq!(
        matching(json!({"labels.region": {"$eq": "us"}}), &docs),
        ["b"]
    );
    assert_eq!(
        matching(json!({"labels.region": {"$in": ["eu", "us"]}}), &docs),
        ["a", "b", "c"]
    );
    assert_eq!(
        matching(json!({"labels.region": {"$nin": ["eu"]}}), &docs),
        ["b", "d"]
    );
    assert_eq!(
        matching(json!({"labels.region": {"$ne": "eu"}}), &docs),
        ["b", "d"]
    );
    assert_eq!(
        matching(json!({"labels.region": {"$exists": false}}), &docs),
        ["d"]
    );
    assert_eq!(
        matching(json!({"metadata.owner.team": "ops"}), &docs),
        ["a", "b", "c"]
    );
    assert_eq!(
        matching(json!({"metadata.tier": 2}), &docs),
        ["a", "b", "c"]
    );
    assert_eq!(matching(json!({"name": "bare"}), &docs), ["d"]);
}

#[test]
fn an_array_field_equals_what_it_holds() {
    let docs = fleet();
    assert_eq!(matching(json!({"nodes": "10.0.0.3:50051"}), &docs), ["b"]);
    assert_eq!(
        matching(
            json!({"nodes": {"$in": ["10.0.0.1:50051", "10.0.0.4:50051"]}}),
            &docs
        ),
        ["a", "c"]
    );
}

#[test]
fn and_or_and_implicit_and() {
    let docs = fleet();
    assert_eq!(
        matching(
            json!({"$or": [{"id": "a"}, {"labels.region": "us"}], "metadata.tier": 2}),
            &docs
        ),
        ["a", "b"]
    );
    assert_eq!(
        matching(
            json!({"$and": [{"labels.region": "eu"}, {"id": {"$ne": "a"}}]}),
            &docs
        ),
        ["c"]
    );
    assert_eq!(
        matching(
            json!({"labels.region": {"$exists": true, "$ne": "us"}}),
            &docs
        ),
        ["a", "c"]
    );
}

#[test]
fn what_the_language_lacks_is_refused() {
    for bad in [
        json!([]),
        json!("eu"),
        json!({"labels.region": {"$regex": "e.*"}}),
        json!({"$not": {"id": "a"}}),
        json!({"$or": []}),
        json!({"$or": {"id": "a"}}),
        json!({"$and": ["x"]}),
        json!({"region": "eu"}),
        json!({"labels.region.x": "eu"}),
        json!({"name.first": "x"}),
        json!({"labels..region": "eu"}),
        json!({"labels.region": {"$in": "eu"}}),
        json!({"labels.region": {"$exists": 1}}),
        json!({"labels.region": {"$eq": "eu", "x": 1}}),
    ] {
        let e = Filter::parse(&bad).expect_err(&bad.to_string());
        assert_eq!(e.code, "BAD_FILTER", "{bad}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn deep_or_wide_filters_are_refused_not_recursed() {
    let mut deep = json!({"id": "a"});
    for _ in 0..100 {
        deep = json!({"$or": [deep]});
    }
    assert_eq!(Filter::parse(&deep).unwrap_err().code, "BAD_FILTER");
    let wide: Vec<Value> = (0..2000).map(|i| json!({"id": i.to_string()})).collect();
    assert_eq!(
        Filter::parse(&json!({"$or": wide})).unwrap_err().code,
        "BAD_FILTER"
    );
}

#[test]
fn merge_patch_follows_rfc_7386() {
    let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "n": [1, 2]});
    merge_patch(
        &mut doc,
        &json!({"a": "z", "c": {"f": null}, "n": [3], "new": {"x": 1}}),
    );
    assert_eq!(
        doc,
        json!({"a": "z", "c": {"d": "e"}, "n": [3], "new": {"x": 1}})
    );
}

#[test]
fn numbers_compare_as_numbers_and_limits_count_literals() {
    let doc = json!({"metadata": {"n": 3, "list": [1, 2.5]}});
    assert!(Filter::parse(&json!({"metadata.n": 3.0}))
        .unwrap()
        .matches(&doc));
    assert!(!Filter::parse(&json!({"metadata.n": {"$ne": 3.0}}))
        .unwrap()
        .matches(&doc));
    assert!(Filter::parse(&json!({"metadata.list": [1.0, 2.5]}))
        .unwrap()
        .matches(&doc));
    let many: Vec<u32> = (0..1000).collect();
    let e = Filter::parse(&json!({"id": {"$in": many}})).unwrap_err();
    assert_eq!(e.code, "BAD_FILTER");
    let e = Filter::parse(&json!({"name": "a\u{0}b"})).unwrap_err();
    assert!(e.message.contains("NUL"), "{e}");
}
