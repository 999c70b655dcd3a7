//! The byte ranges of requests: a blob read's `Range` and an upload chunk's
//! `Content-Range`. Pure functions over header text, so they can be fuzzed alone.

/// A header that names no range this request can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRange;

/// An inclusive byte range within a blob.
#[derive(Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

/// Reads a `Range` header against a blob of `size` bytes. `Ok(None)`: serve it whole
/// (no header, or several ranges, which the RFC lets a server ignore).
pub fn parse_range(value: &str, size: u64) -> Result<Option<ByteRange>, BadRange> {
    let spec = value.trim().strip_prefix("bytes=").ok_or(BadRange)?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(BadRange)?;
    let num = |s: &str| -> Result<u64, BadRange> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(BadRange);
        }
        s.parse().map_err(|_| BadRange)
    };
    let range = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n = num(suffix)?;
            if n == 0 || size == 0 {
                return Err(BadRange);
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            }
        }
        (start, "") => ByteRange {
            start: num(start)?,
            end: size.saturating_sub(1),
        },
        (start, end) => {
            let (s, e) = (num(start)?, num(end)?);
            if e < s {
                return Err(BadRange);
            }
            ByteRange {
                start: s,
                end: e.min(size.saturating_sub(1)),
            }
        }
    };
    if range.start >= size {
        return Err(BadRange);
    }
    Ok(Some(range))
}

/// The start offset of an upload chunk's `Content-Range` (`start-end`, `bytes
/// start-end/*` or `bytes=start-end`), checked against its `Content-Length` when given.
pub fn parse_content_range(value: &str, content_length: Option<u64>) -> Result<u64, BadRange> {
    let text = value.trim();
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let text = text.split('/').next().unwrap_or("");
    let (a, b) = text.split_once('-').ok_or(BadRange)?;
    let start: u64 = a.trim().parse().map_err(|_| BadRange)?;
    let end: u64 = b.trim().parse().map_err(|_| BadRange)?;
    if end < start {
        return Err(BadRange);
    }
    // `end - start + 1` overflows for `0-18446744073709551615`.
    if content_length.is_some_and(|l| Some(l) != (end - start).checked_add(1)) {
        return Err(BadRange);
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s, e| Ok(Some(ByteRange { start: s, end: e }));
        assert_eq!(parse_range("bytes=0-9", 100), r(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), r(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), r(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), r(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), r(50, 99));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        for bad in [
            "bytes=100-",
            "bytes=9-3",
            "bytes=-0",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
            "bytes=--1",
            "0-1",
        ] {
            assert_eq!(parse_range(bad, 100), Err(BadRange), "{bad}");
        }
        assert_eq!(parse_range("bytes=0-0", 0), Err(BadRange));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9", Some(10)), Ok(0));
        assert_eq!(parse_content_range("bytes 10-19/*", None), Ok(10));
        assert_eq!(parse_content_range("bytes=10-19", Some(10)), Ok(10));
        for bad in ["", "9-0", "a-b", "0-8", "-", "0-18446744073709551615"] {
            assert_eq!(parse_content_range(bad, Some(10)), Err(BadRange), "{bad}");
        }
    }
}
