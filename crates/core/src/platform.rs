//! Platforms as `docker --platform` spells them (`os/arch[/variant]`), and the choice of
//! an index entry by platform.

use crate::manifest::Descriptor;
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A platform as `docker --platform` spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// CPU variant (`v7`, `v8`), if given.
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) {
            return Err(format!("{s:?} is not os/arch[/variant] (e.g. linux/arm64)"));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Reads the `platform` object of an index entry; `None` when it has none.
    pub fn of_entry(platform: Option<&Value>) -> Option<Platform> {
        let p = platform?;
        let field = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        };
        Some(Platform {
            os: field("os")?,
            architecture: field("architecture")?,
            variant: field("variant").filter(|v| !v.is_empty()),
        })
    }

    /// The platform of this machine (`linux/amd64` on x86-64 Linux).
    pub fn current() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7".to_owned())),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        }
    }

    /// The first index entry of this platform.
    pub fn pick<'a>(&self, entries: &'a [Descriptor]) -> Option<&'a Descriptor> {
        entries.iter().find(|d| {
            Platform::of_entry(d.platform.as_ref()).is_some_and(|entry| self.matches(&entry))
        })
    }

    /// Whether an index entry of platform `entry` satisfies this (the asked) platform.
    /// No asked variant matches any variant; `arm64` without variant means `v8`.
    pub fn matches(&self, entry: &Platform) -> bool {
        if self.os != entry.os || self.architecture != entry.architecture {
            return false;
        }
        let default_variant = |p: &Platform| match (p.architecture.as_str(), &p.variant) {
            (_, Some(v)) => Some(v.clone()),
            ("arm64", None) => Some("v8".to_owned()),
            _ => None,
        };
        match &self.variant {
            None => true,
            Some(_) => default_variant(self) == default_variant(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parses_os_arch_and_variant() {
        assert_eq!(
            p("linux/amd64"),
            Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None
            }
        );
        assert_eq!(p("linux/arm/v7").variant.as_deref(), Some("v7"));
        assert_eq!(p("Linux/ARM64").to_string(), "linux/arm64");
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/arm/v7/x",
            "",
            "linux/am d64",
            "linux/../x",
            "linux/.hidden",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_index_entries() {
        let e = json!({"os": "linux", "architecture": "arm", "variant": "v6"});
        assert_eq!(Platform::of_entry(Some(&e)), Some(p("linux/arm/v6")));
        assert_eq!(Platform::of_entry(None), None);
        assert_eq!(Platform::of_entry(Some(&json!({"os": "linux"}))), None);
    }

    #[test]
    fn matching_rules() {
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("windows/amd64").matches(&p("linux/amd64")));
        assert!(p("linux/arm").matches(&p("linux/arm/v7")));
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
    }
}
