//! The tower's status page in headless Chromium (Debian's `chromium`): the page lists the
//! sites with their health and each rollout's progress, refreshed by its own script. The
//! screenshot is kept in `target/tmp/tower-status-page.png`.

mod kit;

use kit::oci::{self, upload};
use kit::tools::{require, run};
use kit::tower::Towerd;
use kit::upstream::ReferenceRegistry;
use kit::{Node, NodeOptions};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Chromium, headless, on its own profile, with none of its background connections.
fn chromium(profile: &Path) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        // Long enough for the script's fetches, health included, and its first render.
        "--virtual-time-budget=15000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .env("HOME", profile);
    cmd
}

#[test]
fn the_status_page_shows_sites_health_and_rollout_progress() {
    let (Some(registry), Some(_), Some(_)) = (
        require("docker-registry"),
        require("skopeo"),
        require("chromium"),
    ) else {
        return;
    };
    let up = ReferenceRegistry::start(&registry);
    let upstream = up.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let img = oci::image(91, &[128 << 10], "amd64");
    upload(work.path(), &img, &format!("{upstream}/team/menu:v1"), None);
    let tower = Towerd::start(&["--insecure-registry", &upstream]);
    let nodes = [
        Node::start(NodeOptions::default()),
        Node::start(NodeOptions::default()),
    ];
    for (i, node) in nodes.iter().enumerate() {
        tower.expect(
            "POST",
            "/sites",
            Some(&json!({"id": format!("cafe-{i}"), "name": format!("Cafe {i}"), "nodes": [node.api.to_string()], "labels": {"region": "eu", "kind": "cafe"}})),
            201,
        );
    }
    let created = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({"application": "menu", "images": [format!("{upstream}/team/menu:v1")], "selector": {"labels.kind": "cafe"}})),
        201,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    tower.wait_for(
        &format!("/rollouts/{id}"),
        Duration::from_secs(60),
        "the rollout complete",
        |r| r["status"] == "complete",
    );

    // A second application, still on its way to a third site (32 KiB/s for 1 MiB).
    let slow = Node::start(NodeOptions::default());
    tower.expect(
        "POST",
        "/sites",
        Some(&json!({"id": "kiosk-9", "name": "Kiosk 9", "nodes": [slow.api.to_string()], "labels": {"kind": "kiosk"}})),
        201,
    );
    let promo = oci::image(92, &[1 << 20], "amd64");
    upload(
        work.path(),
        &promo,
        &format!("{upstream}/team/promo:v1"),
        None,
    );
    let running = tower.expect(
        "POST",
        "/rollouts",
        Some(&json!({"application": "promo", "images": [format!("{upstream}/team/promo:v1")], "selector": {"labels.kind": "kiosk"}, "bandwidth_bytes_per_second": 32 << 10})),
        201,
    );
    let running = running["id"].as_str().unwrap().to_owned();
    tower.wait_for(
        &format!("/rollouts/{running}"),
        Duration::from_secs(30),
        "the kiosk being delivered to",
        |r| r["totals"]["delivering"] == 1 && r["totals"]["bytes_done"].as_u64() > Some(0),
    );

    let url = format!("http://{}/", tower.addr);
    let profile = tempfile::tempdir().unwrap();
    let dom = run(chromium(profile.path()).arg("--dump-dom").arg(&url));
    for site in [
        "Cafe 0",
        "Cafe 1",
        "cafe-0",
        "cafe-1",
        "kind=cafe",
        "Kiosk 9",
    ] {
        assert!(dom.contains(site), "{site} on the page:\n{dom}");
    }
    assert_eq!(
        dom.matches(r#"<span class="verdict healthy">healthy</span>"#)
            .count(),
        3,
        "every site healthy:\n{dom}"
    );
    assert!(dom.contains(&format!(r#"data-rollout="{id}""#)), "{dom}");
    assert!(dom.contains("2/2 scheduled"), "{dom}");
    assert!(
        dom.contains(r#"<span class="count" data-state="scheduled">2/2</span>"#),
        "the menu's scheduled bar is full:\n{dom}"
    );
    assert!(
        dom.contains(r#"<span class="count" data-state="failed">0/2</span>"#),
        "{dom}"
    );
    assert!(dom.contains("3 sites, 2 rollouts; updated"), "{dom}");
    assert!(
        dom.contains(&format!(r#"data-rollout="{running}""#)),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<span class="count" data-state="delivering">1/1</span>"#),
        "the kiosk's rollout shows a site delivering:\n{dom}"
    );
    // The page read the API again by itself (every 2 s of the 15 s it was given).
    let refreshes: u32 = dom
        .split(r#"data-refreshes=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a refresh count:\n{dom}"));
    assert!(refreshes >= 3, "{refreshes} refreshes");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tower-status-page.png");
    let _ = std::fs::remove_file(&shot);
    run(chromium(profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,800")
        .arg(&url));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 10_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

/// A tower with users: the page asks for a token (its API calls are refused without),
/// and shows the fleet with the token given in its fragment, which no server sees.
#[test]
fn the_status_page_takes_a_token() {
    let Some(_) = require("chromium") else {
        return;
    };
    let mut tower = Towerd::start(&[]);
    assert!(tower.terminate().success());
    let reader = tower.create_token("wallboard", "read");
    let writer = tower.create_token("ops", "write");
    tower.restart();
    let site = json!({"name": "Harbour 3", "nodes": ["127.0.0.1:9"], "labels": {"kind": "ship"}});
    let r = tower.call_as(Some(&writer), "POST", "/sites", Some(&site));
    assert_eq!(r.status, 201);

    let url = format!("http://{}/", tower.addr);
    let profile = tempfile::tempdir().unwrap();
    let without = run(chromium(profile.path()).arg("--dump-dom").arg(&url));
    assert!(!without.contains("Harbour 3"), "{without}");
    assert!(
        without.contains(r#"<form id="login">"#),
        "the token asked for:\n{without}"
    );
    let profile = tempfile::tempdir().unwrap();
    let with = run(chromium(profile.path())
        .arg("--dump-dom")
        .arg(format!("{url}#token={reader}")));
    assert!(with.contains("Harbour 3"), "{with}");
    assert!(with.contains(r#"<form id="login" hidden="">"#), "{with}");
    assert!(!tower.log().contains(&reader), "the token reached the log");
}
