//! Text for the operator commands' tables: columns, cells, ages, sizes
//! and UTC times, with client-supplied text made safe for a terminal.

use serde_json::Value;

/// Left-aligned columns two spaces apart; the last column is not padded.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (c, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{c:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON value as a table cell: `-` for nothing, lists joined with `,`.
pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => clean(s),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => clean(&other.to_string()),
    }
}

/// Escapes control characters: account names, origins and paths in the
/// audit log come from clients, and a terminal would obey their escape
/// sequences.
pub(super) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters, the cut marked with `…`.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A duration as `42s`, `3m12s`, `5h07m`, `2d03h`.
pub(super) fn age(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Bytes as `512 B`, `4.0 KiB`, `1.5 GiB`.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Unix milliseconds as RFC 3339 UTC, `2025-12-02T17:03:12.345Z`, always
/// with three fractional digits so table columns line up (UTC reads the
/// same on every operator's machine as in the hub's logs).
pub(super) fn utc(ms: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

pub(super) fn now_secs() -> u64 {
    crate::hub::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn times_and_ages_read_as_expected() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_764_694_992_345), "2025-12-02T17:03:12.345Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // A time no calendar reaches is shown as the number it is.
        assert_eq!(utc(u64::MAX), format!("{} ms", u64::MAX));
        assert_eq!(age(5), "5s");
        assert_eq!(age(192), "3m12s");
        assert_eq!(age(3 * 3600 + 120), "3h02m");
        assert_eq!(age(2 * 86_400 + 3600), "2d01h");
        assert_eq!(size(4096), "4.0 KiB");
    }

    #[test]
    fn cells_escape_terminal_control_characters() {
        assert_eq!(cell(&json!("a\u{1b}[2Jb")), "a\\u{1b}[2Jb");
        assert_eq!(cell(&json!(["x", "y"])), "x,y");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
