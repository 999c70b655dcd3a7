//! The certificates of a PEM file.

/// Each certificate of `pem` as its own PEM block.
pub(crate) fn certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]).into_bytes());
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_are_split_and_the_rest_dropped() {
        let one = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----";
        let text = format!("junk\n{one}\n{one}\n-----BEGIN CERTIFICATE-----\nunterminated");
        let certs = super::certificates(text.as_bytes());
        assert_eq!(certs, vec![format!("{one}\n").into_bytes(); 2]);
    }
}
