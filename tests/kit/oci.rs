//! OCI content built on the fly: tar layers, image configs, manifests and indexes, OCI
//! image layouts on disk for skopeo, and pushes over plain HTTP.

use super::http::{basic, request, Response};
use super::node::{PASSWORD, USER};
use super::{bytes, digest};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A blob with its digest.
#[derive(Clone)]
pub struct Blob {
    pub media_type: String,
    pub data: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.into(),
            digest: digest(&data),
            data,
        }
    }

    pub fn descriptor(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.data.len() })
    }
}

/// A single-platform image.
#[derive(Clone)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub arch: String,
}

impl Image {
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// An uncompressed tar holding one file of `size` pseudo-random bytes.
pub fn tar_layer(seed: u64, size: usize) -> Vec<u8> {
    let name = format!("file-{seed}.bin");
    let data = bytes(seed, size);
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", size).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(&data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// An image of uncompressed tar layers of the given sizes.
pub fn image(seed: u64, layer_sizes: &[usize], arch: &str) -> Image {
    let layers: Vec<Blob> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| Blob::new(OCI_LAYER, tar_layer(seed * 1000 + i as u64, s)))
        .collect();
    from_layers(layers, arch)
}

/// Rebuilds the config and manifest of an image whose layers were changed.
pub fn rebuild(img: Image) -> Image {
    from_layers(img.layers, &img.arch)
}

fn from_layers(layers: Vec<Blob>, arch: &str) -> Image {
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Cmd": ["/bin/true"] },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
    });
    let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        digest: digest(&manifest),
        config,
        layers,
        manifest,
        arch: arch.into(),
    }
}

/// An image index over single-platform images.
pub fn index(images: &[&Image]) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().map(|i| json!({
            "mediaType": OCI_MANIFEST,
            "digest": i.digest,
            "size": i.manifest.len(),
            "platform": { "os": "linux", "architecture": i.arch },
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let d = digest(&body);
    (body, d)
}

/// Writes an OCI image layout holding `images` (and `index`, if given) with tags
/// `(tag, manifest bytes, media type)`.
pub fn write_layout(
    dir: &Path,
    images: &[&Image],
    index: Option<&[u8]>,
    tags: &[(&str, &[u8], &str)],
) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = digest(data);
        std::fs::write(blobs.join(&d["sha256:".len()..]), data).unwrap();
    };
    for i in images {
        for b in i.blobs() {
            put(&b.data);
        }
        put(&i.manifest);
    }
    if let Some(ix) = index {
        put(ix);
    }
    let manifests: Vec<_> = tags
        .iter()
        .map(|(tag, body, mt)| {
            json!({
                "mediaType": mt, "digest": digest(body), "size": body.len(),
                "annotations": { "org.opencontainers.image.ref.name": tag },
            })
        })
        .collect();
    let idx = json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// The `Authorization` header of the test push user.
pub fn auth() -> String {
    basic(USER, PASSWORD)
}

/// Pushes a blob in one POST.
pub fn push_blob(addr: SocketAddr, repo: &str, data: &[u8]) -> Response {
    let a = auth();
    let path = format!("/v2/{repo}/blobs/uploads/?digest={}", digest(data));
    request(addr, "POST", &path, &[("Authorization", a.as_str())], data)
}

/// Pushes a manifest.
pub fn push_manifest(
    addr: SocketAddr,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Response {
    let a = auth();
    let path = format!("/v2/{repo}/manifests/{reference}");
    request(
        addr,
        "PUT",
        &path,
        &[("Authorization", a.as_str()), ("Content-Type", media_type)],
        body,
    )
}

/// Pushes an image's blobs and manifest, asserting success.
pub fn push_image(addr: SocketAddr, repo: &str, tag: &str, image: &Image) {
    for b in image.blobs() {
        let r = push_blob(addr, repo, &b.data);
        assert_eq!(
            r.status,
            201,
            "push blob: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = push_manifest(addr, repo, tag, OCI_MANIFEST, &image.manifest);
    assert_eq!(
        r.status,
        201,
        "push manifest: {}",
        String::from_utf8_lossy(&r.body)
    );
}

/// Pushes `image` as `repo:v1` the two-step way, without credentials (to the reference
/// registry).
pub fn push_image_two_step(addr: SocketAddr, repo: &str, image: &Image) {
    push_image_as(addr, repo, "v1", image);
}

/// Pushes `image` as `repo:tag` the two-step way, without credentials.
pub fn push_image_as(addr: SocketAddr, repo: &str, tag: &str, image: &Image) {
    for b in image.blobs() {
        assert_eq!(push_blob_two_step(addr, repo, &b.data, None).status, 201);
    }
    let r = request(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", OCI_MANIFEST)],
        &image.manifest,
    );
    assert_eq!(r.status, 201);
}

/// Pushes a blob the two-step way every registry supports (POST, then PUT with the
/// digest), with optional credentials. Works against the reference registry too.
pub fn push_blob_two_step(
    addr: SocketAddr,
    repo: &str,
    data: &[u8],
    authorization: Option<&str>,
) -> Response {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    let r = request(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &headers,
        b"",
    );
    assert_eq!(
        r.status,
        202,
        "start upload: {}",
        String::from_utf8_lossy(&r.body)
    );
    let location = r.header("location").unwrap();
    // The reference registry answers with an absolute URL.
    let path = match location.find("/v2/") {
        Some(i) => &location[i..],
        None => location,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    request(
        addr,
        "PUT",
        &format!("{path}{sep}digest={}", digest(data)),
        &headers,
        data,
    )
}

/// Copies `reference` (`repo:tag` or `repo@digest`) from the registry at `site`
/// (`HOST:PORT`, plain HTTP, no credentials) with skopeo into the OCI layout at `layout`,
/// digests preserved.
pub fn skopeo_copy(site: &str, reference: &str, layout: &Path) {
    super::tools::run(
        std::process::Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--src-no-creds",
            ])
            .arg(format!("docker://{site}/{reference}"))
            .arg(format!("oci:{}:pulled", layout.display())),
    );
}

/// Every blob of a pulled layout is named by the digest of its bytes; returns the names.
pub fn verified_blobs(layout: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = format!("sha256:{}", e.file_name().to_string_lossy());
        assert_eq!(
            digest(&std::fs::read(e.path()).unwrap()),
            name,
            "pulled blob does not match its name"
        );
        names.push(name);
    }
    names
}

/// The digest of the (first) image a pull wrote into an OCI layout.
pub fn pulled_root(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

/// The registry at `addr` serves every blob of `image` in `repo`, each whole.
pub fn assert_blobs_served(addr: SocketAddr, repo: &str, image: &Image) {
    for b in image.blobs() {
        let r = request(
            addr,
            "GET",
            &format!("/v2/{repo}/blobs/{}", b.digest),
            &[],
            b"",
        );
        assert_eq!(
            (r.status, digest(&r.body)),
            (200, b.digest.clone()),
            "{repo}"
        );
    }
}

/// `blobs` (of a pulled layout) hold `image`'s manifest and every blob of it.
pub fn assert_pulled(blobs: &[String], image: &Image) {
    assert!(
        blobs.contains(&image.digest),
        "manifest {} missing",
        image.digest
    );
    for b in image.blobs() {
        assert!(
            blobs.contains(&b.digest),
            "blob {} missing from the pull",
            b.digest
        );
    }
}

/// Puts `image` at `dest` (`HOST:PORT/repo:tag`) on the upstream with skopeo.
pub fn upload(work: &Path, image: &Image, dest: &str, creds: Option<&str>) {
    let layout = work.join(format!("layout-{}", &image.digest[7..19]));
    write_layout(
        &layout,
        &[image],
        None,
        &[("img", &image.manifest, OCI_MANIFEST)],
    );
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args([
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]);
    match creds {
        Some(c) => cmd.args(["--dest-creds", c]),
        None => cmd.arg("--dest-no-creds"),
    };
    super::tools::run(
        cmd.arg(format!("oci:{}:img", layout.display()))
            .arg(format!("docker://{dest}")),
    );
}
