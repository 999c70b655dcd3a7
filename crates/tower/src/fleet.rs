//! `towerctl sites ...` and `towerctl rollout ...`: the tower service's JSON API, printed
//! as tables for people or as the API's JSON (`--json`) for scripts.

use crate::exit::{chain, one_line, Error};
use crate::fleet_cli::{AddSite, CreateRollout, RolloutAction, SitesAction, TowerArg};
use crate::output::{human_bytes, line, table, unix_time};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use site_fleet_api::{
    ErrorBody, NewRollout, NewSite, NewTls, RolloutListing, RolloutSummary, RolloutView,
    SiteHealth, SiteListing, SiteQuery, SiteView,
};
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
        if !status.is_success() {
            let refusal: ErrorBody = serde_json::from_slice(&bytes).map_err(|_| {
                Error::Other(format!(
                    "{url} answered {status} with: {}",
                    one_line(&String::from_utf8_lossy(&bytes))
                ))
            })?;
            return Err(Error::TowerRefused(format!(
                "{}: {}",
                refusal.error.code,
                one_line(&refusal.error.message)
            )));
        }
        serde_json::from_slice(&bytes).map_err(|_| {
            Error::Other(format!(
                "{url} answered {status} with: {}",
                one_line(&String::from_utf8_lossy(&bytes))
            ))
        })
    }

    /// [`Tower::call`] with a request of the API's contract, read as the answer's type.
    pub async fn exchange<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Answer<T>, Error> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| Error::Other(e.to_string()))?;
        let raw = self.call(method, path, body.as_ref()).await?;
        let typed = serde_json::from_value(raw.clone()).map_err(|e| {
            Error::Other(format!(
                "{method} {path}: the tower's answer is not what this towerctl reads: {e}"
            ))
        })?;
        Ok(Answer { raw, typed })
    }

    /// Prints an answer as the API's JSON with `--json`, else as `table` renders it.
    fn print<T>(
        &self,
        answer: &Answer<T>,
        table: impl FnOnce(&T) -> Vec<String>,
    ) -> Result<(), Error> {
        if self.json {
            return line(&answer.raw);
        }
        for l in table(&answer.typed) {
            line(l)?;
        }
        Ok(())
    }
}

/// An answer of the API: its JSON as sent (for `--json`) and as the contract's type.
pub struct Answer<T> {
    /// As sent.
    pub raw: Value,
    /// As read.
    pub typed: T,
}

/// No request body.
const NONE: Option<&()> = None;

/// Runs a `sites` command.
pub async fn sites(arg: &TowerArg, action: SitesAction) -> Result<(), Error> {
    let tower = Tower::new(arg)?;
    match action {
        SitesAction::Add(add) => {
            let site: Answer<SiteView> = tower
                .exchange("POST", "/sites", Some(&new_site(&add)?))
                .await?;
            tower.print(&site, |s| site_rows(std::slice::from_ref(s)))
        }
        SitesAction::List => {
            let listing: Answer<SiteListing> = tower.exchange("GET", "/sites", NONE).await?;
            tower.print(&listing, |l| site_rows(&l.sites))
        }
        SitesAction::Query { filter } => {
            let filter: Value = serde_json::from_str(&filter)
                .map_err(|e| Error::Usage(format!("FILTER is not JSON: {e}")))?;
            let query = SiteQuery {
                filter: Some(filter),
            };
            let listing: Answer<SiteListing> =
                tower.exchange("POST", "/sites/query", Some(&query)).await?;
            tower.print(&listing, |l| site_rows(&l.sites))
        }
        SitesAction::Health { id } => {
            let health: Answer<SiteHealth> = tower
                .exchange("GET", &format!("/sites/{id}/health"), NONE)
                .await?;
            tower.print(&health, health_rows)
        }
        SitesAction::Remove { id } => {
            let site: Answer<SiteView> = tower
                .exchange("DELETE", &format!("/sites/{id}"), NONE)
                .await?;
            tower.print(&site, |s| {
                vec![format!("removed site {} ({})", s.id, s.name)]
            })
        }
    }
}

fn new_site(add: &AddSite) -> Result<NewSite, Error> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("{flag} {}: {e}", path.display())))
    };
    let tls = match &add.tls_ca {
        Some(ca) => {
            let (cert_pem, key_pem) = match (&add.tls_cert, &add.tls_key) {
                (Some(cert), Some(key)) => (
                    Some(read("--tls-cert", cert)?),
                    Some(read("--tls-key", key)?),
                ),
                _ => (None, None),
            };
            Some(NewTls {
                ca_pem: read("--tls-ca", ca)?,
                cert_pem,
                key_pem,
            })
        }
        None => None,
    };
    Ok(NewSite {
        id: add.id.clone(),
        name: add.name.clone(),
        nodes: add.nodes.clone(),
        labels: add.labels.iter().cloned().collect(),
        metadata: add
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
        tls,
    })
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn pairs(labels: &std::collections::BTreeMap<String, String>) -> String {
    let joined: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    or_dash(&joined.join(","))
}

fn site_rows(sites: &[SiteView]) -> Vec<String> {
    let mut rows = vec![vec![
        "ID".into(),
        "NAME".into(),
        "NODES".into(),
        "LABELS".into(),
    ]];
    for s in sites {
        rows.push(vec![
            s.id.clone(),
            s.name.clone(),
            s.nodes.join(","),
            pairs(&s.labels),
        ]);
    }
    table(&rows)
}

fn health_rows(h: &SiteHealth) -> Vec<String> {
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
    for n in &h.nodes {
        let problem = [n.failure.as_str(), n.error.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        rows.push(vec![
            n.address.clone(),
            n.reachable.to_string(),
            n.leader.to_string(),
            human_bytes(n.disk_free_bytes),
            n.apply_lag.to_string(),
            n.blobs_missing.to_string(),
            n.version.clone(),
            problem,
        ]);
    }
    let mut out = vec![format!("site {} ({}): {}", h.site_id, h.name, h.verdict)];
    out.extend(table(&rows));
    out
}

/// Runs a `rollout` command.
pub async fn rollout(arg: &TowerArg, action: RolloutAction) -> Result<(), Error> {
    let tower = Tower::new(arg)?;
    match action {
        RolloutAction::Create(create) => {
            let r: Answer<RolloutView> = tower
                .exchange("POST", "/rollouts", Some(&new_rollout(&create)?))
                .await?;
            if create.watch {
                crate::fleet_watch::watch(&tower, &r.typed.summary.id).await
            } else {
                tower.print(&r, rollout_rows)
            }
        }
        RolloutAction::Status { id, watch: true } => crate::fleet_watch::watch(&tower, &id).await,
        RolloutAction::Status { id, watch: false } => {
            let r: Answer<RolloutView> = tower
                .exchange("GET", &format!("/rollouts/{id}"), NONE)
                .await?;
            tower.print(&r, rollout_rows)
        }
        RolloutAction::Cancel { id } => {
            let r: Answer<RolloutView> = tower
                .exchange("DELETE", &format!("/rollouts/{id}"), NONE)
                .await?;
            tower.print(&r, |r| {
                vec![format!(
                    "cancelled rollout {}; sites keep what they hold",
                    r.summary.id
                )]
            })
        }
        RolloutAction::List => {
            let l: Answer<RolloutListing> = tower.exchange("GET", "/rollouts", NONE).await?;
            tower.print(&l, |l| {
                let mut rows = vec![vec![
                    "ID".into(),
                    "APPLICATION".into(),
                    "STATUS".into(),
                    "SCHEDULED".into(),
                    "FAILED".into(),
                    "CREATED".into(),
                ]];
                for r in &l.rollouts {
                    let t = &r.totals;
                    rows.push(vec![
                        r.id.clone(),
                        r.application.clone(),
                        r.status.clone(),
                        format!("{}/{}", t.scheduled, t.selected),
                        t.failed.to_string(),
                        unix_time(r.created_unix),
                    ]);
                }
                table(&rows)
            })
        }
    }
}

fn new_rollout(create: &CreateRollout) -> Result<NewRollout, Error> {
    let selector: Value = serde_json::from_str(&create.selector)
        .map_err(|e| Error::Usage(format!("--selector is not JSON: {e}")))?;
    Ok(NewRollout {
        application: create.application.clone(),
        images: create.images.clone(),
        selector,
        max_parallel: create.max_parallel,
        bandwidth_bytes_per_second: create.bandwidth,
    })
}

/// The totals of a rollout on one line.
pub fn totals_line(r: &RolloutSummary) -> String {
    let t = &r.totals;
    let eta = t
        .eta_seconds
        .map_or("unknown".to_owned(), |s| format!("{s} s"));
    // Its images not all in the tower's registry yet: why, after a failed attempt.
    let pulling = match &r.pulling {
        Some(p) if !p.reason.is_empty() => {
            format!(" (images: {}, {} attempts)", p.reason, p.retries)
        }
        _ => String::new(),
    };
    format!(
        "{}{pulling}: {}/{} scheduled; waiting {}, delivering {}, present {}, failed {}; sent {}, left {}, eta {eta}",
        r.status,
        t.scheduled,
        t.selected,
        t.waiting,
        t.delivering,
        t.present,
        t.failed,
        human_bytes(t.bytes_done),
        human_bytes(t.bytes_left),
    )
}

fn rollout_rows(r: &RolloutView) -> Vec<String> {
    let mut out = vec![
        format!("rollout {} of {}", r.summary.id, r.summary.application),
        format!("images: {}", r.summary.images.join(" ")),
        totals_line(&r.summary),
    ];
    let mut rows = vec![vec![
        "SITE".into(),
        "STATE".into(),
        "SENT".into(),
        "RETRIES".into(),
        "REASON".into(),
    ]];
    for s in &r.sites {
        rows.push(vec![
            s.site_id.clone(),
            s.state.clone(),
            human_bytes(s.bytes_done),
            s.retries.to_string(),
            s.reason.clone(),
        ]);
    }
    out.extend(table(&rows));
    out
}
