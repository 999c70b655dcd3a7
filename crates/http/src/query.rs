//! The query string of a request, percent-decoded.

use std::collections::HashMap;

/// Query parameters of a request, each with its values in order.
pub struct Query(HashMap<String, Vec<String>>);

impl Query {
    /// The parameters of a query string (`None`: no query).
    pub fn parse(q: Option<&str>) -> Query {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.entry(decode(k)).or_default().push(decode(v));
        }
        Query(map)
    }

    /// The first value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    /// Every value of `k`, in order.
    pub fn all(&self, k: &str) -> &[String] {
        self.0.get(k).map_or(&[], Vec::as_slice)
    }
}

/// Percent-decoding of a query component (`+` is a space in forms, but digests and
/// names never hold one, so it is left alone).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |x: u8| (x as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_values_percent_decoded() {
        let q = Query::parse(Some("n=10&last=a%2Fb&n=20&ns=docker.io&flag&bad=%zz%4"));
        assert_eq!(q.get("n"), Some("10"));
        assert_eq!(q.get("last"), Some("a/b"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("bad"), Some("%zz%4"));
        assert_eq!(Query::parse(None).get("n"), None);
        // Bytes that decode to invalid UTF-8 are replaced, not a panic.
        assert_eq!(Query::parse(Some("x=%ff")).get("x"), Some("\u{fffd}"));
        assert_eq!(q.all("n"), ["10", "20"]);
        assert!(q.all("tag").is_empty());
    }
}
