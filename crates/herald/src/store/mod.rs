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

use crate::audit::AuditRecord;
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
/// is migrated in place when it is opened.
pub const FORMAT: u64 = 2;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
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
    Audit(Vec<u8>, u64),
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
    sink: OnceLock<Sink>,
}

/// The embedded store.
pub struct Store {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    path: PathBuf,
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
        let mut old: Vec<Vec<u8>> = Vec::new();
        for item in retained.iter()? {
            let (_, v) = item?;
            old.push(v.value().to_vec());
        }
        retained.retain(|_, _| false)?;
        for bytes in old {
            if let Ok(e) = codec::decode_event(&bytes) {
                for t in &e.topics {
                    retained.insert(crate::retained::slot_key(t, &e.audience).as_str(), bytes.as_slice())?;
                }
            }
        }
        let mut meta = txn.open_table(META)?;
        meta.insert("format", FORMAT)?;
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
        if format.is_some_and(|f| f < FORMAT) {
            guarded(|| migrate_to_scoped_keys(&db)).map_err(|e| storage_error(&path, e))?;
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

    /// Persists an audit record (asynchronously, in the next commit).
    pub fn persist_audit(&self, r: &AuditRecord) {
        if let Ok(bytes) = serde_json::to_vec(r) {
            let _ = self.jobs.send(Job::Audit(bytes, r.id));
        }
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
        let path = &self.path;
        let r = self.db.begin_read().map_err(|e| storage_error(path, e))?;
        let t = match r.open_table(AUDIT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage_error(path, e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| storage_error(path, e))?.rev().take(limit) {
            let (_, v) = item.map_err(|e| storage_error(path, e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| storage_error(path, e))?);
        }
        out.reverse();
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
        });
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
                        if !crate::retained::slot_topic(k.value()).is_some_and(|t| selectors.matches(t)) {
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
        events.sort_by_key(|e| e.seq);
        events.dedup_by_key(|e| e.seq);
        Box::pin(async move {
            Page {
                events,
                head,
                ..Page::default()
            }
        })
    }

    fn head(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }
}

/// The single writer.
struct Writer {
    db: Arc<Database>,
    shared: Arc<Shared>,
    config: StoreConfig,
    last_durable: Instant,
    dirty: bool,
    /// Durable upper bound of sequence numbers handed out (non-`always`
    /// policies only).
    reserved: u64,
    last_sweep: Instant,
    /// The retained slots and their per-tenant bound.
    slots: RetainedIndex,
}

type Reply = (
    oneshot::Sender<Result<Vec<Arc<Event>>, HistoryError>>,
    Result<Vec<Arc<Event>>, HistoryError>,
);

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.commit_batch(Vec::new(), true, false);
                    return;
                }
            };
            let mut jobs: Vec<Job> = first.into_iter().collect();
            // Group commit: everything already queued shares this commit.
            while jobs.len() < 1024 {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let force = jobs.iter().any(|j| matches!(j, Job::Flush(_) | Job::Close(_)));
            let due = match self.config.fsync {
                FsyncPolicy::Always => false,
                FsyncPolicy::Interval(d) => self.dirty && self.last_durable.elapsed() >= d,
                FsyncPolicy::Never => self.dirty && self.last_durable.elapsed() >= Duration::from_secs(1),
            };
            let sweep = self.last_sweep.elapsed() >= Duration::from_secs(1);
            if jobs.is_empty() && !due && !sweep {
                continue;
            }
            if sweep {
                self.last_sweep = Instant::now();
            }
            if let Err(e) = self.commit_batch(jobs, force || due, sweep) {
                tracing::error!(error = %e, "store commit failed");
            }
        }
    }

    /// Writes one batch in one transaction, commits, then dispatches and
    /// answers. On failure every publisher in the batch gets `503`.
    fn commit_batch(&mut self, jobs: Vec<Job>, force_durable: bool, sweep: bool) -> Result<(), redb::Error> {
        let mut replies: Vec<Reply> = Vec::new();
        let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
        let mut committed: Vec<Arc<Event>> = Vec::new();
        let mut head = self.shared.head.load(Ordering::Acquire);
        let mut oldest = self.shared.oldest.load(Ordering::Acquire);
        let mut bytes = self.shared.bytes.load(Ordering::Acquire);
        let mut count = self.shared.count.load(Ordering::Acquire);
        let mut durable = force_durable || self.config.fsync == FsyncPolicy::Always;
        let mut closing = false;
        let mut reserved = self.reserved;
        let result = (|| -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            {
                let mut events = txn.open_table(EVENTS)?;
                let mut ids = txn.open_table(IDS)?;
                let mut retained = txn.open_table(RETAINED)?;
                let mut meta = txn.open_table(META)?;
                let mut audit = txn.open_table(AUDIT)?;
                let mut deny = txn.open_table(DENY)?;
                let mut tokens = txn.open_table(TOKENS)?;
                for job in jobs {
                    match job {
                        Job::Append { drafts, now_ms, reply } => {
                            let mut seen = HashSet::new();
                            let mut dup = None;
                            for d in &drafts {
                                if let (Some(id), true) = (&d.id, d.unique_id) {
                                    let key = crate::history::scoped_id(d.audience.tenant.as_deref(), id);
                                    if !seen.insert(key.clone()) || ids.get(key.as_str())?.is_some() {
                                        dup = Some(id.clone());
                                        break;
                                    }
                                }
                            }
                            if let Some(id) = dup {
                                replies.push((reply, Err(HistoryError::DuplicateId(id))));
                                continue;
                            }
                            let mut out = Vec::with_capacity(drafts.len());
                            for d in drafts {
                                head += 1;
                                let event = Arc::new(d.into_event(head, now_ms));
                                let encoded = codec::encode_event(&event);
                                events.insert(head, encoded.as_slice())?;
                                count += 1;
                                bytes += encoded.len() as u64;
                                if !event.id.bytes().all(|b| b.is_ascii_digit()) {
                                    let key = crate::history::scoped_id(event.audience.tenant.as_deref(), &event.id);
                                    ids.insert(key.as_str(), head)?;
                                }
                                if event.retain {
                                    let changes = self.slots.retain(&event);
                                    for key in &changes.removed {
                                        retained.remove(key.as_str())?;
                                    }
                                    for key in &changes.written {
                                        retained.insert(key.as_str(), encoded.as_slice())?;
                                    }
                                }
                                out.push(event);
                            }
                            committed.extend(out.iter().cloned());
                            replies.push((reply, Ok(out)));
                        }
                        Job::Audit(b, id) => {
                            audit.insert(id, b.as_slice())?;
                        }
                        Job::Deny(b, ack) => {
                            let key = deny.last()?.map_or(1, |(k, _)| k.value() + 1);
                            deny.insert(key, b.as_slice())?;
                            acks.push(ack);
                        }
                        Job::TokenPut(h, b) => {
                            tokens.insert(h.as_slice(), b.as_slice())?;
                        }
                        Job::TokenDel(h) => {
                            tokens.remove(h.as_slice())?;
                        }
                        Job::Flush(ack) => acks.push(ack),
                        Job::Close(ack) => {
                            closing = true;
                            acks.push(ack);
                        }
                    }
                }
                // Retention, enforced in every commit so the file stays
                // bounded: redb reuses the pages these deletes free.
                let now_ms = crate::hub::now_ms();
                let age_cut = (self.config.max_age_ms > 0).then(|| now_ms.saturating_sub(self.config.max_age_ms));
                loop {
                    let over = count > self.config.max_events
                        || (self.config.max_bytes > 0 && bytes > self.config.max_bytes && count > 1);
                    let Some((k, v)) = events.first()? else { break };
                    let (seq, len) = (k.value(), v.value().len() as u64);
                    let decoded = codec::decode_event(v.value()).ok();
                    let too_old = match (age_cut, &decoded) {
                        (Some(cut), Some(e)) => e.published_at_ms < cut,
                        _ => false,
                    };
                    drop((k, v));
                    if !over && !too_old {
                        break;
                    }
                    events.remove(seq)?;
                    count = count.saturating_sub(1);
                    if let Some(e) = decoded {
                        // A repeated (Mercure) id may now point at a newer event.
                        let key = crate::history::scoped_id(e.audience.tenant.as_deref(), &e.id);
                        let current = ids.get(key.as_str())?.map(|v| v.value());
                        if current == Some(seq) {
                            ids.remove(key.as_str())?;
                        }
                    }
                    bytes = bytes.saturating_sub(len);
                    oldest = seq + 1;
                }
                if oldest <= head && events.first()?.is_none() {
                    oldest = head + 1;
                }
                while audit.len()? > self.config.max_audit {
                    audit.pop_first()?;
                }
                // Deny rules, tokens and retained slots whose time is over,
                // once a second.
                if sweep {
                    if let Some(cut) = age_cut {
                        for key in self.slots.expire(cut) {
                            retained.remove(key.as_str())?;
                        }
                    }
                    deny.retain(|_, v| {
                        serde_json::from_slice::<serde_json::Value>(v)
                            .ok()
                            .and_then(|r| r.get("expires_at_ms").and_then(serde_json::Value::as_u64))
                            .is_none_or(|exp| exp > now_ms)
                    })?;
                    tokens.retain(|_, v| {
                        serde_json::from_slice::<TokenRecord>(v).is_ok_and(|r| r.expires_at_ms > now_ms)
                    })?;
                }
                meta.insert("format", FORMAT)?;
                meta.insert("head", head)?;
                meta.insert("bytes", bytes)?;
                if closing {
                    reserved = head;
                    meta.insert("reserved", reserved)?;
                } else if self.config.fsync != FsyncPolicy::Always && head >= reserved {
                    // Reserve the next block durably before handing it out.
                    reserved = head + SEQ_RESERVATION;
                    meta.insert("reserved", reserved)?;
                    durable = true;
                }
            }
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            txn.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.reserved = reserved;
                if durable {
                    self.last_durable = Instant::now();
                    self.dirty = false;
                } else {
                    self.dirty = true;
                }
                self.shared.head.store(head, Ordering::Release);
                self.shared.oldest.store(oldest, Ordering::Release);
                self.shared.bytes.store(bytes, Ordering::Release);
                self.shared.count.store(count, Ordering::Release);
                if !committed.is_empty() {
                    if let Some(sink) = self.shared.sink.get() {
                        sink(&committed);
                    }
                }
                for (reply, r) in replies {
                    let _ = reply.send(r);
                }
                for ack in acks {
                    let _ = ack.send(());
                }
                Ok(())
            }
            Err(e) => {
                for (reply, r) in replies {
                    let _ = reply.send(match r {
                        Err(dup) => Err(dup),
                        Ok(_) => Err(HistoryError::Unavailable(format!("store write failed: {e}"))),
                    });
                }
                Err(e)
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{Limits, SessionKey};
    use serde_json::json;

    fn config(path: &Path) -> StoreConfig {
        StoreConfig {
            path: path.to_path_buf(),
            fsync: FsyncPolicy::Always,
            max_events: 1000,
            max_age_ms: 0,
            max_bytes: 0,
            max_audit: 1000,
            cache_bytes: 1 << 20,
            retained_per_tenant: 100,
        }
    }

    fn draft(v: serde_json::Value) -> EventDraft {
        EventDraft::from_json(&v, &SessionKey::new([0; 32]), &Limits::default()).unwrap()
    }

    fn seqs(page: &Page) -> Vec<u64> {
        page.events.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn an_unreadable_record_is_skipped_alone_never_the_events_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        {
            let store = Store::open(config(&path)).unwrap();
            for i in 0..5 {
                store
                    .append(vec![draft(json!({"topic": "t", "data": i, "audience": "public"}))], 0)
                    .await
                    .unwrap();
            }
            store.close().await;
        }
        // Damage record 3's bytes (the page checksums stay intact: the
        // record itself no longer decodes).
        {
            // The writer thread lets go of the file once it sees the store
            // dropped.
            let mut db = Database::open(&path);
            for _ in 0..100 {
                if db.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
                db = Database::open(&path);
            }
            let db = db.unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(EVENTS)
                .unwrap()
                .insert(3, b"not an event".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(config(&path)).unwrap();
        let all = store.since(0, 1000).await;
        assert_eq!(seqs(&all), vec![1, 2, 4, 5]);
        assert_eq!(all.skipped, vec![3]);
        assert!(!all.more);
        // A page that ends on the damaged record reaches exactly it: the
        // next page starts after it, at 4, not at the head.
        let first = store.since(0, 3).await;
        assert_eq!((seqs(&first), first.head, first.more), (vec![1, 2], 3, true));
        let next = store.since(first.head, 3).await;
        assert_eq!(seqs(&next), vec![4, 5]);
    }

    #[tokio::test]
    async fn a_format_1_file_is_migrated_to_tenant_scoped_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        let acme =
            draft(json!({"topic": "t", "data": "a", "audience": {"tenant": "acme"}, "id": "ord-1", "retain": true}))
                .into_event(1, 0);
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let encoded = codec::encode_event(&acme);
                txn.open_table(EVENTS).unwrap().insert(1, encoded.as_slice()).unwrap();
                txn.open_table(IDS).unwrap().insert("ord-1", 1).unwrap();
                txn.open_table(RETAINED)
                    .unwrap()
                    .insert("t", encoded.as_slice())
                    .unwrap();
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("format", 1).unwrap();
                meta.insert("head", 1).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(config(&path)).unwrap();
        let id = LastEventId::Client("ord-1".into());
        assert_eq!(store.resolve(&id, Some("acme")).await, Ok(ResumePoint::After(1)));
        assert_eq!(store.resolve(&id, Some("globex")).await, Ok(ResumePoint::Reset));
        let exact = SelectorSet::parse(["t"]).unwrap();
        assert_eq!(seqs(&store.retained(Some("acme"), &exact).await), vec![1]);
        assert!(store.retained(Some("globex"), &exact).await.events.is_empty());
        // The same id in another tenant is not a duplicate; in acme it is.
        store
            .append(
                vec![draft(
                    json!({"topic": "t", "data": "g", "audience": {"tenant": "globex"}, "id": "ord-1"}),
                )],
                0,
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .append(
                    vec![draft(
                        json!({"topic": "t", "data": "a", "audience": {"tenant": "acme"}, "id": "ord-1"})
                    )],
                    0
                )
                .await,
            Err(HistoryError::DuplicateId(_))
        ));
    }

    #[tokio::test]
    async fn retained_slots_are_bounded_per_tenant_and_kept_per_audience() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        let mut c = config(&path);
        c.retained_per_tenant = 2;
        let store = Store::open(c).unwrap();
        let retain = |topic: &str, audience: serde_json::Value| {
            draft(json!({"topic": topic, "data": topic, "audience": audience, "retain": true}))
        };
        store
            .append(vec![retain("a", json!({"tenant": "acme"}))], 0)
            .await
            .unwrap();
        store
            .append(vec![retain("a", json!({"tenant": "acme", "users": ["alice"]}))], 0)
            .await
            .unwrap();
        store
            .append(vec![retain("a", json!({"tenant": "globex"}))], 0)
            .await
            .unwrap();
        let all = SelectorSet::all();
        // Both acme audiences keep their slot; globex's did not replace them.
        assert_eq!(seqs(&store.retained(Some("acme"), &all).await), vec![1, 2]);
        store
            .append(vec![retain("b", json!({"tenant": "acme"}))], 0)
            .await
            .unwrap();
        // Past the bound, acme's oldest slot gives way, not globex's.
        assert_eq!(seqs(&store.retained(Some("acme"), &all).await), vec![2, 4]);
        assert_eq!(seqs(&store.retained(Some("globex"), &all).await), vec![3]);
        store.close().await;
    }
}
