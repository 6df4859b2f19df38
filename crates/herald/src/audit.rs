//! The audit log: security events, kept in order and streamed to admins.
//!
//! Every security-relevant decision (a stream opened or closed, a credential
//! refused, a cap hit, a revocation applied, a token minted, an admin action)
//! becomes one [`AuditRecord`]. Records carry only a short prefix of a
//! session hash and never a credential.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

/// One audit event.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Strictly increasing id (resume with `Last-Event-ID` / `after`); unix
    /// microseconds at the time of recording, or one more than the previous.
    pub id: u64,
    /// Unix ms.
    pub time_ms: u64,
    /// `stream_opened`, `stream_closed`, `auth_failed`, `cap_rejected`,
    /// `revocation_applied`, `token_minted`, `admin_action`.
    pub kind: String,
    /// Tenant concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Account concerned, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// First 8 hex chars of the session hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Stream id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<u64>,
    /// Kind-specific details (reason, code, count...), kept as its JSON
    /// text: the log holds up to 100,000 records, and a parsed map costs
    /// several times its text.
    pub detail: Box<serde_json::value::RawValue>,
}

/// Builder-style description of an audit event before it gets its id.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// See [`AuditRecord::kind`].
    pub kind: &'static str,
    /// Tenant.
    pub tenant: Option<String>,
    /// Account.
    pub account: Option<String>,
    /// Session hash prefix.
    pub session: Option<String>,
    /// Client address.
    pub ip: Option<IpAddr>,
    /// Stream id.
    pub stream: Option<u64>,
    /// Details.
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// An entry of `kind` about `principal`.
    pub fn about(kind: &'static str, p: &herald_core::Principal) -> AuditEntry {
        AuditEntry {
            kind,
            tenant: p.tenant.clone(),
            account: Some(p.sub.clone()),
            session: p.session.map(|h| h.prefix()),
            ..AuditEntry::default()
        }
    }
}

/// Told about a record: `true` when it was recorded on this node, `false`
/// when it came from another node of a cluster.
type Listener = Box<dyn Fn(&Arc<AuditRecord>, bool) + Send + Sync>;

/// The in-memory audit log, bounded by count.
pub struct AuditLog {
    records: Mutex<(u64, VecDeque<Arc<AuditRecord>>)>,
    capacity: usize,
    listeners: Mutex<Vec<Listener>>,
}

impl AuditLog {
    /// Keeps the last `capacity` records.
    pub fn new(capacity: usize) -> AuditLog {
        AuditLog {
            records: Mutex::new((0, VecDeque::new())),
            capacity,
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Adds a function told about each new record (the hub fans records out
    /// to audit streams through one, and the durable store persists them
    /// through another).
    pub fn add_listener(&self, f: Listener) {
        self.listeners.lock().push(f);
    }

    /// Adds a record recorded on another node of the cluster, in id order.
    pub fn ingest(&self, rec: AuditRecord) {
        let rec = Arc::new(rec);
        {
            let mut g = self.records.lock();
            let at = g.1.partition_point(|r| r.id < rec.id);
            if g.1.get(at).is_some_and(|r| r.id == rec.id) {
                return;
            }
            g.1.insert(at, rec.clone());
            while g.1.len() > self.capacity {
                g.1.pop_front();
            }
        }
        for f in self.listeners.lock().iter() {
            f(&rec, false);
        }
    }

    /// Loads records kept from a previous run; ids continue after them.
    pub fn restore(&self, records: Vec<AuditRecord>) {
        let mut g = self.records.lock();
        for r in records {
            g.0 = g.0.max(r.id);
            g.1.push_back(Arc::new(r));
        }
        while g.1.len() > self.capacity {
            g.1.pop_front();
        }
    }

    /// Appends a record.
    pub fn record(&self, e: AuditEntry, now_ms: u64) -> Arc<AuditRecord> {
        let rec = {
            let mut g = self.records.lock();
            // Ids are unix microseconds (or the previous id + 1): strictly
            // increasing, and never reused after a crash even if the last
            // records before it were not yet persisted.
            let micros = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            g.0 = (g.0 + 1).max(micros);
            let rec = Arc::new(AuditRecord {
                id: g.0,
                time_ms: now_ms,
                kind: e.kind.to_string(),
                tenant: e.tenant,
                account: e.account,
                session: e.session,
                ip: e.ip,
                stream: e.stream,
                // A `Value` always serializes; the default (`null`) is never used.
                detail: serde_json::value::to_raw_value(&e.detail).unwrap_or_default(),
            });
            g.1.push_back(rec.clone());
            while g.1.len() > self.capacity {
                g.1.pop_front();
            }
            rec
        };
        tracing::info!(target: "herald::audit", kind = %rec.kind, id = rec.id, tenant = ?rec.tenant, account = ?rec.account, session = ?rec.session, ip = ?rec.ip, stream = ?rec.stream, detail = %rec.detail);
        for f in self.listeners.lock().iter() {
            f(&rec, true);
        }
        rec
    }

    /// Records with `id > after` visible under `filter`, at most `limit`.
    pub fn page(&self, after: u64, limit: usize, filter: impl Fn(&AuditRecord) -> bool) -> Vec<Arc<AuditRecord>> {
        let g = self.records.lock();
        let start = g.1.partition_point(|r| r.id <= after);
        g.1.range(start..).filter(|r| filter(r)).take(limit).cloned().collect()
    }

    /// The newest `limit` records with `id < before` visible under
    /// `filter`, oldest first (paging back from the live tail).
    pub fn page_before(
        &self,
        before: u64,
        limit: usize,
        filter: impl Fn(&AuditRecord) -> bool,
    ) -> Vec<Arc<AuditRecord>> {
        let g = self.records.lock();
        let end = g.1.partition_point(|r| r.id < before);
        let mut page: Vec<Arc<AuditRecord>> =
            g.1.range(..end)
                .rev()
                .filter(|r| filter(r))
                .take(limit)
                .cloned()
                .collect();
        page.reverse();
        page
    }

    /// The id of the newest record.
    pub fn head(&self) -> u64 {
        self.records.lock().0
    }
}
