//! Output helpers: lines on stdout, byte counts and times for humans.

use crate::exit::Error;
use std::fmt::Display;
use std::io::Write;

/// Writes one line on stdout; a closed stdout (`| head`) is an error, not a panic.
pub fn line(text: impl Display) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::Other(format!("cannot write to stdout: {e}")))
}

/// `1.5 MiB (1572864 bytes)`-style counts: binary units, exact bytes when rounded.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({n} bytes)", UNITS[unit])
}

/// A Unix time as `YYYY-MM-DDTHH:MM:SSZ`; `-` for 0 (never).
pub fn unix_time(secs: u64) -> String {
    if secs == 0 {
        return "-".to_owned();
    }
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How far a clock is from another, `skew_ms` ahead (behind: negative): `3.2 s ahead
/// of`, `1 d 2 h behind`.
pub fn apart(skew_ms: i64) -> String {
    let side = if skew_ms < 0 { "behind" } else { "ahead of" };
    let ms = skew_ms.unsigned_abs();
    let (d, h, m) = (ms / 86_400_000, ms / 3_600_000 % 24, ms / 60_000 % 60);
    let by = if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {} s", ms / 1000 % 60)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    };
    format!("{by} {side}")
}

/// Left-aligned columns: each row padded to the widest cell of its column.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_apart_for_humans() {
        assert_eq!(apart(86_400_000 + 7_200_000), "1 d 2 h ahead of");
        assert_eq!(apart(-3_200), "3.2 s behind");
        assert_eq!(apart(-(365 * 86_400_000)), "365 d 0 h behind");
        assert_eq!(apart(61_000), "1 min 1 s ahead of");
    }

    #[test]
    fn bytes_for_humans() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB (5368709120 bytes)");
    }

    #[test]
    fn times_in_utc() {
        assert_eq!(unix_time(0), "-");
        assert_eq!(unix_time(1), "1970-01-01T00:00:01Z");
        assert_eq!(unix_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(unix_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            vec!["long".to_owned(), "x".to_owned(), "".to_owned()],
        ];
        assert_eq!(table(&rows), ["A     BB  C", "long  x"]);
    }
}
