//! Fans audit records out to open audit streams (`/v1/audit/events`).
//!
//! An audit stream is a stream like any other: same registry, same caps,
//! same revocation (revoking the admin role closes it). Only what it carries
//! differs, and what an admin may see is decided by [`visible_to`].

use crate::audit::AuditRecord;
use crate::hub::HubInner;
use crate::registry::Lookup;
use bytes::Bytes;
use herald_core::frame::encode_event;
use herald_core::Principal;
use std::sync::Arc;

/// Whether `admin` may see `record`: hub admins see everything, a tenant
/// admin only its tenant's records.
pub fn visible_to(admin: &Principal, record: &AuditRecord) -> bool {
    admin.is_hub_admin() || (admin.is_admin() && admin.tenant.is_some() && record.tenant == admin.tenant)
}

/// The one tenant whose records `admin` may see, when it is confined to
/// one: reads of the log then look at that tenant's records alone.
pub fn tenant_scope(admin: &Principal) -> Option<&str> {
    (!admin.is_hub_admin()).then_some(admin.tenant.as_deref()).flatten()
}

/// Encodes a record as an SSE frame (`event: audit`, id = record id).
pub fn frame(record: &AuditRecord) -> Bytes {
    let data = serde_json::to_string(record).unwrap_or_else(|_| "{}".into());
    encode_event(&record.id.to_string(), Some("audit"), &data, None)
}

/// Connects the hub's audit log to its audit streams.
pub fn attach(hub: &Arc<HubInner>) {
    let registry = hub.registry.clone();
    hub.audit
        .add_listener(Box::new(move |record: &Arc<AuditRecord>, local: bool| {
            let streams = registry.find(Lookup::Audit, |s| visible_to(&s.principal, record));
            if streams.is_empty() {
                return;
            }
            let f = frame(record);
            // A record from another node may carry an id below what a stream
            // already sent (ids are clocks of different nodes): it is delivered
            // anyway rather than taken for a duplicate.
            let seq = if local { record.id } else { 0 };
            for s in streams {
                // An audit stream that cannot keep up is cut like any other; its
                // admin resumes from the log.
                if s.queue.push(seq, f.clone()) == crate::queue::Push::Overflow {
                    registry.close(s.id, crate::queue::CloseReason::Overflow);
                }
            }
        }));
}
