//! `State::apply`: the one place the site's metadata changes.
//!
//! Every command is checked in full before anything is changed, so a refused command
//! leaves the state exactly as it was.

use crate::command::{Command, Entry, Event, Outcome};
use crate::state::{BlobInfo, ManifestInfo};
use crate::{ImageRef, State, StateError};
use site_core::{Digest, Manifest, Repository};
use std::collections::BTreeSet;

type Result<T> = std::result::Result<T, StateError>;

impl State {
    /// Applies one log entry. Deterministic: depends only on the state and the entry.
    pub fn apply(&mut self, entry: &Entry) -> Result<Outcome> {
        let now = entry.now;
        let mut out = match &entry.cmd {
            Command::AddBlob {
                repo,
                digest,
                size,
                recorded,
            } => {
                let mut changed = false;
                match self.blobs.get_mut(digest) {
                    // Delivered again: its grace period starts over.
                    Some(b) => b.added = b.added.max(now),
                    None if *recorded => return Err(StateError::BlobUnknown(digest.clone())),
                    None => {
                        self.blobs.insert(
                            digest.clone(),
                            BlobInfo {
                                size: *size,
                                added: now,
                            },
                        );
                        changed = true;
                    }
                }
                if let Some(repo) = repo {
                    changed |= self.repo_mut(repo).blobs.insert(digest.clone());
                }
                changed_if(changed)
            }
            Command::LinkBlob { repo, digest } => {
                if !self.blobs.contains_key(digest) {
                    return Err(StateError::BlobUnknown(digest.clone()));
                }
                changed_if(self.repo_mut(repo).blobs.insert(digest.clone()))
            }
            Command::UnlinkBlob { repo, digest } => {
                if self.repo_blob(repo, digest).is_none() {
                    return Err(StateError::BlobUnknown(digest.clone()));
                }
                self.repo_mut(repo).blobs.remove(digest);
                self.drop_if_empty(repo);
                changed_if(true)
            }
            Command::PutManifest {
                repo,
                body,
                digest,
                content_type,
                tag,
                link_references,
                cached,
            } => self.put_manifest(
                now,
                repo,
                body,
                content_type.as_deref(),
                tag.as_deref(),
                Arrival {
                    link: *link_references,
                    cached: *cached,
                    pushed_as: digest.as_ref(),
                },
            )?,
            Command::DeleteManifest { repo, digest } => {
                if self.repo_manifest(repo, digest).is_none() {
                    return Err(StateError::ManifestUnknown(digest.to_string()));
                }
                let image = ImageRef {
                    repo: repo.clone(),
                    digest: digest.clone(),
                };
                if let Some(user) = self.users_of(&image).first() {
                    return Err(StateError::InUse(format!(
                        "{image} is referenced by {user}; unschedule or unpin it first"
                    )));
                }
                let r = self.repo_mut(repo);
                r.manifests.remove(digest);
                r.tags.retain(|_, d| d != digest);
                self.drop_if_empty(repo);
                changed_if(true)
            }
            Command::Tag { repo, tag, digest } => {
                check_tag(tag)?;
                if self.repo_manifest(repo, digest).is_none() {
                    return Err(StateError::ManifestUnknown(digest.to_string()));
                }
                let old = self.repo_mut(repo).tags.insert(tag.clone(), digest.clone());
                changed_if(old.as_ref() != Some(digest))
            }
            Command::DeleteTag { repo, tag } => {
                if self.tag(repo, tag).is_none() {
                    return Err(StateError::ManifestUnknown(tag.clone()));
                }
                self.repo_mut(repo).tags.remove(tag);
                self.drop_if_empty(repo);
                changed_if(true)
            }
            Command::Schedule { app, images } => {
                check_app(app)?;
                if images.is_empty() {
                    return Err(StateError::Invalid(format!(
                        "application {app:?} names no images"
                    )));
                }
                self.check_ready(images)?;
                let set: BTreeSet<ImageRef> = images.iter().cloned().collect();
                let old = self.apps.insert(app.clone(), set.clone());
                changed_if(old.as_ref() != Some(&set))
            }
            Command::Unschedule { app } => {
                if self.apps.remove(app).is_none() {
                    return Err(StateError::NotFound(format!("application {app:?}")));
                }
                changed_if(true)
            }
            Command::Pin { image } => {
                self.check_ready(std::slice::from_ref(image))?;
                changed_if(self.pins.insert(image.clone()))
            }
            Command::Unpin { image } => {
                if !self.pins.remove(image) {
                    return Err(StateError::NotFound(format!("pin of {image}")));
                }
                changed_if(true)
            }
            Command::Lease {
                digests,
                until,
                until_ms,
                for_ms,
            } => {
                let until = match for_ms {
                    Some(d) => now.saturating_add(*d),
                    None => crate::command::millis(*until_ms, *until),
                };
                for d in digests {
                    let l = self.leases.entry(d.clone()).or_insert(0);
                    *l = (*l).max(until);
                }
                changed_if(!digests.is_empty())
            }
            Command::Touch { digests } => {
                let mut changed = false;
                for d in digests {
                    if let Some(m) = self.manifests.get_mut(d) {
                        changed |= m.last_used < now;
                        m.last_used = m.last_used.max(now);
                    }
                }
                changed_if(changed)
            }
            Command::Sweep {
                grace_secs,
                evict_bytes,
                cache_ttl_secs,
                grace_ms,
                cache_ttl_ms,
            } => {
                let rules = crate::gc::SweepRules {
                    grace_ms: crate::command::millis(*grace_ms, *grace_secs),
                    cache_ttl_ms: cache_ttl_ms
                        .or(cache_ttl_secs.map(|s| s.saturating_mul(1000)))
                        .unwrap_or(u64::MAX),
                    evict_bytes: *evict_bytes,
                };
                let report = self.plan_sweep(now, &rules);
                let events = self.execute_sweep(&report);
                Outcome {
                    sweep: Some(report),
                    changed: true,
                    events,
                    ..Outcome::default()
                }
            }
            Command::ForgetBlobs { digests } => self.forget_blobs(digests),
        };
        if out.changed {
            self.refresh_liveness(now);
        }
        out.events.shrink_to_fit();
        Ok(out)
    }

    fn put_manifest(
        &mut self,
        now: u64,
        repo: &Repository,
        body: &str,
        content_type: Option<&str>,
        tag: Option<&str>,
        arrival: Arrival<'_>,
    ) -> Result<Outcome> {
        let Arrival {
            link,
            cached,
            pushed_as,
        } = arrival;
        if let Some(t) = tag {
            check_tag(t)?;
        }
        let digest = match pushed_as {
            Some(d) if d.matches(body.as_bytes()) => d.clone(),
            Some(d) => {
                return Err(StateError::Invalid(format!(
                    "the manifest's {} digest is not {d}",
                    d.algorithm().name()
                )))
            }
            None => Digest::of(body.as_bytes()),
        };
        let manifest = Manifest::parse(body.as_bytes(), content_type)?;
        let blobs: Vec<Digest> = manifest
            .blob_references()
            .iter()
            .map(|d| d.digest.clone())
            .collect();
        let children: Vec<Digest> = manifest
            .manifest_references()
            .iter()
            .map(|d| d.digest.clone())
            .collect();
        let r = self.repos.get(repo);
        let mut missing: Vec<Digest> = Vec::new();
        for b in &blobs {
            let present = if link {
                self.blobs.contains_key(b)
            } else {
                r.is_some_and(|r| r.blobs.contains(b))
            };
            if !present && !missing.contains(b) {
                missing.push(b.clone());
            }
        }
        for c in &children {
            // A cached index holds only the platforms that were pulled.
            if cached {
                continue;
            }
            let present = if link {
                self.manifests.contains_key(c)
            } else {
                r.is_some_and(|r| r.manifests.contains(c))
            };
            if !present && !missing.contains(c) {
                missing.push(c.clone());
            }
        }
        if !missing.is_empty() {
            return Err(StateError::ManifestBlobUnknown(missing));
        }
        let subject = manifest.subject.as_ref().map(|s| {
            (
                s.digest.clone(),
                manifest.referrer_descriptor(digest.clone(), body.len() as u64),
            )
        });
        let info = self
            .manifests
            .entry(digest.clone())
            .or_insert_with(|| ManifestInfo {
                media_type: manifest.media_type.clone(),
                body: body.to_owned(),
                blobs: blobs.clone(),
                children: children.clone(),
                subject,
                annotations: manifest.annotations.clone(),
                added: now,
                last_used: now,
                unreferenced_since: None,
                cached,
            });
        info.last_used = info.last_used.max(now);
        // Delivered or pushed: the site's own content now, not cache.
        info.cached &= cached;
        let r = self.repo_mut(repo);
        let new_here = r.manifests.insert(digest.clone());
        if link {
            r.blobs.extend(blobs);
            r.manifests.extend(children);
        }
        if let Some(t) = tag {
            r.tags.insert(t.to_owned(), digest.clone());
        }
        let mut events = Vec::new();
        if new_here {
            events.push(Event::ImageReceived {
                repo: repo.clone(),
                digest: digest.clone(),
            });
        }
        Ok(Outcome {
            digest: Some(digest),
            changed: true,
            events,
            sweep: None,
        })
    }

    fn forget_blobs(&mut self, digests: &[Digest]) -> Outcome {
        let mut changed = false;
        for d in digests {
            changed |= self.blobs.remove(d).is_some();
            for r in self.repos.values_mut() {
                r.blobs.remove(d);
            }
        }
        // Drop, to a fixed point, every manifest that can no longer be served whole: one
        // that lacks a blob, or a child it needs (a cached index needs none: it holds the
        // platforms that were pulled).
        loop {
            let broken: Vec<Digest> = self
                .manifests
                .iter()
                .filter(|(_, m)| {
                    m.blobs.iter().any(|b| !self.blobs.contains_key(b))
                        || (!m.cached && m.children.iter().any(|c| !self.manifests.contains_key(c)))
                })
                .map(|(d, _)| d.clone())
                .collect();
            if broken.is_empty() {
                break;
            }
            for d in &broken {
                self.manifests.remove(d);
                for r in self.repos.values_mut() {
                    r.manifests.remove(d);
                    r.tags.retain(|_, t| t != d);
                }
            }
            changed = true;
        }
        self.repos.retain(|_, r| !r.is_empty());
        changed_if(changed)
    }

    /// Applications and pins that reference `image`.
    fn users_of(&self, image: &ImageRef) -> Vec<String> {
        let mut users: Vec<String> = self
            .apps
            .iter()
            .filter(|(_, imgs)| imgs.contains(image))
            .map(|(a, _)| format!("application {a:?}"))
            .collect();
        if self.pins.contains(image) {
            users.push("a pin".to_owned());
        }
        users
    }

    /// Refuses images that are not fully present in their repository, listing each.
    fn check_ready(&self, images: &[ImageRef]) -> Result<()> {
        let mut problems = Vec::new();
        for image in images {
            if self.repo_manifest(&image.repo, &image.digest).is_none() {
                problems.push(format!("{image}: not on the site"));
                continue;
            }
            let missing = self.missing_parts(&image.digest);
            if !missing.is_empty() {
                let list: Vec<&str> = missing.iter().map(Digest::as_str).collect();
                problems.push(format!("{image}: missing {}", list.join(", ")));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StateError::ImagesNotReady(problems))
        }
    }

    fn repo_mut(&mut self, repo: &Repository) -> &mut crate::Repo {
        self.repos.entry(repo.clone()).or_default()
    }

    fn drop_if_empty(&mut self, repo: &Repository) {
        if self.repos.get(repo).is_some_and(crate::Repo::is_empty) {
            self.repos.remove(repo);
        }
    }
}

/// How a manifest arrives (see [`Command::PutManifest`]).
struct Arrival<'a> {
    /// References need only be on the site, and are linked into the repository.
    link: bool,
    /// Fetched by the pull-through cache.
    cached: bool,
    /// Pushed by this digest (another algorithm than sha256).
    pushed_as: Option<&'a Digest>,
}

fn changed_if(changed: bool) -> Outcome {
    Outcome {
        changed,
        ..Outcome::default()
    }
}

fn check_tag(tag: &str) -> Result<()> {
    site_core::reference::validate_tag(tag).map_err(|e| StateError::Invalid(e.to_string()))
}

/// Application names: 1 to 128 characters of `[A-Za-z0-9._-]`, starting alphanumeric.
fn check_app(app: &str) -> Result<()> {
    site_core::check_application_name(app).map_err(StateError::Invalid)
}

#[cfg(test)]
#[path = "apply_test.rs"]
mod tests;
