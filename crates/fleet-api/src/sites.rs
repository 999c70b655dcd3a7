//! The inventory's requests and answers: `/sites`, `/sites/query`, `/sites/{id}`,
//! `/sites/{id}/health`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use site_fleet::Site;
use std::collections::BTreeMap;

/// A site as the API shows it (its client key never: only whether it has one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteView {
    /// Stable id: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
    pub id: String,
    /// A name for people, unique in the inventory.
    pub name: String,
    /// `HOST:PORT` of each node's gRPC API.
    pub nodes: Vec<String>,
    /// Labels selectors match on.
    pub labels: BTreeMap<String, String>,
    /// Anything the operator keeps about the site.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    /// How the tower reaches the site over TLS, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsView>,
}

/// A site's TLS material as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsView {
    /// The site's CA (PEM).
    pub ca_pem: String,
    /// The tower's client certificate for the site (PEM), if any.
    #[serde(default)]
    pub cert_pem: Option<String>,
    /// Whether the tower holds a client key for the site.
    pub client_key: bool,
}

impl From<&Site> for SiteView {
    fn from(site: &Site) -> SiteView {
        SiteView {
            id: site.id.clone(),
            name: site.name.clone(),
            nodes: site.nodes.clone(),
            labels: site.labels.clone(),
            metadata: site.metadata.clone(),
            tls: site.tls.as_ref().map(|t| TlsView {
                ca_pem: t.ca_pem.clone(),
                cert_pem: t.cert_pem.clone(),
                client_key: t.key_pem.is_some(),
            }),
        }
    }
}

/// `POST /sites`: a site to onboard.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    /// Its id; made up by the tower when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A name for people, unique in the inventory.
    pub name: String,
    /// `HOST:PORT` of each node's gRPC API (1 to 16).
    pub nodes: Vec<String>,
    /// Labels selectors match on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Anything the operator keeps about the site (a JSON object).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    /// How the tower reaches the site over TLS; plain HTTP/2 without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NewTls>,
}

/// The TLS material of a site to onboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTls {
    /// The site's CA (PEM).
    pub ca_pem: String,
    /// The tower's client certificate for this site (PEM), if the site asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// Its private key (PEM); kept by the tower, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
}

/// `GET /sites` and `POST /sites/query`: sites, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteListing {
    /// The sites.
    pub sites: Vec<SiteView>,
    /// How many.
    pub total: usize,
}

impl SiteListing {
    /// A listing of `sites`.
    pub fn of<'a>(sites: impl IntoIterator<Item = &'a Site>) -> SiteListing {
        let sites: Vec<SiteView> = sites.into_iter().map(SiteView::from).collect();
        SiteListing {
            total: sites.len(),
            sites,
        }
    }
}

/// `POST /sites/query`: a filter of the inventory's language (`{}`, or left out, for
/// every site).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SiteQuery {
    /// The filter, e.g. `{"labels.region": {"$in": ["eu", "us"]}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filter: Option<Value>,
}

/// `GET /sites/{id}/health`: every node asked at once, and a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteHealth {
    /// The site's id.
    pub site_id: String,
    /// Its name.
    pub name: String,
    /// `healthy` (every node answers, knows the leader, has applied what the site
    /// committed and holds every blob), `degraded` (some node does not), `down` (none
    /// answers).
    pub verdict: String,
    /// Every node, in the inventory's order.
    pub nodes: Vec<NodeHealth>,
}

/// One node as it answered.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeHealth {
    /// Its API address, as the inventory lists it.
    pub address: String,
    /// It answered.
    pub reachable: bool,
    /// Its node id (0 when unreachable).
    pub node_id: u64,
    /// It leads the site's group.
    pub leader: bool,
    /// The leader it knows (0: none).
    pub leader_id: u64,
    /// Free bytes of its data disk.
    pub disk_free_bytes: u64,
    /// Bytes of its data disk (or its GC capacity).
    pub disk_capacity_bytes: u64,
    /// Entries the site committed that it has not applied.
    pub apply_lag: u64,
    /// The site's log committed up to here, as this node knows it.
    pub commit_index: u64,
    /// Applied up to here.
    pub applied_index: u64,
    /// Blobs it is still fetching from peers.
    pub blobs_missing: u64,
    /// Its site-agent version.
    pub version: String,
    /// What failed of its storage, if anything.
    pub failure: String,
    /// Why it did not answer.
    pub error: String,
}
