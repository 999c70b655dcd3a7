//! Which scope of `transports.docker` applies to an image: the first of its reference
//! (`host[:port]/path:tag` or `@digest`), its repository, each namespace above it up to
//! the host (`host[:port]/ns`, `host[:port]`), then wildcards of the host without its
//! port (`*.example.com` for `reg.example.com`, any depth; never `example.com` itself),
//! then `""`, then `default`. Only that scope's list applies; lists never merge.

use crate::identity::Reference;

/// The scopes that could apply to `image`, most specific first (`default` aside).
pub(crate) fn scopes(image: &Reference) -> Vec<String> {
    let mut out = vec![image.to_string()];
    let mut name = image.name.as_str();
    out.push(name.to_owned());
    while let Some((up, _)) = name.rsplit_once('/') {
        out.push(up.to_owned());
        name = up;
    }
    let host = name.split(':').next().unwrap_or(name);
    let mut rest = host;
    while let Some((_, up)) = rest.split_once('.') {
        out.push(format!("*.{up}"));
        rest = up;
    }
    out.push(String::new());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    #[test]
    fn scopes_go_from_the_reference_to_the_host_then_wildcards() {
        let r = Reference::parse("a.b.example.com:5000/ns/app:v1").unwrap();
        assert_eq!(
            scopes(&r),
            [
                "a.b.example.com:5000/ns/app:v1",
                "a.b.example.com:5000/ns/app",
                "a.b.example.com:5000/ns",
                "a.b.example.com:5000",
                "*.b.example.com",
                "*.example.com",
                "*.com",
                "",
            ]
        );
    }

    #[test]
    fn the_most_specific_scope_wins_alone() {
        let text = r#"{"default":[{"type":"reject"}],"transports":{"docker":{
            "reg.example:5000/ns/app:v1":[{"type":"insecureAcceptAnything"}],
            "reg.example:5000/ns":[{"type":"reject"}],
            "reg.example":[{"type":"insecureAcceptAnything"}],
            "*.example":[{"type":"insecureAcceptAnything"}]}}}"#;
        let p = Policy::parse(text.as_bytes(), std::path::Path::new("/")).unwrap();
        let scope = |s: &str| p.scope_for(&Reference::parse(s).unwrap()).0;
        assert_eq!(
            scope("reg.example:5000/ns/app:v1"),
            "reg.example:5000/ns/app:v1"
        );
        assert_eq!(scope("reg.example:5000/ns/app:v2"), "reg.example:5000/ns");
        // A host without a port is another scope than the host with one.
        assert_eq!(scope("reg.example:5000/other/app:v1"), "*.example");
        assert_eq!(scope("reg.example/other/app:v1"), "reg.example");
        assert_eq!(scope("elsewhere.io/app:v1"), "default");
    }
}
