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
    /// `revocation_applied`, `token_minted`, `token_refused`, `admin_action`.
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

/// Where the log keeps what it no longer holds in memory: the embedded
/// store. With one attached, memory holds only the newest records (and
/// any not yet committed), and older pages are read back from it, so a
/// hub's memory does not grow by a record for every stream it opened.
pub trait AuditArchive: Send + Sync {
    /// Queues `record` for the next commit. Returns its place in commit
    /// order (1, 2, …): the record is committed once [`committed`] reaches
    /// it. Called under the log's lock, so places follow the calls' order.
    ///
    /// [`committed`]: AuditArchive::committed
    fn persist(&self, record: &AuditRecord) -> u64;
    /// How many persisted records are committed, in [`persist`] order.
    ///
    /// [`persist`]: AuditArchive::persist
    fn committed(&self) -> u64;
    /// Committed records with `after < id < before` that pass `filter`, at
    /// most `limit`, examining at most `scan` records: the oldest first, or
    /// the newest first when `newest_first`. With a `tenant`, only that
    /// tenant's records are read (and examined). A read that fails says
    /// why (and is logged).
    fn read(
        &self,
        after: u64,
        before: u64,
        window: Window,
        tenant: Option<&str>,
        newest_first: bool,
        filter: &dyn Fn(&AuditRecord) -> bool,
    ) -> Result<Scanned<AuditRecord>, AuditUnavailable>;
}

/// How much one page may hold and look at.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// At most this many records in the page.
    pub limit: usize,
    /// At most this many records examined, matching or not. A page of a
    /// rare filter (one `kind` among 100,000 records of others) would
    /// otherwise decode the whole log for every request.
    pub scan: usize,
}

impl Window {
    /// Up to `limit` records, looking at as many as it takes.
    pub fn unbounded(limit: usize) -> Window {
        Window {
            limit,
            scan: usize::MAX,
        }
    }
}

/// What a page read found.
#[derive(Debug)]
pub struct Scanned<R> {
    /// The matching records, in the order read.
    pub records: Vec<R>,
    /// Set when the scan reached [`Window::scan`] with fewer than `limit`
    /// matches and more records to look at: the id of the last record
    /// examined, where the next page continues (no record is skipped).
    pub stopped_at: Option<u64>,
}

/// The archive could not be read. A page is never answered without the
/// records it could not read: its reader would take the records after
/// them for the next ones and skip those for good.
#[derive(Debug, thiserror::Error)]
#[error("audit records could not be read from the store: {0}")]
pub struct AuditUnavailable(pub String);

/// Records held in memory, in id order, each with its place in the
/// archive's commit order (0: already committed).
#[derive(Default)]
struct Held {
    head: u64,
    records: VecDeque<(Arc<AuditRecord>, u64)>,
}

/// The audit log: in memory, bounded by count, optionally backed by an
/// [`AuditArchive`].
pub struct AuditLog {
    held: Mutex<Held>,
    /// Most records held in memory, committed or not.
    capacity: usize,
    /// Committed records held in memory with an archive (the newest).
    tail: usize,
    archive: Option<Arc<dyn AuditArchive>>,
    listeners: Mutex<Vec<Listener>>,
}

impl AuditLog {
    /// Keeps the last `capacity` records in memory.
    pub fn new(capacity: usize) -> AuditLog {
        AuditLog {
            held: Mutex::new(Held::default()),
            capacity,
            tail: capacity,
            archive: None,
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Persists every record to `archive` and keeps in memory only the
    /// newest `tail` committed ones (and those not yet committed, up to
    /// `capacity`); older pages are read from the archive.
    pub fn with_archive(capacity: usize, tail: usize, archive: Arc<dyn AuditArchive>) -> AuditLog {
        AuditLog {
            tail: tail.clamp(1, capacity.max(1)),
            archive: Some(archive),
            ..AuditLog::new(capacity)
        }
    }

    /// Adds a function told about each new record (the hub fans records out
    /// to audit streams through one, and a cluster shares them through
    /// another).
    pub fn add_listener(&self, f: Listener) {
        self.listeners.lock().push(f);
    }

    /// Holds `rec` (at its place in id order) and persists it; `false`
    /// when a record with its id is already held.
    fn hold(&self, g: &mut Held, rec: &Arc<AuditRecord>) -> bool {
        let at = g.records.partition_point(|(r, _)| r.id < rec.id);
        if g.records.get(at).is_some_and(|(r, _)| r.id == rec.id) {
            return false;
        }
        let place = self.archive.as_ref().map_or(0, |a| a.persist(rec));
        g.records.insert(at, (rec.clone(), place));
        self.trim(g);
        true
    }

    /// Lets go of the oldest records: past `capacity` always, past `tail`
    /// once the archive has them.
    fn trim(&self, g: &mut Held) {
        while g.records.len() > self.capacity {
            g.records.pop_front();
        }
        if let Some(archive) = &self.archive {
            let committed = archive.committed();
            while g.records.len() > self.tail && g.records.front().is_some_and(|(_, place)| *place <= committed) {
                g.records.pop_front();
            }
        }
    }

    /// Adds a record recorded on another node of the cluster, in id order.
    pub fn ingest(&self, rec: AuditRecord) {
        let rec = Arc::new(rec);
        if !self.hold(&mut self.held.lock(), &rec) {
            return;
        }
        for f in self.listeners.lock().iter() {
            f(&rec, false);
        }
    }

    /// Loads records kept from a previous run (already in the archive, if
    /// there is one); ids continue after them.
    pub fn restore(&self, records: Vec<AuditRecord>) {
        let mut g = self.held.lock();
        for r in records {
            g.head = g.head.max(r.id);
            g.records.push_back((Arc::new(r), 0));
        }
        self.trim(&mut g);
    }

    /// Appends a record.
    pub fn record(&self, e: AuditEntry, now_ms: u64) -> Arc<AuditRecord> {
        let rec = {
            let mut g = self.held.lock();
            // Ids are unix microseconds (or the previous id + 1): strictly
            // increasing, and never reused after a crash even if the last
            // records before it were not yet persisted.
            let micros = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            // Above every held record too (one ingested from another node
            // may be newer), so a local record always goes last.
            let newest_held = g.records.back().map_or(0, |(r, _)| r.id);
            g.head = (g.head + 1).max(micros).max(newest_held + 1);
            let rec = Arc::new(AuditRecord {
                id: g.head,
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
            self.hold(&mut g, &rec);
            rec
        };
        tracing::info!(target: "herald::audit", kind = %rec.kind, id = rec.id, tenant = ?rec.tenant, account = ?rec.account, session = ?rec.session, ip = ?rec.ip, stream = ?rec.stream, detail = %rec.detail);
        for f in self.listeners.lock().iter() {
            f(&rec, true);
        }
        rec
    }

    /// Records with `id > after` visible under `filter`, oldest first,
    /// within `window`. With a `tenant`, only that tenant's records are
    /// examined: the scan bound counts no one else's, and a page's
    /// `stopped_at` is always one of that tenant's ids.
    pub fn page(
        &self,
        after: u64,
        window: Window,
        tenant: Option<&str>,
        filter: impl Fn(&AuditRecord) -> bool,
    ) -> Result<Scanned<Arc<AuditRecord>>, AuditUnavailable> {
        // Memory first: a record let go of meanwhile is already in this
        // copy, and everything older than what memory holds is archived.
        let (oldest_held, held) = {
            let g = self.held.lock();
            let start = g.records.partition_point(|(r, _)| r.id <= after);
            let held = scan_held(g.records.range(start..), window, tenant, &filter);
            (g.records.front().map_or(u64::MAX, |(r, _)| r.id), held)
        };
        let Some(archive) = self.archive.as_ref().filter(|_| after.saturating_add(1) < oldest_held) else {
            return Ok(held);
        };
        let stored = archive.read(after, oldest_held, window, tenant, false, &filter)?;
        let mut page: Vec<Arc<AuditRecord>> = stored.records.into_iter().map(Arc::new).collect();
        if stored.stopped_at.is_some() {
            // The next page goes on from there, through memory too.
            return Ok(Scanned {
                records: page,
                stopped_at: stored.stopped_at,
            });
        }
        let room = window.limit.saturating_sub(page.len());
        let filled = held.records.len() >= room;
        page.extend(held.records.into_iter().take(room));
        Ok(Scanned {
            records: page,
            stopped_at: held.stopped_at.filter(|_| !filled),
        })
    }

    /// The newest records with `id < before` visible under `filter`,
    /// within `window`, oldest first (paging back from the live tail);
    /// `tenant` as for [`AuditLog::page`].
    pub fn page_before(
        &self,
        before: u64,
        window: Window,
        tenant: Option<&str>,
        filter: impl Fn(&AuditRecord) -> bool,
    ) -> Result<Scanned<Arc<AuditRecord>>, AuditUnavailable> {
        let (oldest_held, mut newest) = {
            let g = self.held.lock();
            let end = g.records.partition_point(|(r, _)| r.id < before);
            let newest = scan_held(g.records.range(..end).rev(), window, tenant, &filter);
            (g.records.front().map_or(u64::MAX, |(r, _)| r.id), newest)
        };
        if let (Some(archive), None) = (&self.archive, newest.stopped_at) {
            let room = window.limit.saturating_sub(newest.records.len());
            if room > 0 {
                let window = Window { limit: room, ..window };
                let older = archive.read(0, before.min(oldest_held), window, tenant, true, &filter)?;
                newest.records.extend(older.records.into_iter().map(Arc::new));
                newest.stopped_at = older.stopped_at;
            }
        }
        newest.records.reverse();
        Ok(newest)
    }

    /// The id of the newest record.
    pub fn head(&self) -> u64 {
        self.held.lock().head
    }
}

/// Reads held records in the order given, keeping what `filter` passes,
/// until `window` is full or its scan is spent (see [`Scanned::stopped_at`]).
/// Another tenant's records are passed over without counting: comparing a
/// tenant costs next to nothing, and counting them would let a page's stop
/// say how many records other tenants have.
fn scan_held<'a>(
    records: impl Iterator<Item = &'a (Arc<AuditRecord>, u64)>,
    window: Window,
    tenant: Option<&str>,
    filter: &impl Fn(&AuditRecord) -> bool,
) -> Scanned<Arc<AuditRecord>> {
    let mut out = Vec::new();
    let mut records = records
        .filter(|(r, _)| tenant.is_none_or(|t| r.tenant.as_deref() == Some(t)))
        .peekable();
    let mut examined = 0;
    while out.len() < window.limit {
        let Some((r, _)) = records.next() else { break };
        examined += 1;
        if filter(r) {
            out.push(r.clone());
        }
        if examined >= window.scan && out.len() < window.limit && records.peek().is_some() {
            return Scanned {
                records: out,
                stopped_at: Some(r.id),
            };
        }
    }
    Scanned {
        records: out,
        stopped_at: None,
    }
}
