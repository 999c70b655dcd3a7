//! A site of the inventory: its name, the API addresses of its nodes, labels, free-form
//! metadata and the TLS material that reaches it; how a body becomes one, how a merge
//! patch changes one, and what of it the API shows.

use crate::error::{Error, CONFLICT};
use crate::filter::merge_patch;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Most nodes a site lists.
pub const MAX_NODES: usize = 16;
/// Longest name, label key or label value, in characters.
pub const MAX_TEXT: usize = 256;
/// Most bytes of a site's metadata as JSON.
pub const MAX_METADATA: usize = 64 * 1024;

/// A site as the inventory holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Stable id: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
    pub id: String,
    /// A name for people, unique in the inventory.
    pub name: String,
    /// `HOST:PORT` of each node's `[api] listen`.
    pub nodes: Vec<String>,
    /// Labels selectors match on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Anything the operator keeps about the site (a JSON object).
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// How the tower reaches the site over TLS; plain HTTP/2 without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

/// The TLS material that reaches a site: its CA, and the tower's client certificate.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The site's CA (PEM).
    pub ca_pem: String,
    /// The tower's client certificate for this site (PEM), if the site asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// Its private key (PEM). Never shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
}

/// Shows whether a key is held, never the key.
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

impl Site {
    /// A site from a `POST /sites` body; `generated_id` is used when the body has no id.
    pub fn create(body: &Value, generated_id: &str) -> Result<Site, Error> {
        let mut body = body.clone();
        let Value::Object(fields) = &mut body else {
            return Err(Error::bad("a site is a JSON object"));
        };
        if !fields.contains_key("id") {
            fields.insert("id".into(), Value::String(generated_id.to_owned()));
        }
        Site::from_value(body)
    }

    /// This site changed by a `PUT /sites/{id}` body: a JSON merge patch (RFC 7386) of
    /// its fields; the id cannot change.
    pub fn patched(&self, patch: &Value) -> Result<Site, Error> {
        if !patch.is_object() {
            return Err(Error::bad("an update is a JSON object (a merge patch)"));
        }
        if patch.get("id").is_some_and(|id| id != self.id.as_str()) {
            return Err(Error::bad("a site's id cannot change"));
        }
        let mut document = serde_json::to_value(self)
            .map_err(|e| Error::bad(format!("cannot encode the site: {e}")))?;
        merge_patch(&mut document, patch);
        Site::from_value(document)
    }

    fn from_value(value: Value) -> Result<Site, Error> {
        let site: Site =
            serde_json::from_value(value).map_err(|e| Error::bad(format!("site: {e}")))?;
        site.check()?;
        Ok(site)
    }

    /// Refuses what the inventory cannot use.
    pub fn check(&self) -> Result<(), Error> {
        check_id(&self.id)?;
        check_text("name", &self.name)?;
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            return Err(Error::bad(format!(
                "a site lists 1 to {MAX_NODES} nodes, not {}",
                self.nodes.len()
            )));
        }
        for node in &self.nodes {
            check_address(node)?;
        }
        for (key, value) in &self.labels {
            check_label_key(key)?;
            if value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) {
                return Err(Error::bad(format!(
                    "label {key:?}: a value has at most {MAX_TEXT} characters and no control characters"
                )));
            }
        }
        // No NUL in any key or string: no database stores it in a JSON document.
        if serde_json::to_string(&self.metadata).is_ok_and(|m| m.contains("\\u0000")) {
            return Err(Error::bad("metadata holds a NUL character (\\u0000)"));
        }
        let metadata = serde_json::to_vec(&self.metadata).map_or(usize::MAX, |v| v.len());
        if metadata > MAX_METADATA {
            return Err(Error::bad(format!(
                "metadata takes at most {MAX_METADATA} bytes of JSON, not {metadata}"
            )));
        }
        if let Some(tls) = &self.tls {
            if tls.cert_pem.is_some() != tls.key_pem.is_some() {
                return Err(Error::bad(
                    "tls: a client certificate comes with its key (cert_pem and key_pem)",
                ));
            }
            for (what, pem) in [
                ("ca_pem", Some(&tls.ca_pem)),
                ("cert_pem", tls.cert_pem.as_ref()),
                ("key_pem", tls.key_pem.as_ref()),
            ] {
                if pem.is_some_and(|p| !p.contains("-----BEGIN ")) {
                    return Err(Error::bad(format!("tls.{what} is not PEM")));
                }
            }
        }
        Ok(())
    }

    /// The site as filters see it, and as the API shows it: the private key is left out
    /// (`tls.client_key` says whether one is held).
    pub fn document(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "name": self.name,
            "nodes": self.nodes,
            "labels": self.labels,
            "metadata": self.metadata,
        });
        if let Some(tls) = &self.tls {
            out["tls"] = json!({
                "ca_pem": tls.ca_pem,
                "cert_pem": tls.cert_pem,
                "client_key": tls.key_pem.is_some(),
            });
        }
        out
    }
}

/// Refuses a second site with the same id or name (`CONFLICT`).
pub fn check_unique<'a>(
    site: &Site,
    others: impl IntoIterator<Item = &'a Site>,
) -> Result<(), Error> {
    for other in others {
        if other.id != site.id && other.name == site.name {
            return Err(Error::new(
                CONFLICT,
                format!("site {} is already named {:?}", other.id, site.name),
            ));
        }
    }
    Ok(())
}

/// Refuses an id the API cannot put in a path.
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::bad(format!(
            "id {id:?}: 1 to 64 of a-z, 0-9 and . _ - (not first)"
        )))
    }
}

fn check_text(what: &str, text: &str) -> Result<(), Error> {
    if text.trim().is_empty()
        || text.chars().count() > MAX_TEXT
        || text.chars().any(char::is_control)
    {
        return Err(Error::bad(format!(
            "{what} {text:?}: 1 to {MAX_TEXT} characters, no control characters"
        )));
    }
    Ok(())
}

fn check_label_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.len() <= 63
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok && !key.contains('.') {
        return Ok(());
    }
    Err(Error::bad(format!(
        "label key {key:?}: 1 to 63 of A-Z, a-z, 0-9 and _ - / (a dot would read as a sub-field)"
    )))
}

/// Refuses a node address that is not `HOST:PORT`.
pub fn check_address(address: &str) -> Result<(), Error> {
    let bad = || {
        Error::bad(format!(
            "node {address:?}: HOST:PORT of the node's [api] listen"
        ))
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    };
    if port == 0 || !host_ok {
        return Err(bad());
    }
    Ok(())
}
