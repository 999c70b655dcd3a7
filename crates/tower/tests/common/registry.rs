//! A tiny upstream registry over plain HTTP/1.1 for the tests: manifests by tag or digest,
//! blobs with `Range`, optional Basic auth, and injected faults.

use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Default)]
pub struct Content {
    /// repository path -> reference (tag or digest) -> (media type, body)
    pub manifests: HashMap<String, HashMap<String, (String, Vec<u8>)>>,
    /// digest -> bytes (any repository)
    pub blobs: HashMap<String, Vec<u8>>,
    /// Basic credentials required on every request, if any.
    pub basic: Option<(String, String)>,
    /// Repositories that answer 429.
    pub rate_limited: Vec<String>,
    /// Once: cut the body of this blob after this many bytes.
    pub cut_blob_once: Option<(String, usize)>,
    /// Range requests served (offsets).
    pub ranges: Vec<u64>,
    /// Authorization headers seen.
    pub saw_authorization: bool,
}

#[derive(Clone, Default)]
pub struct Registry(pub Arc<Mutex<Content>>);

impl Registry {
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        body: Vec<u8>,
    ) -> String {
        let digest = sha256(&body);
        let mut c = self.0.lock().unwrap();
        let refs = c.manifests.entry(repo.to_owned()).or_default();
        refs.insert(digest.clone(), (media_type.to_owned(), body.clone()));
        if let Some(t) = tag {
            refs.insert(t.to_owned(), (media_type.to_owned(), body));
        }
        digest
    }

    pub fn put_blob(&self, data: Vec<u8>) -> String {
        let digest = sha256(&data);
        self.0.lock().unwrap().blobs.insert(digest.clone(), data);
        digest
    }

    /// Serves on 127.0.0.1; returns `host:port`.
    pub async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let _ = me.handle(stream).await;
                });
            }
        });
        addr
    }

    async fn handle(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let response = self.respond(&method, &path, &headers);
        let (status, extra, body, cut) = response;
        let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in &extra {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(out.as_bytes()).await?;
        if method != "HEAD" {
            let end = cut.unwrap_or(body.len()).min(body.len());
            stream.write_all(&body[..end]).await?;
        }
        stream.flush().await?;
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn respond(
        &self,
        _method: &str,
        path: &str,
        headers: &HashMap<String, String>,
    ) -> (&'static str, Vec<(String, String)>, Vec<u8>, Option<usize>) {
        let mut c = self.0.lock().unwrap();
        let json = |code: &str, msg: &str| {
            format!(r#"{{"errors":[{{"code":"{code}","message":"{msg}"}}]}}"#).into_bytes()
        };
        let ct = |v: &str| vec![("Content-Type".to_owned(), v.to_owned())];
        if let Some(auth) = headers.get("authorization") {
            c.saw_authorization = true;
            let _ = auth;
        }
        if let Some((user, pass)) = c.basic.clone() {
            use base64::Engine as _;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            if headers.get("authorization") != Some(&expected) {
                let mut h = ct("application/json");
                h.push(("WWW-Authenticate".into(), r#"Basic realm="fake""#.into()));
                return (
                    "401 Unauthorized",
                    h,
                    json("UNAUTHORIZED", "authentication required"),
                    None,
                );
            }
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return ("404 Not Found", vec![], vec![], None);
        };
        if rest.is_empty() {
            return ("200 OK", ct("application/json"), b"{}".to_vec(), None);
        }
        if c.rate_limited
            .iter()
            .any(|r| rest.starts_with(&format!("{r}/")))
        {
            return (
                "429 Too Many Requests",
                ct("application/json"),
                json("TOOMANYREQUESTS", "pull rate limit"),
                None,
            );
        }
        if let Some((repo, reference)) = rest.split_once("/manifests/") {
            return match c.manifests.get(repo).and_then(|m| m.get(reference)) {
                Some((media_type, body)) => {
                    let mut h = ct(media_type);
                    h.push(("Docker-Content-Digest".into(), sha256(body)));
                    ("200 OK", h, body.clone(), None)
                }
                None => (
                    "404 Not Found",
                    ct("application/json"),
                    json("MANIFEST_UNKNOWN", "manifest unknown"),
                    None,
                ),
            };
        }
        if let Some((_repo, digest)) = rest.split_once("/blobs/") {
            let Some(data) = c.blobs.get(digest).cloned() else {
                return (
                    "404 Not Found",
                    ct("application/json"),
                    json("BLOB_UNKNOWN", "blob unknown"),
                    None,
                );
            };
            let cut = match &c.cut_blob_once {
                Some((d, n)) if d == digest => {
                    let n = *n;
                    c.cut_blob_once = None;
                    Some(n)
                }
                _ => None,
            };
            let range = headers
                .get("range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|r| r.parse::<usize>().ok());
            let mut h = ct("application/octet-stream");
            h.push(("Docker-Content-Digest".into(), digest.to_owned()));
            return match range {
                Some(start) if start <= data.len() => {
                    c.ranges.push(start as u64);
                    h.push((
                        "Content-Range".into(),
                        format!(
                            "bytes {start}-{}/{}",
                            data.len().saturating_sub(1),
                            data.len()
                        ),
                    ));
                    ("206 Partial Content", h, data[start..].to_vec(), cut)
                }
                _ => ("200 OK", h, data, cut),
            };
        }
        ("404 Not Found", vec![], vec![], None)
    }
}
