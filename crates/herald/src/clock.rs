//! The wall clock, in one place: every timestamp the hub keeps (event
//! times, token and deny-rule expiries, audit records) is Unix milliseconds
//! from here.

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
