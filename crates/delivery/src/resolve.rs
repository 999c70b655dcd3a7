//! Resolves an image at its upstream: the manifests to deliver (children before their
//! index) and the blobs they reference.

use crate::exit::Error;
use crate::platform::Platform;
use crate::upstream::Upstream;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use site_core::{Descriptor, Digest, ImageReference, Manifest, ManifestKind};
use site_upstream::RegistryAuth;
use std::collections::HashSet;

/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 4;

/// One manifest to deliver, with its exact bytes.
pub struct Node {
    /// sha256 of `body`.
    pub digest: Digest,
    /// Media type of the manifest.
    pub media_type: String,
    /// The bytes as the upstream served them.
    pub body: Bytes,
}

/// What delivering one image means.
pub struct Resolved {
    /// Digest of the delivered image (the platform's manifest with `--platform`).
    pub digest: Digest,
    /// Every manifest, children first, the delivered image last.
    pub manifests: Vec<Node>,
    /// Every blob (config and layers, no foreign layers), each once.
    pub blobs: Vec<Descriptor>,
}

/// Where an image's manifests are asked for: its own registry, or a registry that serves
/// it under another name (the tower's registry, which names it `HOST/PATH`).
#[derive(Debug, Clone)]
pub struct Location {
    /// The registry asked.
    pub registry: String,
    /// The image's repository there.
    pub repository: String,
}

impl Location {
    /// The image's own registry.
    pub fn of(image: &ImageReference) -> Location {
        Location {
            registry: image.repository.host().to_owned(),
            repository: image.repository.path().to_owned(),
        }
    }

    /// A reference there, by tag or digest.
    pub fn reference(
        &self,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> site_upstream::Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (digest, tag) {
            (Some(d), _) => {
                site_upstream::Reference::with_digest(registry, repository, d.to_string())
            }
            (None, t) => site_upstream::Reference::with_tag(
                registry,
                repository,
                t.unwrap_or("latest").into(),
            ),
        }
    }
}

/// Resolves `image` at its upstream; with `platform`, an index is narrowed to the
/// manifest of that platform.
pub async fn resolve(
    up: &Upstream,
    auth: &RegistryAuth,
    image: &ImageReference,
    platform: Option<&Platform>,
) -> Result<Resolved, Error> {
    resolve_at(up, auth, image, &Location::of(image), platform).await
}

/// [`resolve`], asking the registry at `at`.
pub async fn resolve_at(
    up: &Upstream,
    auth: &RegistryAuth,
    image: &ImageReference,
    at: &Location,
    platform: Option<&Platform>,
) -> Result<Resolved, Error> {
    let top = at.reference(image.tag.as_deref(), image.digest.as_ref());
    let (mut body, mut digest) = up.manifest(&top, auth).await?;
    let mut manifest = parse(&body, &digest)?;
    if let (Some(p), ManifestKind::Index { manifests }) = (platform, &manifest.kind) {
        let child = p.pick(manifests).ok_or_else(|| {
            let have: Vec<String> = manifests
                .iter()
                .filter_map(|d| Platform::of_entry(d.platform.as_ref()))
                .map(|p| p.to_string())
                .collect();
            Error::ImageNotFound(format!(
                "{image} has no manifest for platform {p} (it has: {})",
                have.join(", ")
            ))
        })?;
        let (b, d) = fetch_child(up, auth, at, child).await?;
        manifest = parse(&b, &d)?;
        (body, digest) = (b, d);
    }
    let mut out = Resolved {
        digest: digest.clone(),
        manifests: Vec::new(),
        blobs: Vec::new(),
    };
    let mut seen = HashSet::new();
    let top = Node {
        digest,
        media_type: manifest.media_type.clone(),
        body,
    };
    let from = Asked {
        up,
        auth,
        image,
        at,
    };
    collect(&from, top, manifest, 0, &mut seen, &mut out).await?;
    Ok(out)
}

fn parse(body: &[u8], digest: &Digest) -> Result<Manifest, Error> {
    Manifest::parse(body, None)
        .map_err(|e| Error::Other(format!("upstream manifest {digest}: {e}")))
}

/// Where the manifests of one resolution come from.
struct Asked<'a> {
    up: &'a Upstream,
    auth: &'a RegistryAuth,
    image: &'a ImageReference,
    at: &'a Location,
}

/// Fetches a child manifest by digest and checks its size against the descriptor.
async fn fetch_child(
    up: &Upstream,
    auth: &RegistryAuth,
    at: &Location,
    child: &Descriptor,
) -> Result<(Bytes, Digest), Error> {
    let r = at.reference(None, Some(&child.digest));
    let (body, digest) = up.manifest(&r, auth).await?;
    if body.len() as u64 != child.size {
        return Err(Error::Other(format!(
            "upstream manifest {digest} has {} bytes, its index says {}",
            body.len(),
            child.size
        )));
    }
    Ok((body, digest))
}

/// Adds `node` after everything it references (post-order).
fn collect<'a>(
    from: &'a Asked<'a>,
    node: Node,
    manifest: Manifest,
    depth: usize,
    seen: &'a mut HashSet<Digest>,
    out: &'a mut Resolved,
) -> BoxFuture<'a, Result<(), Error>> {
    Box::pin(async move {
        if !seen.insert(node.digest.clone()) {
            return Ok(());
        }
        match &manifest.kind {
            ManifestKind::Index { manifests } => {
                if depth >= MAX_DEPTH {
                    return Err(Error::Other(format!(
                        "{}: indexes nested deeper than {MAX_DEPTH}",
                        from.image
                    )));
                }
                for child in manifests {
                    if seen.contains(&child.digest) {
                        continue;
                    }
                    let (body, digest) = fetch_child(from.up, from.auth, from.at, child).await?;
                    let parsed = parse(&body, &digest)?;
                    let child_node = Node {
                        digest,
                        media_type: parsed.media_type.clone(),
                        body,
                    };
                    collect(from, child_node, parsed, depth + 1, seen, out).await?;
                }
            }
            ManifestKind::Image { .. } => {
                for blob in manifest.blob_references() {
                    if !out.blobs.iter().any(|b| b.digest == blob.digest) {
                        out.blobs.push(blob.clone());
                    }
                }
            }
        }
        out.manifests.push(node);
        Ok(())
    })
}
