//! `herald store verify` and `herald store compact`: checks and upkeep of
//! a stopped store's file.

use super::*;

/// `herald store verify`: integrity check plus a full decode of every record.
pub fn verify(path: &Path) -> Result<String, OpenError> {
    let mut db = Database::open(path).map_err(|e| storage_error(path, e))?;
    let ok = db.check_integrity().map_err(|e| storage_error(path, e))?;
    if !ok {
        return Err(storage_error(
            path,
            "integrity check found damage (it was repaired in place where possible)",
        ));
    }
    let r = db.begin_read().map_err(|e| storage_error(path, e))?;
    let mut report = Vec::new();
    let mut expected: Option<u64> = None;
    let mut count = 0u64;
    // A restart after a crash under `fsync = "interval"`/`"never"` goes on
    // after the durable sequence reservation, so the numbers legitimately
    // jump: gaps are reported, not refused. Keys are ordered by redb, so
    // numbers only ever grow.
    let mut gaps = 0u64;
    if let Ok(t) = r.open_table(EVENTS) {
        for item in t.iter().map_err(|e| storage_error(path, e))? {
            let (k, v) = item.map_err(|e| storage_error(path, e))?;
            let seq = k.value();
            if expected.is_some_and(|x| seq != x) {
                gaps += 1;
            }
            codec::decode_event(v.value()).map_err(|e| storage_error(path, format!("event {seq}: {e}")))?;
            expected = Some(seq + 1);
            count += 1;
        }
    }
    let head = meta(&db, "head").map_err(|e| storage_error(path, e))?.unwrap_or(0);
    if expected.is_some_and(|next| next - 1 > head) {
        return Err(storage_error(path, "an event is newer than the recorded head"));
    }
    report.push(format!("{}: ok", path.display()));
    report.push(format!("events: {count} (head seq {head})"));
    if gaps > 0 {
        report.push(format!(
            "sequence gaps: {gaps} (left by restarts after a crash without fsync; no event is missing)"
        ));
    }
    for (name, def) in [("audit records", AUDIT), ("deny rules", DENY)] {
        let n = r.open_table(def).ok().and_then(|t| t.len().ok()).unwrap_or(0);
        report.push(format!("{name}: {n}"));
    }
    Ok(report.join("\n"))
}

/// `herald store compact`: rewrites the file to release free pages.
pub fn compact(path: &Path) -> Result<String, OpenError> {
    let before = std::fs::metadata(path).map_or(0, |m| m.len());
    let mut db = Database::open(path).map_err(|e| storage_error(path, e))?;
    while db.compact().map_err(|e| storage_error(path, e))? {}
    drop(db);
    let after = std::fs::metadata(path).map_or(0, |m| m.len());
    Ok(format!("{}: {before} bytes -> {after} bytes", path.display()))
}
