//! `towerctl sites ...` and `towerctl rollout ...`: the tower service's JSON API, printed
//! as tables for people or as the API's JSON (`--json`) for scripts.

use crate::exit::{chain, one_line, Error};
use crate::fleet_cli::{AddSite, CreateRollout, RolloutAction, SitesAction, TowerArg};
use crate::output::{human_bytes, line, table, unix_time};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// A client of the tower service.
pub struct Tower {
    http: reqwest::Client,
    base: String,
    json: bool,
    token: Option<String>,
}

impl Tower {
    /// A client of the service `arg` names.
    pub fn new(arg: &TowerArg) -> Result<Tower, Error> {
        let base = arg.tower.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Usage(format!(
                "--tower {base:?}: a URL, http://HOST:PORT or https://HOST:PORT"
            )));
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300));
        if let Some(path) = &arg.tower_ca {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Usage(format!("--tower-ca {}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Usage(format!("--tower-ca {}: {e}", path.display())))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| Error::Other(format!("HTTP client: {}", chain(&e))))?;
        Ok(Tower {
            http,
            base,
            json: arg.json,
            token: arg.token.clone().filter(|t| !t.is_empty()),
        })
    }

    /// `METHOD path` with an optional JSON body; the answer's JSON, or the API's error.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| Error::Other(e.to_string()))?;
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::TowerUnreachable(format!("{url}: {}", chain(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::TowerUnreachable(format!("{url}: {}", chain(&e))))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            Error::Other(format!(
                "{url} answered {status} with: {}",
                one_line(&String::from_utf8_lossy(&bytes))
            ))
        })?;
        if status.is_success() {
            return Ok(value);
        }
        let error = &value["error"];
        Err(Error::TowerRefused(format!(
            "{}: {}",
            error["code"].as_str().unwrap_or("UNKNOWN"),
            one_line(error["message"].as_str().unwrap_or_default())
        )))
    }

    /// Prints `value` as JSON with `--json`, else as `table` renders it.
    fn print(&self, value: &Value, table: impl FnOnce(&Value) -> Vec<String>) -> Result<(), Error> {
        if self.json {
            return line(value);
        }
        for l in table(value) {
            line(l)?;
        }
        Ok(())
    }
}

/// Runs a `sites` command.
pub async fn sites(arg: &TowerArg, action: SitesAction) -> Result<(), Error> {
    let tower = Tower::new(arg)?;
    match action {
        SitesAction::Add(add) => {
            let site = tower
                .call("POST", "/sites", Some(&site_body(&add)?))
                .await?;
            tower.print(&site, |s| site_rows(std::slice::from_ref(s)))
        }
        SitesAction::List => {
            let listing = tower.call("GET", "/sites", None).await?;
            tower.print(&listing, |l| site_rows(items(&l["sites"])))
        }
        SitesAction::Query { filter } => {
            let filter: Value = serde_json::from_str(&filter)
                .map_err(|e| Error::Usage(format!("FILTER is not JSON: {e}")))?;
            let listing = tower
                .call("POST", "/sites/query", Some(&json!({ "filter": filter })))
                .await?;
            tower.print(&listing, |l| site_rows(items(&l["sites"])))
        }
        SitesAction::Health { id } => {
            let health = tower
                .call("GET", &format!("/sites/{id}/health"), None)
                .await?;
            tower.print(&health, health_rows)
        }
        SitesAction::Remove { id } => {
            let site = tower.call("DELETE", &format!("/sites/{id}"), None).await?;
            tower.print(&site, |s| {
                vec![format!(
                    "removed site {} ({})",
                    text(&s["id"]),
                    text(&s["name"])
                )]
            })
        }
    }
}

fn site_body(add: &AddSite) -> Result<Value, Error> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("{flag} {}: {e}", path.display())))
    };
    let labels: Map<String, Value> = add
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let metadata: Map<String, Value> = add
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut body =
        json!({"name": add.name, "nodes": add.nodes, "labels": labels, "metadata": metadata});
    if let Some(id) = &add.id {
        body["id"] = json!(id);
    }
    if let Some(ca) = &add.tls_ca {
        let mut tls = json!({"ca_pem": read("--tls-ca", ca)?});
        if let (Some(cert), Some(key)) = (&add.tls_cert, &add.tls_key) {
            tls["cert_pem"] = json!(read("--tls-cert", cert)?);
            tls["key_pem"] = json!(read("--tls-key", key)?);
        }
        body["tls"] = tls;
    }
    Ok(body)
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn pairs(v: &Value) -> String {
    let joined: Vec<String> = v
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
        .unwrap_or_default();
    if joined.is_empty() {
        "-".to_owned()
    } else {
        joined.join(",")
    }
}

fn site_rows(sites: &[Value]) -> Vec<String> {
    let mut rows = vec![vec![
        "ID".into(),
        "NAME".into(),
        "NODES".into(),
        "LABELS".into(),
    ]];
    for s in sites {
        let nodes: Vec<String> = items(&s["nodes"]).iter().map(text).collect();
        rows.push(vec![
            text(&s["id"]),
            text(&s["name"]),
            nodes.join(","),
            pairs(&s["labels"]),
        ]);
    }
    table(&rows)
}

fn health_rows(h: &Value) -> Vec<String> {
    let mut rows = vec![vec![
        "NODE".into(),
        "REACHABLE".into(),
        "LEADER".into(),
        "DISK FREE".into(),
        "APPLY LAG".into(),
        "BLOBS MISSING".into(),
        "VERSION".into(),
        "PROBLEM".into(),
    ]];
    for n in items(&h["nodes"]) {
        let problem = [text(&n["failure"]), text(&n["error"])]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        rows.push(vec![
            text(&n["address"]),
            text(&n["reachable"]),
            text(&n["leader"]),
            n["disk_free_bytes"]
                .as_u64()
                .map_or("-".into(), human_bytes),
            text(&n["apply_lag"]),
            text(&n["blobs_missing"]),
            text(&n["version"]),
            problem,
        ]);
    }
    let mut out = vec![format!(
        "site {} ({}): {}",
        text(&h["site_id"]),
        text(&h["name"]),
        text(&h["verdict"])
    )];
    out.extend(table(&rows));
    out
}

/// Runs a `rollout` command.
pub async fn rollout(arg: &TowerArg, action: RolloutAction) -> Result<(), Error> {
    let tower = Tower::new(arg)?;
    match action {
        RolloutAction::Create(create) => {
            let body = rollout_body(&create)?;
            let r = tower.call("POST", "/rollouts", Some(&body)).await?;
            if create.watch {
                crate::fleet_watch::watch(&tower, &text(&r["id"])).await
            } else {
                tower.print(&r, rollout_rows)
            }
        }
        RolloutAction::Status { id, watch: true } => crate::fleet_watch::watch(&tower, &id).await,
        RolloutAction::Status { id, watch: false } => {
            let r = tower.call("GET", &format!("/rollouts/{id}"), None).await?;
            tower.print(&r, rollout_rows)
        }
        RolloutAction::Cancel { id } => {
            let r = tower
                .call("DELETE", &format!("/rollouts/{id}"), None)
                .await?;
            tower.print(&r, |r| {
                vec![format!(
                    "cancelled rollout {}; sites keep what they hold",
                    text(&r["id"])
                )]
            })
        }
        RolloutAction::List => {
            let l = tower.call("GET", "/rollouts", None).await?;
            tower.print(&l, |l| {
                let mut rows = vec![vec![
                    "ID".into(),
                    "APPLICATION".into(),
                    "STATUS".into(),
                    "SCHEDULED".into(),
                    "FAILED".into(),
                    "CREATED".into(),
                ]];
                for r in items(&l["rollouts"]) {
                    let t = &r["totals"];
                    rows.push(vec![
                        text(&r["id"]),
                        text(&r["application"]),
                        text(&r["status"]),
                        format!("{}/{}", text(&t["scheduled"]), text(&t["selected"])),
                        text(&t["failed"]),
                        unix_time(r["created_unix"].as_u64().unwrap_or(0)),
                    ]);
                }
                table(&rows)
            })
        }
    }
}

fn rollout_body(create: &CreateRollout) -> Result<Value, Error> {
    let selector: Value = serde_json::from_str(&create.selector)
        .map_err(|e| Error::Usage(format!("--selector is not JSON: {e}")))?;
    let mut body = json!({
        "application": create.application,
        "images": create.images,
        "selector": selector,
    });
    if let Some(n) = create.max_parallel {
        body["max_parallel"] = json!(n);
    }
    if let Some(b) = create.bandwidth {
        body["bandwidth_bytes_per_second"] = json!(b);
    }
    Ok(body)
}

/// The totals of a rollout on one line.
pub fn totals_line(r: &Value) -> String {
    let t = &r["totals"];
    let eta = t["eta_seconds"]
        .as_u64()
        .map_or("unknown".to_owned(), |s| format!("{s} s"));
    // Its images not all in the tower's registry yet: why, after a failed attempt.
    let pulling = match r["pulling"]["reason"].as_str() {
        Some(reason) if !reason.is_empty() => format!(
            " (images: {reason}, {} attempts)",
            r["pulling"]["retries"].as_u64().unwrap_or(0)
        ),
        _ => String::new(),
    };
    format!(
        "{}{pulling}: {}/{} scheduled; waiting {}, delivering {}, present {}, failed {}; sent {}, left {}, eta {eta}",
        text(&r["status"]),
        text(&t["scheduled"]),
        text(&t["selected"]),
        text(&t["waiting"]),
        text(&t["delivering"]),
        text(&t["present"]),
        text(&t["failed"]),
        human_bytes(t["bytes_done"].as_u64().unwrap_or(0)),
        human_bytes(t["bytes_left"].as_u64().unwrap_or(0)),
    )
}

fn rollout_rows(r: &Value) -> Vec<String> {
    let mut out = vec![
        format!("rollout {} of {}", text(&r["id"]), text(&r["application"])),
        format!(
            "images: {}",
            items(&r["images"])
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        totals_line(r),
    ];
    let mut rows = vec![vec![
        "SITE".into(),
        "STATE".into(),
        "SENT".into(),
        "RETRIES".into(),
        "REASON".into(),
    ]];
    for s in items(&r["sites"]) {
        rows.push(vec![
            text(&s["site_id"]),
            text(&s["state"]),
            human_bytes(s["bytes_done"].as_u64().unwrap_or(0)),
            text(&s["retries"]),
            text(&s["reason"]),
        ]);
    }
    out.extend(table(&rows));
    out
}
