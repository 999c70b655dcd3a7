//! The few fields of an X.509 certificate the API reads: its subject's common name and
//! organisational unit, found by walking the DER of `tbsCertificate` (RFC 5280, 4.1)
//! down to the subject. The certificate was verified during the handshake; nothing here
//! decides whether to trust it.

/// OID 2.5.4.3 (commonName) and 2.5.4.11 (organizationalUnitName), DER-encoded.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const UNIT: &[u8] = &[0x55, 0x04, 0x0b];

/// One DER element: its tag, its contents, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, b| (l << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject's attributes as `(oid, value)` pairs of a certificate's DER.
fn subject(der: &[u8]) -> Option<Vec<(&[u8], String)>> {
    let (_, cert, _) = element(der)?; // Certificate ::= SEQUENCE
    let (_, tbs, _) = element(cert)?; // tbsCertificate ::= SEQUENCE
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after; // [0] version
    }
    for _ in 0..4 {
        rest = element(rest)?.2; // serialNumber, signature, issuer, validity
    }
    let (_, name, _) = element(rest)?; // subject ::= SEQUENCE OF RelativeDistinguishedName
    let mut out = Vec::new();
    let mut sets = name;
    while !sets.is_empty() {
        let (_, set, next) = element(sets)?;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (_, atv, more) = element(atvs)?;
            let (_, oid, value) = element(atv)?;
            let (_, text, _) = element(value)?;
            out.push((oid, String::from_utf8_lossy(text).into_owned()));
            atvs = more;
        }
        sets = next;
    }
    Some(out)
}

/// The subject's common name and organisational unit (the first of each), from a
/// certificate's DER.
pub fn name_and_unit(der: &[u8]) -> (Option<String>, Option<String>) {
    let Some(attrs) = subject(der) else {
        return (None, None);
    };
    let find = |oid: &[u8]| {
        attrs
            .iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, v)| v.clone())
    };
    (find(COMMON_NAME), find(UNIT))
}
