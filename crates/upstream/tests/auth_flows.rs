//! The client against small registries on 127.0.0.1 that answer as token-authenticated,
//! Basic-authenticated and redirecting registries do: what each request carried, and
//! what the client made of the answers.

use base64::Engine as _;
use site_core::Digest;
use site_upstream::{Reference, RegistryAuth, Upstream, UpstreamError};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// One request as the registry saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    range: Option<String>,
}

/// An answer: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A registry on 127.0.0.1 answering each request with `answer` on its own thread.
struct Registry {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Registry {
    fn start(answer: impl Fn(&Seen, SocketAddr) -> Answer + Send + Sync + 'static) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (log, answer) = (log.clone(), answer.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or_default().to_owned();
                        let path = parts.next().unwrap_or_default().to_owned();
                        let (mut authorization, mut range, mut length) = (None, None, 0usize);
                        loop {
                            let mut h = String::new();
                            reader.read_line(&mut h).unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (k, v) = h.split_once(':').unwrap();
                            let v = v.trim().to_owned();
                            match k.to_ascii_lowercase().as_str() {
                                "authorization" => authorization = Some(v),
                                "range" => range = Some(v),
                                "content-length" => length = v.parse().unwrap(),
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let request = Seen {
                            method,
                            path,
                            authorization,
                            range,
                        };
                        log.lock().unwrap().push(request.clone());
                        let (status, headers, body) = answer(&request, addr);
                        let mut head =
                            format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                        for (k, v) in headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        stream.write_all(head.as_bytes()).unwrap();
                        if request.method != "HEAD" {
                            stream.write_all(&body).unwrap();
                        }
                    }
                });
            }
        });
        Registry { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn client(registries: &[&Registry]) -> Upstream {
    let hosts: Vec<String> = registries.iter().map(|r| r.addr.to_string()).collect();
    Upstream::new(&hosts).unwrap()
}

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

fn manifest_answer() -> Answer {
    let digest = Digest::of(MANIFEST).to_string();
    let headers = vec![
        (
            "Content-Type".into(),
            "application/vnd.oci.image.manifest.v1+json".into(),
        ),
        ("Docker-Content-Digest".into(), digest),
    ];
    (200, headers, MANIFEST.to_vec())
}

fn unauthorized(challenge: String) -> Answer {
    let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
    (
        401,
        vec![("WWW-Authenticate".into(), challenge)],
        body.to_vec(),
    )
}

/// A registry whose token service (at `/token` on itself) grants `t0k3n` for `granted`
/// credentials (any request when `None`).
fn token_registry(granted: Option<String>) -> Registry {
    Registry::start(move |r, addr| {
        if r.path.starts_with("/token") {
            return if granted.is_none() || r.authorization == granted {
                (
                    200,
                    vec![],
                    br#"{"token":"t0k3n","expires_in":300}"#.to_vec(),
                )
            } else {
                (401, vec![], b"{}".to_vec())
            };
        }
        if r.authorization.as_deref() != Some("Bearer t0k3n") {
            return unauthorized(format!(
                r#"Bearer realm="http://{addr}/token",service="test registry",scope="repository:team/app:pull""#
            ));
        }
        manifest_answer()
    })
}

/// Every byte of a blob stream.
async fn read(s: site_upstream::client::ByteStream) -> Vec<u8> {
    use futures_util::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = s.try_collect().await.unwrap();
    chunks.concat()
}

fn tagged(r: &Registry) -> Reference {
    Reference::with_tag(r.addr.to_string(), "team/app".into(), "v1".into())
}

#[tokio::test]
async fn an_anonymous_token_is_fetched_once_and_used_for_every_request() {
    let registry = token_registry(None);
    let up = client(&[&registry]);
    let image = tagged(&registry);
    let (body, digest) = up.manifest(&image, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!((body.as_ref(), &digest), (MANIFEST, &Digest::of(MANIFEST)));
    let head = up
        .manifest_digest(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(head, digest);
    let seen = registry.seen();
    let tokens: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .collect();
    assert_eq!(tokens.len(), 1, "{seen:?}");
    assert_eq!(
        tokens[0].authorization, None,
        "anonymous: no credentials to the token service"
    );
    assert!(
        tokens[0].path.contains("service=test+registry")
            && tokens[0]
                .path
                .contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{}",
        tokens[0].path
    );
    // The challenge, the token, the manifest, then the HEAD straight with the token.
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[3].method, "HEAD");
    assert_eq!(seen[3].authorization.as_deref(), Some("Bearer t0k3n"));
}

#[tokio::test]
async fn credentials_go_to_the_token_service_and_a_refusal_is_an_auth_failure() {
    let good = basic("robot", "pw");
    let registry = token_registry(Some(good.clone()));
    let up = client(&[&registry]);
    let auth = RegistryAuth::Basic("robot".into(), "pw".into());
    up.manifest(&tagged(&registry), &auth).await.unwrap();
    let seen = registry.seen();
    let token = seen.iter().find(|s| s.path.starts_with("/token")).unwrap();
    assert_eq!(token.authorization.as_deref(), Some(good.as_str()));
    // The registry itself never saw the password.
    assert!(seen
        .iter()
        .filter(|s| !s.path.starts_with("/token"))
        .all(|s| s.authorization.as_deref() != Some(good.as_str())));

    let up = client(&[&registry]);
    let wrong = RegistryAuth::Basic("robot".into(), "wrong".into());
    let e = up.manifest(&tagged(&registry), &wrong).await.unwrap_err();
    assert!(matches!(e, UpstreamError::AuthFailed(_)), "{e:?}");
    assert!(e.to_string().contains("token request refused"), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");
}

#[tokio::test]
async fn a_basic_registry_gets_the_credentials_after_its_challenge_and_then_at_once() {
    let good = basic("robot", "pw");
    let expected = good.clone();
    let registry = Registry::start(move |r, _| {
        if r.authorization.as_deref() != Some(expected.as_str()) {
            return unauthorized(r#"Basic realm="registry""#.into());
        }
        manifest_answer()
    });
    let up = client(&[&registry]);
    let image = tagged(&registry);
    let auth = RegistryAuth::Basic("robot".into(), "pw".into());
    up.manifest(&image, &auth).await.unwrap();
    up.manifest(&image, &auth).await.unwrap();
    let seen = registry.seen();
    let carried: Vec<bool> = seen.iter().map(|s| s.authorization.is_some()).collect();
    assert_eq!(carried, vec![false, true, true], "{seen:?}");

    // Without credentials the challenge is the answer.
    let e = client(&[&registry])
        .manifest(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::AuthFailed(_)), "{e:?}");
}

#[tokio::test]
async fn resumed_blobs_ask_a_range_and_a_registry_that_ignores_it_is_skipped_into() {
    let blob = b"0123456789".to_vec();
    let digest = Digest::of(&blob);
    let honours = Arc::new(Mutex::new(true));
    let (data, honour) = (blob.clone(), honours.clone());
    let registry = Registry::start(move |r, _| match (&r.range, *honour.lock().unwrap()) {
        (Some(range), true) => {
            let from: usize = range
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap();
            let content_range = format!("bytes {from}-{}/{}", data.len() - 1, data.len());
            (
                206,
                vec![("Content-Range".into(), content_range)],
                data[from..].to_vec(),
            )
        }
        _ => (200, vec![], data.clone()),
    });
    let up = client(&[&registry]);
    let image = Reference::with_digest(
        registry.addr.to_string(),
        "team/app".into(),
        digest.to_string(),
    );
    let (s, skip) = up.blob(&image, &digest, 4).await.unwrap();
    assert_eq!((read(s).await, skip), (blob[4..].to_vec(), 0));
    *honours.lock().unwrap() = false;
    let (s, skip) = up.blob(&image, &digest, 4).await.unwrap();
    assert_eq!((read(s).await, skip), (blob.clone(), 4));
    let (s, length) = up.blob_whole(&image, &digest).await.unwrap();
    assert_eq!((read(s).await, length), (blob.clone(), Some(10)));
    assert_eq!(registry.seen()[0].range.as_deref(), Some("bytes=4-"));
}

/// A registry taking `robot:pw` as Basic credentials that redirects every blob to
/// `storage`.
fn redirecting_to(storage: SocketAddr) -> Registry {
    let expected = basic("robot", "pw");
    Registry::start(move |r, _| {
        if r.authorization.as_deref() != Some(expected.as_str()) {
            return unauthorized(r#"Basic realm="registry""#.into());
        }
        if r.path.contains("/blobs/") {
            let location = format!("http://{storage}/bucket/layer");
            return (307, vec![("Location".into(), location)], vec![]);
        }
        manifest_answer()
    })
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_host() {
    let storage = Registry::start(|_, _| (200, vec![], b"layer".to_vec()));
    let registry = redirecting_to(storage.addr);
    let up = client(&[&registry, &storage]);
    let auth = RegistryAuth::Basic("robot".into(), "pw".into());
    let image = tagged(&registry);
    up.manifest(&image, &auth).await.unwrap();
    let digest = Digest::of(b"layer");
    let (s, _) = up.blob_whole(&image, &digest).await.unwrap();
    assert_eq!(read(s).await, b"layer");
    let seen = storage.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization, None,
        "the password went to another host"
    );
}

#[tokio::test]
async fn refusals_keep_their_meaning() {
    let registry = Registry::start(|r, _| {
        if r.path.contains("missing") {
            let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no such tag"}]}"#;
            return (404, vec![], body.to_vec());
        }
        (
            429,
            vec![("Retry-After".into(), "17".into())],
            b"slow down".to_vec(),
        )
    });
    let up = client(&[&registry]);
    let missing = Reference::with_tag(
        registry.addr.to_string(),
        "team/app".into(),
        "missing".into(),
    );
    let e = up
        .manifest(&missing, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::NotFound(_)), "{e:?}");
    let e = up
        .manifest_digest(&tagged(&registry), &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            UpstreamError::RateLimited {
                retry_after: Some(17),
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_challenge_from_a_host_redirected_to_is_not_answered() {
    // Blob storage the registry redirects to answers 401 naming a token realm of its
    // own: the credentials must not go there.
    let evil = Registry::start(|_, _| (200, vec![], br#"{"token":"stolen"}"#.to_vec()));
    let realm = format!("http://{}/token", evil.addr);
    let storage = Registry::start(move |_, _| {
        unauthorized(format!(r#"Bearer realm="{realm}",service="storage""#))
    });
    let registry = redirecting_to(storage.addr);
    let up = client(&[&registry, &storage, &evil]);
    let auth = RegistryAuth::Basic("robot".into(), "pw".into());
    let image = tagged(&registry);
    up.manifest(&image, &auth).await.unwrap();
    let e = match up.blob_whole(&image, &Digest::of(b"layer")).await {
        Err(e) => e,
        Ok(_) => panic!("a 401 from blob storage is a refusal"),
    };
    assert!(matches!(e, UpstreamError::AuthFailed(_)), "{e:?}");
    assert!(evil.seen().is_empty(), "{:?}", evil.seen());
    assert_eq!(storage.seen().len(), 1);
}
