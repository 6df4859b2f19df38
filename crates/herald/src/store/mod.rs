//! The embedded durable store: history, retained events, the audit log,
//! sticky revocations and outstanding SSE tokens in one redb file in the
//! data dir. See docs/architecture.md for why redb.
//!
//! One writer thread owns every write. Publishers hand it their events and
//! wait; it takes everything queued, writes it in one transaction and
//! commits once, so concurrent publishers share one fsync (group commit).
//! Only then are the events given to the dispatcher and the publishers
//! answered: an answered publish survives `kill -9`.
//!
//! Sequence numbers are stored in the same transaction as the events, so a
//! crash can never cause one to be reused.

pub mod codec;
mod maintenance;
#[cfg(test)]
mod tests;
mod writer;

pub use maintenance::{compact, verify};
use writer::Writer;

use crate::audit::{AuditArchive, AuditRecord, AuditUnavailable, Scanned, Window};
use crate::history::{History, HistoryError, Page, ResumePoint, Sink};
use crate::retained::RetainedIndex;
use codec::{DenyRecord, TokenRecord};
use futures_util::future::BoxFuture;
use herald_core::{DenyRule, Event, EventDraft, LastEventId, SelectorSet};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The on-disk format this build writes. A file with a larger number was
/// written by a newer Herald and is refused rather than misread.
///
/// Format 2 keys client ids by tenant ([`crate::history::scoped_id`]) and
/// retained events by slot ([`crate::retained::slot_key`]); a format-1 file
/// is migrated in place when it is opened. Format 3 adds the audit
/// records' tenant index ([`AUDIT_BY_TENANT`]), built from the records
/// when an older file is opened.
pub const FORMAT: u64 = 3;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Every audit record with a tenant, keyed (tenant, id): a page of one
/// tenant's records reads that tenant's alone, however many records other
/// tenants have, and never has to look past theirs.
const AUDIT_BY_TENANT: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_tenant");
const DENY: TableDefinition<u64, &[u8]> = TableDefinition::new("deny");
const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");

/// Sequence numbers reserved per durable commit when commits are not all
/// fsynced: after a crash the next event continues past the reservation.
const SEQ_RESERVATION: u64 = 100_000;

/// Like [`guarded`], without the panic's own report on stderr: used while
/// opening the store, before anything else runs, where the one clear line
/// about the file is all an operator should see.
fn guarded_quietly<T>(f: impl FnOnce() -> Result<T, redb::Error>) -> Result<T, String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = guarded(f);
    std::panic::set_hook(previous);
    r
}

/// Runs a redb call, turning a panic inside it (a damaged page) into an
/// error instead of taking the request or the process down.
fn guarded<T>(f: impl FnOnce() -> Result<T, redb::Error>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("a damaged page was found while reading".to_string()),
    }
}

/// When commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every commit is fsynced before publishers are answered.
    Always,
    /// Commits are fsynced at most this often; a crash loses up to one
    /// interval of answered publishes.
    Interval(Duration),
    /// No fsync on publish; a checkpoint every second and at shutdown.
    Never,
}

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The database file.
    pub path: PathBuf,
    /// Durability policy.
    pub fsync: FsyncPolicy,
    /// Most events kept.
    pub max_events: u64,
    /// Oldest event kept (ms); 0 = no age limit.
    pub max_age_ms: u64,
    /// Most event bytes kept; 0 = no size limit.
    pub max_bytes: u64,
    /// Most audit records kept.
    pub max_audit: u64,
    /// Page cache, bytes. redb's own default is 1 GiB, which lets the
    /// process's memory grow toward the size of a large history file; a
    /// hub's hot pages (the recent end of history) fit in far less.
    pub cache_bytes: u64,
    /// Most retained slots kept per tenant (see [`crate::retained`]).
    pub retained_per_tenant: usize,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(pub String);

enum Job {
    Append {
        drafts: Vec<EventDraft>,
        now_ms: u64,
        reply: oneshot::Sender<Result<Vec<Arc<Event>>, HistoryError>>,
    },
    /// An audit record: its JSON, id and tenant.
    Audit(Vec<u8>, u64, Option<String>),
    Deny(Vec<u8>, oneshot::Sender<()>),
    TokenPut([u8; 32], Vec<u8>),
    TokenDel([u8; 32]),
    Flush(oneshot::Sender<()>),
    /// Clean shutdown: durable commit, release the sequence reservation.
    Close(oneshot::Sender<()>),
}

/// Counters shared between the writer and readers.
struct Shared {
    head: AtomicU64,
    oldest: AtomicU64,
    bytes: AtomicU64,
    /// Events stored. Not `head + 1 - oldest`: sequence numbers have gaps
    /// (a restart after a crash under `fsync = "interval"`/`"never"` goes on
    /// after the durable reservation), and counting a gap as events made
    /// retention delete real ones.
    count: AtomicU64,
    /// Audit records committed, in the order they were queued.
    audit_committed: AtomicU64,
    sink: OnceLock<Sink>,
}

/// The embedded store.
pub struct Store {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    path: PathBuf,
    /// Audit records queued for the writer.
    audit_queued: AtomicU64,
}

fn storage_error(path: &Path, e: impl std::fmt::Display) -> OpenError {
    let dir = path.parent().map_or_else(|| ".".into(), |d| d.display().to_string());
    OpenError(format!(
        "store file {} cannot be used: {e}. Run `herald store verify --data-dir {dir}` for details; \
         restore it from a backup, or move it away to start with an empty store",
        path.display()
    ))
}

fn meta(db: &Database, key: &str) -> Result<Option<u64>, redb::Error> {
    let r = db.begin_read()?;
    match r.open_table(META) {
        Ok(t) => Ok(t.get(key)?.map(|v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The oldest stored event's `seq` and how many events are stored.
fn stored_events(db: &Database) -> Result<(Option<u64>, u64), redb::Error> {
    let r = db.begin_read()?;
    match r.open_table(EVENTS) {
        Ok(t) => Ok((t.first()?.map(|(k, _)| k.value()), t.len()?)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok((None, 0)),
        Err(e) => Err(e.into()),
    }
}

/// Rewrites a format-1 file's keys: client ids scoped by tenant, retained
/// events keyed by slot. One transaction: a crash midway leaves format 1,
/// and the next start migrates again.
fn migrate_to_scoped_keys(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let events = txn.open_table(EVENTS)?;
        let mut ids = txn.open_table(IDS)?;
        ids.retain(|_, _| false)?;
        for item in events.iter()? {
            let (k, v) = item?;
            if let Ok(e) = codec::decode_event(v.value()) {
                if !e.id.bytes().all(|b| b.is_ascii_digit()) {
                    ids.insert(
                        crate::history::scoped_id(e.audience.tenant.as_deref(), &e.id).as_str(),
                        k.value(),
                    )?;
                }
            }
        }
        let mut retained = txn.open_table(RETAINED)?;
        // Each old record is the latest retained event of the topic it is
        // keyed by; it moves to that topic's slot only (an event retained
        // on several topics may be older than another topic's state).
        let mut old: Vec<(String, Vec<u8>)> = Vec::new();
        for item in retained.iter()? {
            let (k, v) = item?;
            old.push((k.value().to_string(), v.value().to_vec()));
        }
        retained.retain(|_, _| false)?;
        for (topic, bytes) in old {
            if let Ok(e) = codec::decode_event(&bytes) {
                retained.insert(
                    crate::retained::slot_key(&topic, &e.audience).as_str(),
                    bytes.as_slice(),
                )?;
            }
        }
        let mut meta = txn.open_table(META)?;
        meta.insert("format", 2)?;
    }
    txn.commit()?;
    Ok(())
}

/// The tenant of a stored audit record, read without the rest of it.
#[derive(serde::Deserialize)]
pub(super) struct TenantOf {
    #[serde(default)]
    pub(super) tenant: Option<String>,
}

/// Builds the audit records' tenant index of a format-2 file. One
/// transaction: a crash midway leaves format 2, and the next start builds
/// it again.
fn index_audit_by_tenant(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let audit = txn.open_table(AUDIT)?;
        let mut index = txn.open_table(AUDIT_BY_TENANT)?;
        index.retain(|_, _| false)?;
        for item in audit.iter()? {
            let (k, v) = item?;
            if let Ok(TenantOf { tenant: Some(t) }) = serde_json::from_slice(v.value()) {
                index.insert((t.as_str(), k.value()), ())?;
            }
        }
        let mut meta = txn.open_table(META)?;
        meta.insert("format", 3)?;
    }
    txn.commit()?;
    Ok(())
}

/// Reads the retained slots into their index, dropping (in the file too)
/// those past the per-tenant bound and any record that cannot be decoded.
fn load_retained(db: &Database, per_tenant: usize) -> Result<RetainedIndex, redb::Error> {
    let mut index = RetainedIndex::new(per_tenant);
    let mut drop_keys = Vec::new();
    {
        let r = db.begin_read()?;
        let t = match r.open_table(RETAINED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(index),
            Err(e) => return Err(e.into()),
        };
        for item in t.iter()? {
            let (k, v) = item?;
            match codec::decode_event(v.value()) {
                Ok(e) => drop_keys.extend(index.load(k.value().to_string(), &e)),
                Err(_) => drop_keys.push(k.value().to_string()),
            }
        }
    }
    if !drop_keys.is_empty() {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(RETAINED)?;
            for k in &drop_keys {
                t.remove(k.as_str())?;
            }
        }
        txn.commit()?;
    }
    Ok(index)
}

impl AuditArchive for Store {
    fn persist(&self, r: &AuditRecord) -> u64 {
        let queued =
            serde_json::to_vec(r).is_ok_and(|bytes| self.jobs.send(Job::Audit(bytes, r.id, r.tenant.clone())).is_ok());
        if queued {
            self.audit_queued.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            // Not queued (the writer is gone): the record stays in memory,
            // within the log's bound, as it would without a store.
            u64::MAX
        }
    }

    fn committed(&self) -> u64 {
        self.shared.audit_committed.load(Ordering::Acquire)
    }

    fn read(
        &self,
        after: u64,
        before: u64,
        window: Window,
        tenant: Option<&str>,
        newest_first: bool,
        filter: &dyn Fn(&AuditRecord) -> bool,
    ) -> Result<Scanned<AuditRecord>, AuditUnavailable> {
        guarded(|| self.read_audit(after, before, window, tenant, newest_first, filter)).map_err(|e| {
            tracing::error!(error = %e, path = %self.path.display(), "audit records could not be read from the store");
            AuditUnavailable(e)
        })
    }
}

impl Store {
    /// Opens (or creates) the store and starts its writer thread.
    pub fn open(config: StoreConfig) -> Result<Arc<Store>, OpenError> {
        let path = config.path.clone();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| OpenError(format!("`data_dir`: cannot create {}: {e}", dir.display())))?;
        }
        let mut db = guarded_quietly(|| {
            Database::builder()
                .set_cache_size(usize::try_from(config.cache_bytes).unwrap_or(usize::MAX))
                .create(&path)
                .map_err(redb::Error::from)
        })
        .map_err(|e| storage_error(&path, e))?;
        // Every page is checked against its checksum before anything is
        // served: a damaged file is refused with advice, never read from
        // (a damaged page would otherwise fail later, mid-request).
        match guarded_quietly(|| db.check_integrity().map_err(redb::Error::from)) {
            Ok(true) => {}
            Ok(false) => {
                return Err(storage_error(
                    &path,
                    "it was damaged; redb rolled it back to its last intact commit, so the newest events may be \
                     missing. Start again to serve what it holds",
                ))
            }
            Err(e) => return Err(storage_error(&path, e)),
        }
        let format = meta(&db, "format").map_err(|e| storage_error(&path, e))?;
        if let Some(f) = format.filter(|f| *f > FORMAT) {
            return Err(OpenError(format!(
                "store file {} was written by a newer Herald (format {f}, this build reads up to {FORMAT}); \
                 run the newer version, or move the file away to start empty",
                path.display()
            )));
        }
        // After a crash under `fsync = "interval"`/`"never"`, sequence numbers
        // up to the durable reservation may have been handed out: continue
        // after it so none is ever reused.
        let reserved = meta(&db, "reserved").map_err(|e| storage_error(&path, e))?.unwrap_or(0);
        let head = meta(&db, "head")
            .map_err(|e| storage_error(&path, e))?
            .unwrap_or(0)
            .max(reserved);
        let bytes = meta(&db, "bytes").map_err(|e| storage_error(&path, e))?.unwrap_or(0);
        if format.is_some_and(|f| f < 2) {
            guarded(|| migrate_to_scoped_keys(&db)).map_err(|e| storage_error(&path, e))?;
        }
        if format.is_some_and(|f| f < 3) {
            guarded(|| index_audit_by_tenant(&db)).map_err(|e| storage_error(&path, e))?;
        }
        let slots = guarded(|| load_retained(&db, config.retained_per_tenant)).map_err(|e| storage_error(&path, e))?;
        let (first, count) = stored_events(&db).map_err(|e| storage_error(&path, e))?;
        let oldest = first.unwrap_or(head + 1);
        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            head: AtomicU64::new(head),
            oldest: AtomicU64::new(oldest),
            bytes: AtomicU64::new(bytes),
            count: AtomicU64::new(count),
            audit_committed: AtomicU64::new(0),
            sink: OnceLock::new(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            shared: shared.clone(),
            config,
            last_durable: Instant::now(),
            dirty: false,
            reserved,
            last_sweep: Instant::now(),
            slots,
            unwritten_audit: Vec::new(),
        };
        std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| OpenError(format!("cannot start the store writer: {e}")))?;
        Ok(Arc::new(Store {
            db,
            jobs: tx,
            shared,
            path,
            audit_queued: AtomicU64::new(0),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file in bytes.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Events currently kept.
    pub fn event_count(&self) -> u64 {
        self.shared.count.load(Ordering::Acquire)
    }

    /// Event payload bytes currently kept.
    pub fn event_bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// Persists a deny rule; resolves once it is committed.
    pub async fn persist_deny(&self, rule: &DenyRule) {
        let (tx, rx) = oneshot::channel();
        if let Ok(bytes) = serde_json::to_vec(&DenyRecord::from_rule(rule)) {
            if self.jobs.send(Job::Deny(bytes, tx)).is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Records an SSE token (minted or used).
    pub fn persist_token(&self, hash: [u8; 32], record: &TokenRecord) {
        if let Ok(bytes) = serde_json::to_vec(record) {
            let _ = self.jobs.send(Job::TokenPut(hash, bytes));
        }
    }

    /// Forgets an SSE token.
    pub fn forget_token(&self, hash: [u8; 32]) {
        let _ = self.jobs.send(Job::TokenDel(hash));
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Clean shutdown: makes everything durable and releases the sequence
    /// reservation so the next start continues without a gap.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The newest `limit` audit records, oldest first.
    pub fn load_audit(&self, limit: usize) -> Result<Vec<AuditRecord>, OpenError> {
        let mut out = self
            .read_audit(0, u64::MAX, Window::unbounded(limit), None, true, &|_| true)
            .map_err(|e| storage_error(&self.path, e))?
            .records;
        out.reverse();
        Ok(out)
    }

    /// Reads audit records (see [`AuditArchive::read`]).
    fn read_audit(
        &self,
        after: u64,
        before: u64,
        window: Window,
        tenant: Option<&str>,
        newest_first: bool,
        filter: &dyn Fn(&AuditRecord) -> bool,
    ) -> Result<Scanned<AuditRecord>, redb::Error> {
        let mut out = Scanned {
            records: Vec::new(),
            stopped_at: None,
        };
        let Some(first) = after.checked_add(1).filter(|first| *first < before && window.limit > 0) else {
            return Ok(out);
        };
        let r = self.db.begin_read()?;
        let t = match r.open_table(AUDIT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        // One tenant's records come from its index, the others' from the
        // log itself: either way, in id order, each decoded (`None`: an
        // index entry whose record is gone).
        type Read = Result<(u64, Option<Result<AuditRecord, serde_json::Error>>), redb::StorageError>;
        type IndexEntry<'a> = (redb::AccessGuard<'a, (&'static str, u64)>, redb::AccessGuard<'a, ()>);
        let decode = |v: &[u8]| serde_json::from_slice::<AuditRecord>(v);
        let records: Box<dyn Iterator<Item = Read>> = match tenant {
            Some(tenant) => {
                let index = match r.open_table(AUDIT_BY_TENANT) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
                    Err(e) => return Err(e.into()),
                };
                let range = index.range((tenant, first)..(tenant, before))?;
                let t = &t;
                let read = move |item: Result<IndexEntry<'_>, redb::StorageError>| -> Read {
                    let id = item?.0.value().1;
                    Ok((id, t.get(id)?.map(|v| decode(v.value()))))
                };
                if newest_first {
                    Box::new(range.rev().map(read))
                } else {
                    Box::new(range.map(read))
                }
            }
            None => {
                let range = t.range(first..before)?;
                let read = move |item: Result<(redb::AccessGuard<'_, u64>, redb::AccessGuard<'_, &[u8]>), _>| -> Read {
                    let (k, v) = item?;
                    Ok((k.value(), Some(decode(v.value()))))
                };
                if newest_first {
                    Box::new(range.rev().map(read))
                } else {
                    Box::new(range.map(read))
                }
            }
        };
        let mut records = records.peekable();
        let mut examined = 0;
        while out.records.len() < window.limit {
            let Some(item) = records.next() else { break };
            let (id, record) = item?;
            examined += 1;
            // A record that no longer decodes is skipped, never the ones
            // after it (nor, when it is among the newest, the hub's start).
            match record {
                Some(Ok(rec)) if filter(&rec) => out.records.push(rec),
                Some(Ok(_)) | None => {}
                Some(Err(e)) => tracing::warn!(id, error = %e, "an unreadable audit record is skipped"),
            }
            if examined >= window.scan && out.records.len() < window.limit && records.peek().is_some() {
                out.stopped_at = Some(id);
                break;
            }
        }
        Ok(out)
    }

    /// Every deny rule kept.
    pub fn load_deny(&self) -> Result<Vec<DenyRule>, OpenError> {
        let path = &self.path;
        let r = self.db.begin_read().map_err(|e| storage_error(path, e))?;
        let t = match r.open_table(DENY) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage_error(path, e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| storage_error(path, e))? {
            let (_, v) = item.map_err(|e| storage_error(path, e))?;
            let rec: DenyRecord = serde_json::from_slice(v.value()).map_err(|e| storage_error(path, e))?;
            out.push(rec.into_rule().map_err(|e| storage_error(path, e))?);
        }
        Ok(out)
    }

    /// Every SSE token kept.
    pub fn load_tokens(&self) -> Result<Vec<([u8; 32], TokenRecord)>, OpenError> {
        let path = &self.path;
        let r = self.db.begin_read().map_err(|e| storage_error(path, e))?;
        let t = match r.open_table(TOKENS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage_error(path, e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| storage_error(path, e))? {
            let (k, v) = item.map_err(|e| storage_error(path, e))?;
            let hash: [u8; 32] = k.value().try_into().map_err(|_| storage_error(path, "bad token key"))?;
            out.push((
                hash,
                serde_json::from_slice(v.value()).map_err(|e| storage_error(path, e))?,
            ));
        }
        Ok(out)
    }

    /// Up to `limit` stored records after `after`: the events that decode,
    /// the sequence numbers of those that do not, and the last sequence
    /// number read (so a page stops exactly where it read, whatever it
    /// could decode).
    fn read_events(&self, after: u64, limit: usize) -> Result<Scan, redb::Error> {
        let r = self.db.begin_read()?;
        let t = match r.open_table(EVENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Scan::default()),
            Err(e) => return Err(e.into()),
        };
        let mut scan = Scan::default();
        for item in t.range(after.saturating_add(1)..)?.take(limit) {
            let (k, v) = item?;
            let seq = k.value();
            scan.read += 1;
            scan.last = Some(seq);
            match codec::decode_event(v.value()) {
                Ok(e) => scan.events.push(Arc::new(e)),
                Err(e) => {
                    tracing::error!(error = %e, seq, "skipping an undecodable stored event");
                    scan.bad.push(seq);
                }
            }
        }
        Ok(scan)
    }
}

/// What one read of the events table found.
#[derive(Default)]
struct Scan {
    events: Vec<Arc<Event>>,
    bad: Vec<u64>,
    read: usize,
    last: Option<u64>,
}

impl History for Store {
    fn set_sink(&self, sink: Sink) {
        let _ = self.shared.sink.set(sink);
    }

    fn append(&self, drafts: Vec<EventDraft>, now_ms: u64) -> BoxFuture<'_, Result<Vec<Arc<Event>>, HistoryError>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.jobs.send(Job::Append { drafts, now_ms, reply });
        Box::pin(async move {
            if sent.is_err() {
                return Err(HistoryError::Unavailable("the store writer has stopped".into()));
            }
            rx.await
                .unwrap_or_else(|_| Err(HistoryError::Unavailable("the store writer has stopped".into())))
        })
    }

    fn resolve(&self, last: &LastEventId, tenant: Option<&str>) -> BoxFuture<'_, Result<ResumePoint, ()>> {
        let head = self.shared.head.load(Ordering::Acquire);
        let oldest = self.shared.oldest.load(Ordering::Acquire);
        let table = match last {
            LastEventId::Client(_) => self.db.begin_read().ok().and_then(|r| r.open_table(IDS).ok()),
            LastEventId::Seq(_) => None,
        };
        let point = crate::history::resume_point(last, tenant, head, oldest, |key| {
            table
                .as_ref()
                .and_then(|ids| ids.get(key).ok().flatten().map(|v| v.value()))
        })
        .map_err(|_| ());
        Box::pin(async move { point })
    }

    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Page> {
        // Read the head first: every event up to it is committed, so the
        // page below cannot miss one that a concurrent commit adds.
        let head = self.shared.head.load(Ordering::Acquire);
        let scan = guarded(|| self.read_events(after, limit)).unwrap_or_else(|e| {
            tracing::error!(error = %e, "history read failed");
            Scan::default()
        });
        let events: Vec<_> = scan.events.into_iter().filter(|e| e.seq <= head).collect();
        let skipped: Vec<u64> = scan.bad.into_iter().filter(|s| *s <= head).collect();
        // A full page ends at the last record read, decodable or not: a
        // damaged record is skipped alone, never the events after it.
        let more = scan.read == limit;
        let head = match scan.last {
            Some(last) if more => last.min(head),
            _ => head,
        };
        Box::pin(async move {
            Page {
                events,
                head,
                more,
                skipped,
            }
        })
    }

    fn retained(&self, tenant: Option<&str>, selectors: &SelectorSet) -> BoxFuture<'_, Page> {
        let head = self.shared.head.load(Ordering::Acquire);
        let mut events: Vec<Arc<Event>> = Vec::new();
        if let Ok(r) = self.db.begin_read() {
            if let Ok(t) = r.open_table(RETAINED) {
                for (lo, hi) in crate::retained::ranges_for(tenant, selectors) {
                    let Ok(iter) = t.range(lo.as_str()..hi.as_str()) else {
                        continue;
                    };
                    for (k, v) in iter.flatten() {
                        if !crate::retained::selected(k.value(), selectors) {
                            continue;
                        }
                        if let Ok(e) = codec::decode_event(v.value()) {
                            if e.seq <= head {
                                events.push(Arc::new(e));
                            }
                        }
                    }
                }
            }
        }
        let page = Page::snapshot(events, head);
        Box::pin(async move { page })
    }

    fn head(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }
}
