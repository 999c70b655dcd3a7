//! Changes of the site's voters, as the log carries them (in the context of a Raft
//! configuration change).

use serde::{Deserialize, Serialize};

/// A change of the site's voters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MemberChange {
    /// Node `id`, reachable by its peers at `address` (its `[cluster] listen`), joins.
    Add {
        /// Its node id.
        id: u64,
        /// `HOST:PORT` of its cluster listener.
        address: String,
    },
    /// Node `id` leaves.
    Remove {
        /// Its node id.
        id: u64,
    },
}

impl MemberChange {
    /// The node it is about.
    pub fn id(&self) -> u64 {
        match self {
            MemberChange::Add { id, .. } | MemberChange::Remove { id } => *id,
        }
    }
}

/// Longest cluster address taken.
const ADDRESS_MAX: usize = 261;

/// Whether `address` is a node's cluster address as `[cluster] peers` spells it:
/// `HOST:PORT`, the host a DNS name, an IPv4 address or a bracketed IPv6 address, the
/// port 1 to 65535; no scheme, no path, no spaces. The error says why, without quoting
/// more than a little of it.
pub fn check_address(address: &str) -> Result<(), String> {
    let shown: String = address.chars().take(64).collect();
    let bad = |why: &str| Err(format!("node address {shown:?} is not HOST:PORT: {why}"));
    if address.is_empty() {
        return bad("empty");
    }
    if address.len() > ADDRESS_MAX {
        return bad("too long");
    }
    if address.contains("://") {
        return bad("a URL; give the host and port only");
    }
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((v6, port)) = rest.split_once("]:") else {
            return bad("an IPv6 address is written [ADDRESS]:PORT");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("not an IPv6 address in the brackets");
        }
        (None, port)
    } else {
        let Some((host, port)) = address.rsplit_once(':') else {
            return bad("no port");
        };
        (Some(host), port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
        return bad("the port is not a number");
    }
    if !(1..=65535).contains(&port.parse::<u32>().unwrap_or(0)) {
        return bad("the port is not between 1 and 65535");
    }
    let Some(host) = host else { return Ok(()) };
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return bad("the host is not a DNS name or an IP address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_address;

    #[test]
    fn addresses_are_host_and_port() {
        for good in [
            "10.0.0.5:50052",
            "node-2.site.local:7000",
            "localhost:1",
            "[::1]:50052",
            "[fe80::1]:65535",
        ] {
            assert_eq!(check_address(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "h :1",
            "http://h:1",
            "[::1",
            "[::1]",
            "h\0:1",
            "h:0",
            "h:65536",
            "h:",
            "h",
            ":1",
            "h:1/path",
            "-h:1",
            "h..x:1",
            "::1:5",
            "[nothex]:1",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        assert!(check_address(&format!("{}:1", "a".repeat(300))).is_err());
        let long = check_address(&format!("{}x:1", "a ".repeat(100))).unwrap_err();
        assert!(long.len() < 200, "{long}");
    }
}
