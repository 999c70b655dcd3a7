//! The files in `uploads/`, and what this process keeps of them: an OCI upload session's
//! running hash (`uploads.rs`), a tower delivery's partial file (`delivery.rs`), one
//! request at a time per file.

use crate::Result;
use bytes::Bytes;
use site_core::{Algorithm, Digest, DigestHasher};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A source of request body bytes, so the node needs no HTTP types.
pub trait ByteSource: Send {
    /// The next chunk; `None` at the end; `Err` if the body was cut off.
    fn next_chunk(&mut self) -> impl Future<Output = Option<Result<Bytes, String>>> + Send;

    /// Called by [`crate::Deliveries::receive_blob`] once every byte has come and matches the
    /// blob's digest, before the blob is made durable and recorded.
    fn whole(&mut self) {}
}

/// In-memory state of the sessions this process has touched.
#[derive(Clone)]
pub(crate) struct Sessions {
    dir: PathBuf,
    live: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Live>>>>>,
}

/// A session's running state; `None` until first loaded from its file.
pub(crate) struct Live {
    hasher: Option<DigestHasher>,
}

impl Live {
    pub(crate) fn set_hasher(&mut self, h: DigestHasher) {
        self.hasher = Some(h);
    }

    pub(crate) fn forget_hasher(&mut self) {
        self.hasher = None;
    }

    /// Puts the session back where `before` stood: its file at `path` cut to that length
    /// and its running hash `before`.
    pub(crate) async fn rewind(&mut self, path: &Path, before: DigestHasher) -> Result<()> {
        let f = tokio::fs::OpenOptions::new().write(true).open(path).await?;
        f.set_len(before.len()).await?;
        self.set_hasher(before);
        Ok(())
    }
}

impl Sessions {
    pub(crate) fn new(dir: PathBuf) -> Sessions {
        Sessions {
            dir,
            live: Arc::default(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub(crate) fn slot(&self, id: &str) -> Arc<tokio::sync::Mutex<Live>> {
        let mut live = self.live.lock().expect("sessions lock");
        live.entry(id.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Live { hasher: None })))
            .clone()
    }

    pub(crate) fn forget(&self, id: &str) {
        self.live.lock().expect("sessions lock").remove(id);
    }

    /// The running hash of a session, rebuilt from its file after a restart, or when
    /// `algorithm` is not the one it ran with (an upload hashes with sha256 until its
    /// digest says otherwise).
    pub(crate) async fn hasher<'a>(
        &self,
        id: &str,
        live: &'a mut Live,
        algorithm: Option<Algorithm>,
    ) -> Result<&'a DigestHasher> {
        let stale = match (&live.hasher, algorithm) {
            (None, _) => true,
            (Some(h), Some(a)) => h.algorithm() != a,
            (Some(_), None) => false,
        };
        if stale {
            let path = self.path(id);
            let a = algorithm.unwrap_or_default();
            live.hasher =
                Some(crate::file_io::blocking(move || crate::file_io::hash_file(&path, a)).await?);
        }
        Ok(live.hasher.as_ref().expect("just set"))
    }

    /// The file an unfinished tower upload of `d` grows in.
    pub(crate) fn tower_path(&self, d: &Digest) -> PathBuf {
        self.dir.join(tower_file_name(d))
    }
}

/// The name of the file an unfinished tower upload of `d` grows in: `tower-HEX` for
/// sha256 (as earlier versions named it), `tower-ALGORITHM-HEX` for the others.
pub(crate) fn tower_file_name(d: &Digest) -> String {
    match d.algorithm() {
        site_core::Algorithm::Sha256 => format!("tower-{}", d.hex()),
        a => format!("tower-{}-{}", a.name(), d.hex()),
    }
}

/// The digest whose tower upload a file of this name holds, if it is one.
pub(crate) fn tower_file_digest(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("tower-")?;
    match rest.split_once('-') {
        Some((algorithm, hex)) => Digest::parse(&format!("{algorithm}:{hex}")).ok(),
        None => Digest::parse(&format!("sha256:{rest}")).ok(),
    }
    .filter(|d| tower_file_name(d) == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use site_core::Algorithm;

    #[test]
    fn tower_upload_files_are_named_by_digest_in_either_algorithm() {
        for a in Algorithm::ALL {
            let d = Digest::of_with(a, b"layer");
            let name = tower_file_name(&d);
            assert_eq!(tower_file_digest(&name), Some(d.clone()), "{name}");
        }
        // sha256 keeps the name earlier versions gave it.
        let d = Digest::of(b"layer");
        assert_eq!(tower_file_name(&d), format!("tower-{}", d.hex()));
        for stray in [
            "tower-",
            "tower-xyz",
            "upload-1",
            "tower-sha512-abc",
            "tower-sha256-aa",
        ] {
            assert_eq!(tower_file_digest(stray), None, "{stray}");
        }
    }
}
