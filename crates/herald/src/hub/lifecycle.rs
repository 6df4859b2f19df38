//! A hub's life after it is built: the one shared heartbeat (keepalives,
//! expiry, zombie detection, housekeeping) and the graceful shutdown.

use super::{now_ms, HubInner};
use crate::audit::AuditEntry;
use crate::queue::CloseReason;
use crate::registry::Lookup;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl HubInner {
    pub(crate) async fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
        // Wait for publishes already sequencing to finish and dispatch.
        drop(self.in_flight.write().await);
        for s in self.registry.find(Lookup::All, |_| true) {
            self.registry.close(s.id, CloseReason::Shutdown);
        }
        if let Some(store) = &self.store {
            store.close().await;
        }
        self.shutdown.cancel();
    }
}

/// The heartbeat's period.
const TICK_MS: u64 = 250;

/// The one shared timer: keepalives, expiry, zombie detection and
/// housekeeping, instead of a timer per stream.
pub(super) async fn heartbeat(hub: std::sync::Weak<HubInner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    let mut last_housekeeping = now_ms();
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        if hub.shutdown.is_cancelled() {
            return;
        }
        let now = now_ms();
        let keepalive_secs = hub
            .config
            .mercure
            .heartbeat
            .unwrap_or(hub.config.limits.keepalive_secs)
            .max(1);
        // Each stream's keepalive falls on its own tick of the interval
        // (by id), so a hub with 15,000 idle streams writes 250 keepalives
        // every tick instead of 15,000 at once every 15 s, a burst that
        // would delay every event published during it.
        let slots = (keepalive_secs * 1000 / TICK_MS).max(1);
        let phase = ticks % slots;
        ticks += 1;
        let stall_deadline = now.saturating_sub(hub.config.limits.write_stall_secs * 1000);
        let keepalive = herald_core::frame::encode_comment("keepalive");
        // The keepalive's chunk encoding, made once for every stream written
        // directly.
        let mut wire = None;
        for s in hub.registry.find(Lookup::All, |_| true) {
            if s.principal.is_expired(now) {
                hub.registry.close(s.id, CloseReason::Expired);
            } else if s.queue.stalled_since(stall_deadline) {
                hub.registry.close(s.id, CloseReason::Zombie);
                // The writer is stuck in the socket and will not see the
                // close: cut the connection itself.
                if let Some(c) = &s.connection {
                    c.kill();
                }
            } else if s.id % slots == phase && s.queue.take_idle() {
                s.queue.keep_alive(&keepalive, &mut wire, now);
            }
        }
        if ticks % (1000 / TICK_MS) == 0 {
            let (streams, by_tenant) = hub.registry.streams_by_tenant();
            hub.stats.roll(now, streams, by_tenant);
        }
        if now.saturating_sub(last_housekeeping) >= keepalive_secs * 1000 {
            last_housekeeping = now;
            hub.auth.sse_tokens.purge(now);
            hub.deny.purge(now);
            hub.auth_failures.purge(now);
            metrics::gauge!("herald_deny_rules").set(hub.deny.len() as f64);
        }
    }
}

impl HubInner {
    /// Records an audit event about a stream.
    pub fn audit_stream(&self, kind: &'static str, s: &crate::registry::Subscriber, detail: serde_json::Value) {
        let mut e = AuditEntry::about(kind, &s.principal);
        e.ip = Some(s.ip);
        e.stream = Some(s.id);
        e.detail = detail;
        self.audit.record(e, now_ms());
    }
}
