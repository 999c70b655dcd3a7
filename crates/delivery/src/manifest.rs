//! A manifest stored at a site, checked against the digest it must have there.

use crate::exit::Error;
use crate::site::{self, Client};
use site_proto::pb::PutManifestRequest;

/// One manifest to store at a site.
pub struct Manifest<'a> {
    /// Canonical repository name at the site.
    pub repository: &'a str,
    /// The digest its bytes must have there.
    pub digest: &'a str,
    /// Its media type.
    pub media_type: &'a str,
    /// Its exact bytes.
    pub body: &'a [u8],
    /// A tag to point at it, or empty.
    pub tag: &'a str,
}

/// Stores a manifest at the site (retried while the link is broken) and checks that the
/// site stored it under the expected digest.
pub async fn put_manifest(site: &Client, manifest: &Manifest<'_>) -> Result<(), Error> {
    let stored = site::retry(|| {
        let mut c = site.clone();
        let request = PutManifestRequest {
            repository: manifest.repository.to_owned(),
            body: manifest.body.to_vec(),
            media_type: manifest.media_type.to_owned(),
            tag: manifest.tag.to_owned(),
        };
        async move { c.put_manifest(request).await }
    })
    .await?;
    if stored.digest != manifest.digest {
        return Err(Error::Other(format!(
            "the site stored manifest {} under digest {}",
            manifest.digest, stored.digest
        )));
    }
    Ok(())
}
