//! The application rolled out: a point-of-sale image and an agent beside it, both on one
//! distribution base, in two versions. Sizes follow the Docker official images of
//! services on a Debian base (README, "Images"): the base and the runtime are shared by
//! versions, an update brings new application layers, small layers and configs.

use site_fleet::missing::Blob;

const MB: u64 = 1_000_000;
const KB: u64 = 1_000;

/// A layer or config: its name, its size, and whether each version rebuilds it.
struct Part {
    name: &'static str,
    size: u64,
    /// Bytes added per version (a new build is a little bigger or smaller).
    growth: i64,
    /// Shared by every version (the same digest).
    shared: bool,
}

const fn part(name: &'static str, size: u64, growth: i64, shared: bool) -> Part {
    Part {
        name,
        size,
        growth,
        shared,
    }
}

/// The images: each a list of parts.
const IMAGES: [&[Part]; 2] = [
    &[
        part("pos-config", 8 * KB, 0, false),
        part("debian-slim", 29_800 * KB, 0, true),
        part("jre", 48 * MB, 0, true),
        part("pos-app", 22 * MB, 1_000_000, false),
        part("pos-scripts", 1_200, 0, false),
        part("pos-entrypoint", 400, 0, false),
    ],
    &[
        part("agent-config", 6 * KB, 0, false),
        part("debian-slim", 29_800 * KB, 0, true),
        part("agent-bin", 14 * MB, 500_000, false),
        part("agent-etc", KB, 0, false),
    ],
];

/// The blobs of each image of `version` (1, 2, ...), config first.
pub fn application(version: u32) -> Vec<Vec<Blob>> {
    IMAGES
        .iter()
        .map(|parts| {
            parts
                .iter()
                .map(|p| {
                    let v = if p.shared { 0 } else { version };
                    let size = p.size as i64 + p.growth * i64::from(version.saturating_sub(1));
                    Blob {
                        digest: format!("sha256:{}-v{v}", p.name),
                        size: size as u64,
                    }
                })
                .collect()
        })
        .collect()
}

/// What a site holds before version `version` is rolled out, for a draw `pick` in [0, 1).
///
/// Before version 1, 40% of the sites already hold the distribution base (another
/// application of theirs uses it). Before version 2, 85% hold version 1, 10% are new
/// sites that hold nothing, and 5% hold only the base and the runtime (they were cut off
/// during the last rollout).
pub fn held_before(version: u32, pick: f64) -> Vec<Blob> {
    let base = |v: &[Vec<Blob>], names: &[&str]| -> Vec<Blob> {
        site_fleet::missing::union(v.iter().map(Vec::as_slice))
            .into_iter()
            .filter(|b| {
                names
                    .iter()
                    .any(|n| b.digest.starts_with(&format!("sha256:{n}-")))
            })
            .collect()
    };
    let previous = application(version.saturating_sub(1).max(1));
    match version {
        0 | 1 if pick < 0.4 => base(&previous, &["debian-slim"]),
        0 | 1 => Vec::new(),
        _ if pick < 0.85 => previous.into_iter().flatten().collect(),
        _ if pick < 0.95 => Vec::new(),
        _ => base(&previous, &["debian-slim", "jre"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use site_fleet::missing;

    #[test]
    fn an_update_shares_most_bytes() {
        let v1 = application(1);
        let v2 = application(2);
        let unique = |v: &[Vec<Blob>]| -> u64 {
            missing::union(v.iter().map(Vec::as_slice))
                .iter()
                .map(|b| b.size)
                .sum()
        };
        let held: std::collections::HashSet<&str> =
            v1.iter().flatten().map(|b| b.digest.as_str()).collect();
        let lacked: u64 = missing::union(v2.iter().map(Vec::as_slice))
            .iter()
            .filter(|b| !held.contains(b.digest.as_str()))
            .map(|b| b.size)
            .sum();
        let whole = missing::whole_images(v2.iter().map(Vec::as_slice));
        assert!(unique(&v1) > 100 * MB && unique(&v1) < whole);
        assert!(lacked * 3 < unique(&v2), "most layers are shared: {lacked}");
        assert!(whole > 3 * lacked);
    }
}
