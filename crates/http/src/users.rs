//! The registry's users: an htpasswd file of bcrypt entries (as `htpasswd -B` and the
//! reference registry write them), read again when it changes, and the plain-text users
//! of the config (deprecated). Passwords are never logged; a password that matched is
//! remembered only as a keyed hash, so a client sending the same credentials with every
//! request costs one bcrypt check, not one per request.

use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A user with a plain-text password in the config (deprecated: use an htpasswd file).
#[derive(Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password, compared in constant time.
    pub password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How often the htpasswd file is looked at for a change, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Everyone who may log in.
pub(crate) struct Users {
    plain: Vec<User>,
    htpasswd: Option<Htpasswd>,
}

struct Htpasswd {
    path: PathBuf,
    state: Mutex<FileState>,
    /// Keys the hashes of passwords that matched (random per process).
    key: [u8; 32],
}

#[derive(Default)]
struct FileState {
    /// The file's modification time and length as last read.
    stamp: Option<(SystemTime, u64, u64)>,
    checked: Option<Instant>,
    /// Name to bcrypt hash.
    entries: HashMap<String, String>,
    /// Name to the keyed hash of the password that matched its entry.
    verified: HashMap<String, [u8; 32]>,
    /// A hash of the file's cost that no password matches: checked for unknown names,
    /// so that the time of an answer does not tell which names exist.
    dummy: String,
}

impl Users {
    /// The users of the config and of the htpasswd file, which must be readable now.
    pub fn new(plain: Vec<User>, htpasswd: Option<PathBuf>) -> Result<Users, String> {
        let htpasswd = match htpasswd {
            None => None,
            Some(path) => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
                let file = Htpasswd {
                    path,
                    state: Mutex::default(),
                    key,
                };
                file.refresh(true)?;
                Some(file)
            }
        };
        Ok(Users { plain, htpasswd })
    }

    /// Whether `name` and `password` are a user's. Blocking: a bcrypt check takes
    /// milliseconds of CPU.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        let plain = self.plain.iter().fold(false, |found, u| {
            // Compare with every user, in constant time, so timing tells nothing.
            found
                | (ct_eq(u.name.as_bytes(), name.as_bytes())
                    & ct_eq(u.password.as_bytes(), password.as_bytes()))
        });
        plain
            || self
                .htpasswd
                .as_ref()
                .is_some_and(|h| h.verify(name, password))
    }
}

impl Htpasswd {
    fn verify(&self, name: &str, password: &str) -> bool {
        if let Err(e) = self.refresh(false) {
            tracing::warn!(error = %e, "htpasswd not read again; the users read before stay");
        }
        let keyed = self.keyed(name, password);
        let hash = {
            let state = self.state.lock().expect("htpasswd lock");
            if state.verified.get(name).is_some_and(|v| ct_eq(v, &keyed)) {
                return true;
            }
            match state.entries.get(name) {
                Some(h) => h.clone(),
                None => {
                    let dummy = state.dummy.clone();
                    drop(state);
                    let _ = bcrypt::verify(password, &dummy);
                    return false;
                }
            }
        };
        // Outside the lock: other logins need not wait for this one.
        if !bcrypt::verify(password, &hash).unwrap_or(false) {
            return false;
        }
        let mut state = self.state.lock().expect("htpasswd lock");
        // Only if the entry is still the one checked (the file may have changed).
        if state.entries.get(name) == Some(&hash) {
            state.verified.insert(name.to_owned(), keyed);
        }
        true
    }

    fn keyed(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Reads the file again if it changed (looking at most once a second unless
    /// `force`d).
    fn refresh(&self, force: bool) -> Result<(), String> {
        let mut state = self.state.lock().expect("htpasswd lock");
        if !force && state.checked.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return Ok(());
        }
        state.checked = Some(Instant::now());
        let shown = self.path.display();
        let meta = std::fs::metadata(&self.path).map_err(|e| format!("htpasswd {shown}: {e}"))?;
        // The inode too: a file replaced by a rename within one tick of the clock, with
        // lines of the same length, is still seen.
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
            std::os::unix::fs::MetadataExt::ino(&meta),
        );
        if state.stamp == Some(stamp) {
            return Ok(());
        }
        let text =
            std::fs::read_to_string(&self.path).map_err(|e| format!("htpasswd {shown}: {e}"))?;
        state.entries = parse(&text);
        state.verified.clear();
        state.dummy = dummy_hash(&state.entries);
        state.stamp = Some(stamp);
        tracing::info!(file = %shown, users = state.entries.len(), "htpasswd read");
        Ok(())
    }
}

/// A bcrypt hash of the cost of the file's first entry (5, `htpasswd -B`'s, if none).
fn dummy_hash(entries: &HashMap<String, String>) -> String {
    let cost = entries
        .values()
        .next()
        .and_then(|h| h.get(4..6))
        .and_then(|c| c.parse().ok())
        .filter(|c| (4..=31).contains(c))
        .unwrap_or(5);
    bcrypt::hash_with_salt("no user has this password", cost, [7u8; 16])
        .map(|h| h.format_for_version(bcrypt::Version::TwoY))
        .unwrap_or_default()
}

/// The bcrypt entries of an htpasswd file; other lines are skipped with a warning.
fn parse(text: &str) -> HashMap<String, String> {
    let mut entries = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((name, hash))
                if !name.is_empty()
                    && ["$2a$", "$2b$", "$2x$", "$2y$"]
                        .iter()
                        .any(|p| hash.starts_with(p)) =>
            {
                entries.insert(name.to_owned(), hash.to_owned());
            }
            Some((name, _)) => tracing::warn!(
                line = n + 1,
                user = name,
                "htpasswd entry skipped: only bcrypt entries (htpasswd -B) are taken"
            ),
            None => tracing::warn!(line = n + 1, "htpasswd line skipped: not NAME:HASH"),
        }
    }
    entries
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `htpasswd -nbB ci s3cret` (cost 5, to keep the test fast).
    fn entry(name: &str, password: &str) -> String {
        format!("{name}:{}\n", bcrypt::hash(password, 5).unwrap())
    }

    #[test]
    fn bcrypt_entries_verify_and_a_changed_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let md5 = "old:$apr1$abc$0123456789abcdefghijkl\n";
        std::fs::write(&path, format!("# users\n{}{md5}", entry("ci", "s3cret"))).unwrap();
        let users = Users::new(vec![], Some(path.clone())).unwrap();
        assert!(users.verify("ci", "s3cret"));
        assert!(users.verify("ci", "s3cret"), "remembered");
        assert!(!users.verify("ci", "wrong"));
        assert!(!users.verify("old", "x"), "only bcrypt entries count");
        assert!(!users.verify("nobody", "s3cret"));

        // A new password: the old one stops working once the file is read again.
        std::fs::write(&path, entry("ci", "n3w-and-longer")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while users.verify("ci", "s3cret") {
            assert!(Instant::now() < deadline, "htpasswd never read again");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(users.verify("ci", "n3w-and-longer"));
    }

    #[test]
    fn plain_users_and_a_missing_file() {
        let plain = vec![User {
            name: "ci".into(),
            password: "pw".into(),
        }];
        let users = Users::new(plain.clone(), None).unwrap();
        assert!(users.verify("ci", "pw"));
        assert!(!users.verify("ci", "pw2"));
        assert!(!users.verify("", ""));
        assert!(!format!("{:?}", plain[0]).contains("pw\""));
        assert!(Users::new(vec![], Some("/nonexistent/htpasswd".into())).is_err());
    }
}
