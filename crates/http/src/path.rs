//! The one parser of `/v2/...` paths. Repository names nest (`a/b/c`), so the endpoint is
//! read from the end of the path: what precedes it is the name.

use crate::error::ApiError;
use site_core::ErrorCode;

/// An endpoint of the Distribution API, with the name as it appeared in the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(&'a str),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(&'a str, &'a str),
    /// `/v2/<name>/blobs/<digest>`
    Blob(&'a str, &'a str),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(&'a str),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(&'a str, &'a str),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(&'a str, &'a str),
}

/// Reads a request path. Percent-escapes are never decoded: no valid name, tag or digest
/// contains `%`, so `%2e%2e` stays a bad name rather than becoming `..`.
pub fn parse(path: &str) -> Result<Endpoint<'_>, ApiError> {
    let not_found = || {
        ApiError::new(ErrorCode::NameUnknown, "no such endpoint")
            .with_status(axum::http::StatusCode::NOT_FOUND)
    };
    let rest = match path.strip_prefix("/v2") {
        Some("" | "/") => return Ok(Endpoint::Base),
        Some(r) => r.strip_prefix('/').ok_or_else(not_found)?,
        None => return Err(not_found()),
    };
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    // Byte length of the first `k` segments joined by '/'.
    let name =
        |k: usize| &rest[..segs[..k].iter().map(|s| s.len()).sum::<usize>() + k.saturating_sub(1)];
    let endpoint = match segs.as_slice() {
        [.., "tags", "list"] if n > 2 => Endpoint::Tags(name(n - 2)),
        [.., "blobs", "uploads", id] if n > 3 => {
            if id.is_empty() {
                Endpoint::UploadStart(name(n - 3))
            } else {
                Endpoint::Upload(name(n - 3), id)
            }
        }
        [.., "blobs", "uploads"] if n > 2 => Endpoint::UploadStart(name(n - 2)),
        [.., "manifests", r] if n > 2 && !r.is_empty() => Endpoint::Manifest(name(n - 2), r),
        [.., "blobs", d] if n > 2 && !d.is_empty() => Endpoint::Blob(name(n - 2), d),
        [.., "referrers", d] if n > 2 && !d.is_empty() => Endpoint::Referrers(name(n - 2), d),
        _ => return Err(not_found()),
    };
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Endpoint::*;

    #[test]
    fn reads_nested_names() {
        assert_eq!(parse("/v2/").unwrap(), Base);
        assert_eq!(parse("/v2").unwrap(), Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Catalog);
        assert_eq!(parse("/v2/a/b/c/tags/list").unwrap(), Tags("a/b/c"));
        assert_eq!(parse("/v2/a/manifests/v1").unwrap(), Manifest("a", "v1"));
        assert_eq!(
            parse("/v2/a/manifests/b/manifests/v1").unwrap(),
            Manifest("a/manifests/b", "v1")
        );
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:x").unwrap(),
            Blob("a/b", "sha256:x")
        );
        assert_eq!(parse("/v2/a/b/blobs/uploads/").unwrap(), UploadStart("a/b"));
        assert_eq!(parse("/v2/a/b/blobs/uploads").unwrap(), UploadStart("a/b"));
        assert_eq!(
            parse("/v2/a/blobs/uploads/123").unwrap(),
            Upload("a", "123")
        );
        assert_eq!(
            parse("/v2/a/referrers/sha256:x").unwrap(),
            Referrers("a", "sha256:x")
        );
        assert_eq!(
            parse("/v2/a/../b/manifests/x").unwrap(),
            Manifest("a/../b", "x")
        );
    }

    #[test]
    fn refuses_unknown_paths() {
        for bad in [
            "/",
            "/v3/",
            "/v2x",
            "/v2/a",
            "/v2/manifests/x",
            "/v2/a/manifests/",
            "/v2/tags/list",
            "/v2/a/blobs/",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
