//! Failed-authentication limiting per client IP.
//!
//! Written here rather than with a generic rate limiter because the rule is
//! specific: only *failures* count, and a blocked address must be refused
//! before its credential is even looked at (so a scanner cannot keep
//! grinding tokens), which needs a check that does not itself consume
//! budget. A fixed one-minute window per address is enough for that and
//! costs one small map entry per failing address.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;

const WINDOW_MS: u64 = 60_000;

/// Counts failures per address in one-minute windows.
pub struct FailureLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl FailureLimiter {
    /// Allows `per_minute` failures per address; 0 disables the limit.
    pub fn new(per_minute: u32) -> FailureLimiter {
        FailureLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `ip` may try again, if it is blocked now.
    pub fn blocked(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        if self.per_minute == 0 {
            return None;
        }
        let w = self.windows.lock();
        let (start, count) = *w.get(&ip)?;
        (now_ms < start + WINDOW_MS && count >= self.per_minute)
            .then(|| (start + WINDOW_MS - now_ms).div_ceil(1000).max(1))
    }

    /// Counts one failure from `ip`.
    pub fn record(&self, ip: IpAddr, now_ms: u64) {
        let mut w = self.windows.lock();
        let e = w.entry(ip).or_insert((now_ms, 0));
        if now_ms >= e.0 + WINDOW_MS {
            *e = (now_ms, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    /// Drops windows that have ended.
    pub fn purge(&self, now_ms: u64) {
        self.windows.lock().retain(|_, (start, _)| now_ms < *start + WINDOW_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_budget_and_recovers() {
        let l = FailureLimiter::new(2);
        let ip: IpAddr = [10, 0, 0, 1].into();
        l.record(ip, 0);
        assert_eq!(l.blocked(ip, 1), None);
        l.record(ip, 2);
        assert_eq!(l.blocked(ip, 3), Some(60));
        assert_eq!(l.blocked(ip, 60_000), None);
    }
}
