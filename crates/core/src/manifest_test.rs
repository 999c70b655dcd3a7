use super::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn image(media_type: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}",
        "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":10}},
        "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":20}}]}}"#
    )
}

#[test]
fn parses_oci_and_docker_image_manifests() {
    for mt in [OCI_MANIFEST, DOCKER_MANIFEST] {
        let m = Manifest::parse(image(mt).as_bytes(), None).unwrap();
        assert_eq!(m.media_type, mt);
        let blobs: Vec<_> = m
            .blob_references()
            .iter()
            .map(|d| d.digest.to_string())
            .collect();
        assert_eq!(blobs, [D1, D2]);
        assert!(m.manifest_references().is_empty());
        assert_eq!(
            m.effective_artifact_type().as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }
}

#[test]
fn parses_indexes() {
    for mt in [OCI_INDEX, DOCKER_MANIFEST_LIST] {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":6,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        );
        let m = Manifest::parse(body.as_bytes(), Some(mt)).unwrap();
        assert_eq!(m.manifest_references().len(), 2);
        assert!(m.blob_references().is_empty());
    }
}

#[test]
fn media_type_from_header_or_shape() {
    let body = image(OCI_MANIFEST).replace(&format!(r#""mediaType":"{OCI_MANIFEST}","#), "");
    assert_eq!(
        Manifest::parse(body.as_bytes(), None).unwrap().media_type,
        OCI_MANIFEST
    );
    let m = Manifest::parse(
        body.as_bytes(),
        Some(&format!("{OCI_MANIFEST}; charset=utf-8")),
    )
    .unwrap();
    assert_eq!(m.media_type, OCI_MANIFEST);
}

#[test]
fn reads_subject_artifact_type_annotations() {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x.sig",
        "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},
        "layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":100}},
        "annotations":{{"k":"v"}}}}"#
    );
    let m = Manifest::parse(body.as_bytes(), None).unwrap();
    assert_eq!(m.subject.as_ref().unwrap().digest.as_str(), D2);
    assert_eq!(
        m.effective_artifact_type().as_deref(),
        Some("application/x.sig")
    );
    let d = m.referrer_descriptor(Digest::parse(D1).unwrap(), 7);
    assert_eq!(d.annotations.get("k").map(String::as_str), Some("v"));
}

#[test]
fn foreign_layers_need_not_be_present() {
    let body =
        image(DOCKER_MANIFEST).replace(r#""size":20}"#, r#""size":20,"urls":["https://x"]}"#);
    let m = Manifest::parse(body.as_bytes(), None).unwrap();
    assert_eq!(m.blob_references().len(), 1);
}

#[test]
fn refuses_bad_manifests() {
    let cases: Vec<(String, Option<&str>)> = vec![
        ("not json".into(), None),
        ("[1,2]".into(), None),
        ("{}".into(), None),
        (r#"{"schemaVersion":1,"name":"x"}"#.into(), None),
        (r#"{"schemaVersion":3}"#.into(), None),
        (r#"{"schemaVersion":2}"#.into(), None),
        (image("application/x-unknown"), None),
        (image(OCI_MANIFEST), Some(OCI_INDEX)),
        (image(OCI_MANIFEST).replace(D1, "sha256:short"), None),
        (
            image(OCI_MANIFEST).replace(r#""size":10"#, r#""size":-1"#),
            None,
        ),
        (
            image(OCI_MANIFEST).replace(r#""size":10"#, r#""size":"10""#),
            None,
        ),
        (
            image(OCI_MANIFEST)
                .replace(r#""layers":["#, r#""layers":{"x":["#)
                .replace("}]}", "}]}}"),
            None,
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}"}}"#),
            None,
        ),
        (
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"digest":"{D1}","size":1}}]}}"#
            ),
            None,
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#),
            None,
        ),
    ];
    for (body, ct) in cases {
        assert!(
            Manifest::parse(body.as_bytes(), ct).is_err(),
            "should refuse {body}"
        );
    }
}
