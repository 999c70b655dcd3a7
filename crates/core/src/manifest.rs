//! Manifests: OCI image manifest and image index, Docker schema 2 manifest and list.
//!
//! Parsing checks the structure the registry relies on (schema version, media type,
//! descriptors with valid digests and sizes) and yields the descriptors a manifest
//! references, so the store can refuse a manifest whose references are missing. The bytes
//! themselves are kept exactly as received: their digest is the manifest's identity.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list, schema 2.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The manifest media types this registry stores.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ManifestError {
    /// The body is not a JSON object.
    #[error("manifest is not a JSON object: {0}")]
    NotJson(String),
    /// The JSON does not have the structure its media type requires.
    #[error("manifest invalid: {0}")]
    Invalid(String),
    /// A media type this registry does not store (schema 1, unknown types).
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

/// A content descriptor: what a manifest says about one thing it references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Artifact type, for artifacts and in referrers responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
    /// URLs of a foreign (non-distributable) layer: such a layer need not be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// What a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest: a config blob and layer blobs.
    Image {
        /// The config descriptor.
        config: Descriptor,
        /// The layer descriptors, in order.
        layers: Vec<Descriptor>,
    },
    /// An index: child manifests.
    Index {
        /// The child manifest descriptors.
        manifests: Vec<Descriptor>,
    },
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type, from the body or, failing that, the request.
    pub media_type: String,
    /// What the manifest references.
    pub kind: ManifestKind,
    /// The manifest this one refers to (referrers API), if any.
    pub subject: Option<Descriptor>,
    /// The artifact type declared by the manifest, if any.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<Value>,
    media_type: Option<Value>,
    config: Option<Value>,
    layers: Option<Value>,
    manifests: Option<Value>,
    subject: Option<Value>,
    artifact_type: Option<Value>,
    #[serde(default)]
    annotations: Option<Value>,
}

impl Manifest {
    /// Parses manifest bytes. `content_type` is the media type the client declared, if any;
    /// when the body declares one too, they must agree.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::NotJson(e.to_string()))?;
        if !value.is_object() {
            return Err(ManifestError::NotJson("top level is not an object".into()));
        }
        let raw: Raw = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        match raw.schema_version.as_ref().and_then(Value::as_u64) {
            Some(2) => {}
            Some(1) => {
                return Err(ManifestError::UnsupportedMediaType(
                    "application/vnd.docker.distribution.manifest.v1+json".into(),
                ))
            }
            _ => return Err(invalid("schemaVersion must be 2")),
        }
        let body_type = match &raw.media_type {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(invalid("mediaType must be a string")),
        };
        let declared = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| MANIFEST_MEDIA_TYPES.contains(c));
        if let (Some(b), Some(d)) = (body_type, declared) {
            if b != d {
                return Err(invalid(format!(
                    "mediaType {b:?} does not match Content-Type {d:?}"
                )));
            }
        }
        let media_type = match body_type.or(declared) {
            Some(t) => t.to_owned(),
            // An OCI manifest may omit mediaType: tell the two kinds apart by shape.
            None if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            None if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            None => return Err(invalid("cannot tell the manifest's media type")),
        };
        let kind = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                if raw.manifests.is_some() {
                    return Err(invalid("an image manifest has no manifests field"));
                }
                let config = descriptor(
                    raw.config
                        .as_ref()
                        .ok_or_else(|| invalid("config is missing"))?,
                    "config",
                )?;
                let layers =
                    descriptors(raw.layers.as_ref(), "layers", media_type == DOCKER_MANIFEST)?;
                ManifestKind::Image { config, layers }
            }
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(invalid("an index has no config or layers field"));
                }
                let manifests = descriptors(raw.manifests.as_ref(), "manifests", true)?;
                ManifestKind::Index { manifests }
            }
            other => {
                return Err(ManifestError::UnsupportedMediaType(
                    other.chars().take(100).collect(),
                ))
            }
        };
        let subject = raw
            .subject
            .as_ref()
            .map(|s| descriptor(s, "subject"))
            .transpose()?;
        let artifact_type = match raw.artifact_type {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(invalid("artifactType must be a string")),
        };
        let annotations = match raw.annotations {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(v) => serde_json::from_value(v)
                .map_err(|_| invalid("annotations must map strings to strings"))?,
        };
        Ok(Manifest {
            media_type,
            kind,
            subject,
            artifact_type,
            annotations,
        })
    }

    /// Blobs this manifest needs present (config and layers; foreign layers excepted).
    pub fn blob_references(&self) -> Vec<&Descriptor> {
        match &self.kind {
            ManifestKind::Image { config, layers } => std::iter::once(config)
                .chain(layers.iter().filter(|l| l.urls.is_empty()))
                .collect(),
            ManifestKind::Index { .. } => Vec::new(),
        }
    }

    /// Child manifests this manifest needs present (index entries).
    pub fn manifest_references(&self) -> Vec<&Descriptor> {
        match &self.kind {
            ManifestKind::Index { manifests } => manifests.iter().collect(),
            ManifestKind::Image { .. } => Vec::new(),
        }
    }

    /// The artifact type a referrers response gives this manifest: its own `artifactType`,
    /// else, for an image manifest, the config's media type.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type.clone().or_else(|| match &self.kind {
            ManifestKind::Image { config, .. } => Some(config.media_type.clone()),
            ManifestKind::Index { .. } => None,
        })
    }

    /// The descriptor of this manifest as a referrers response lists it.
    pub fn referrer_descriptor(&self, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest,
            size,
            artifact_type: self.effective_artifact_type(),
            annotations: self.annotations.clone(),
            platform: None,
            urls: Vec::new(),
        }
    }
}

fn descriptor(v: &Value, field: &str) -> Result<Descriptor, ManifestError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("{field} is not a descriptor object")))?;
    if obj.get("mediaType").and_then(Value::as_str).is_none() {
        return Err(invalid(format!("{field}: mediaType must be a string")));
    }
    if obj.get("size").and_then(Value::as_u64).is_none() {
        return Err(invalid(format!(
            "{field}: size must be a non-negative integer"
        )));
    }
    let digest = obj
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{field}: digest must be a string")))?;
    Digest::parse(digest).map_err(|e| invalid(format!("{field}: {e}")))?;
    serde_json::from_value(v.clone()).map_err(|e| invalid(format!("{field}: {e}")))
}

fn descriptors(
    v: Option<&Value>,
    field: &str,
    required: bool,
) -> Result<Vec<Descriptor>, ManifestError> {
    match v {
        None if required => Err(invalid(format!("{field} is missing"))),
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, d)| descriptor(d, &format!("{field}[{i}]")))
            .collect(),
        Some(_) => Err(invalid(format!("{field} must be an array"))),
    }
}

#[cfg(test)]
#[path = "manifest_test.rs"]
mod tests;
