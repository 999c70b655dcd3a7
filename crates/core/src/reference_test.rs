use super::*;

fn repo(s: &str) -> String {
    Repository::parse_normalized(s, DOCKER_HUB)
        .unwrap()
        .to_string()
}

#[test]
fn normalises_docker_names() {
    assert_eq!(repo("nginx"), "docker.io/library/nginx");
    assert_eq!(repo("library/nginx"), "docker.io/library/nginx");
    assert_eq!(repo("team/app"), "docker.io/team/app");
    assert_eq!(repo("docker.io/nginx"), "docker.io/library/nginx");
    assert_eq!(
        repo("index.docker.io/library/nginx"),
        "docker.io/library/nginx"
    );
    assert_eq!(repo("localhost/app"), "localhost/app");
    assert_eq!(repo("localhost:5000/app"), "localhost:5000/app");
    assert_eq!(
        repo("registry.example.com:4433/team/app"),
        "registry.example.com:4433/team/app"
    );
    assert_eq!(repo("[::1]:5000/a/b"), "[::1]:5000/a/b");
    assert_eq!(repo("team/e--f.g_h__i"), "docker.io/team/e--f.g_h__i");
    assert!(Repository::parse_normalized("a.b-c__d/e", DOCKER_HUB).is_err());
}

#[test]
fn request_names_follow_mirror_rules() {
    let r = |name, ns| {
        Repository::from_request(name, ns, DOCKER_HUB)
            .unwrap()
            .to_string()
    };
    assert_eq!(r("library/nginx", None), "docker.io/library/nginx");
    assert_eq!(
        r("library/nginx", Some("docker.io")),
        "docker.io/library/nginx"
    );
    assert_eq!(r("nginx", Some("docker.io")), "docker.io/library/nginx");
    assert_eq!(
        r("docker.io/library/nginx", None),
        "docker.io/library/nginx"
    );
    assert_eq!(
        r("team/app", Some("registry.example.com:4433")),
        "registry.example.com:4433/team/app"
    );
    let custom = Repository::from_request("team/app", None, "mirror.local:5000").unwrap();
    assert_eq!(custom.to_string(), "mirror.local:5000/team/app");
    assert_eq!(custom.short_name("mirror.local:5000"), "team/app");
    let hub = Repository::from_request("nginx", None, DOCKER_HUB).unwrap();
    assert_eq!(hub.short_name(DOCKER_HUB), "library/nginx");
    assert_eq!(hub.short_name("other.io"), "docker.io/library/nginx");
    assert!(Repository::from_request("x", Some("bad host"), DOCKER_HUB).is_err());
}

#[test]
fn refuses_bad_names() {
    let long = format!("a/{}", "b".repeat(260));
    for bad in [
        "",
        "/",
        "a//b",
        "a/",
        "/a",
        "Upper/Case",
        "a/Upper",
        "a/../b",
        "..",
        "a/./b",
        "a/%2e%2e/b",
        "a/b c",
        "a/-b",
        "a/b-",
        "a/b_",
        "a/b___c",
        "a/b..c",
        "a/b:c",
        long.as_str(),
        "host:port/a",
        "host:/a",
        "-host.com/a",
        "[::1/a",
    ] {
        assert!(
            Repository::parse_normalized(bad, DOCKER_HUB).is_err(),
            "{bad:?} should be refused"
        );
    }
}

#[test]
fn name_length_counts_the_host() {
    let path = "a".repeat(255 - "docker.io/".len());
    assert!(Repository::parse_normalized(&format!("x/{}", &path[2..]), DOCKER_HUB).is_ok());
    assert!(Repository::parse_normalized(&format!("{path}b/c"), DOCKER_HUB).is_err());
}

#[test]
fn parses_references() {
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let r = ImageReference::parse("nginx").unwrap();
    assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
    let r = ImageReference::parse("localhost:5000/app:v1").unwrap();
    assert_eq!(r.repository.host(), "localhost:5000");
    assert_eq!(r.tag.as_deref(), Some("v1"));
    let r = ImageReference::parse(&format!("app@{d}")).unwrap();
    assert_eq!(r.tag, None);
    assert_eq!(r.digest.unwrap().as_str(), d);
    let r = ImageReference::parse(&format!("reg.io:443/a/b:1.0@{d}")).unwrap();
    assert_eq!(r.tag.as_deref(), Some("1.0"));
    assert_eq!(r.to_string(), format!("reg.io:443/a/b:1.0@{d}"));
}

#[test]
fn refuses_bad_references() {
    let long_tag = format!("app:{}", "t".repeat(129));
    for bad in [
        "app:",
        "app:-x",
        "app:.x",
        long_tag.as_str(),
        "app@sha256:abc",
        "app@",
        "APP",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "app:tag:tag",
    ] {
        assert!(
            ImageReference::parse(bad).is_err(),
            "{bad:?} should be refused"
        );
    }
    let sha384 = format!("app@sha384:{}", "a".repeat(96));
    assert!(matches!(
        ImageReference::parse(&sha384),
        Err(ReferenceError::Digest(DigestError::Unsupported(_)))
    ));
    // sha512, as the image specification registers it, is taken.
    let sha512 = format!("app@sha512:{}", "a".repeat(128));
    let r = ImageReference::parse(&sha512).unwrap();
    assert_eq!(
        r.digest.map(|d| d.algorithm()),
        Some(crate::Algorithm::Sha512)
    );
}

#[test]
fn tags() {
    assert!(validate_tag("latest").is_ok());
    assert!(validate_tag("_x.Y-1").is_ok());
    assert!(validate_tag(&"a".repeat(128)).is_ok());
    assert!(validate_tag(&"a".repeat(129)).is_err());
    assert!(validate_tag("").is_err());
    assert!(validate_tag("a/b").is_err());
}

#[test]
fn the_length_limit_holds_for_the_normalized_name() {
    // Found by fuzzing: a short name under 255 characters whose `docker.io/library/`
    // form is over it was taken, and its printed form then refused.
    let name = format!("app{}", "a".repeat(240));
    assert!(ImageReference::parse(&name).is_err());
    assert!(Repository::parse_normalized(&name, DOCKER_HUB).is_err());
    let fits = "a".repeat(255 - "docker.io/library/".len());
    let r = ImageReference::parse(&fits).unwrap();
    assert_eq!(ImageReference::parse(&r.to_string()).unwrap(), r);
}
