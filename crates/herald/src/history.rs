//! History: where published events are sequenced and kept for resume.
//!
//! [`History`] is the seam between the hub and its storage. The in-memory
//! implementation lives here; the embedded durable store and the NATS
//! JetStream cluster implement the same trait, so the hub's resume logic
//! (no gap, no duplicate) is written once.
//!
//! Sequencing belongs to the history, not the hub: JetStream assigns its own
//! sequence numbers, and a durable store must never reuse one after a crash.

use crate::retained::RetainedIndex;
use futures_util::future::BoxFuture;
use herald_core::{Event, EventDraft, LastEventId, SelectorSet};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// An event with this id is already in history.
    #[error("an event with id `{0}` already exists")]
    DuplicateId(String),
    /// The backing store cannot take writes now (answered `503`).
    #[error("history unavailable: {0}")]
    Unavailable(String),
}

/// Where a subscriber with a `Last-Event-ID` resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumePoint {
    /// Deliver every event with `seq` greater than this.
    After(u64),
    /// The id is older than history holds (or unknown): send `event: reset`.
    Reset,
}

/// A page of history: events after a point, and the head they were read at.
#[derive(Default)]
pub struct Page {
    /// Events in `seq` order.
    pub events: Vec<Arc<Event>>,
    /// How far the page reaches: every event with `seq <= head` that the
    /// page could hold is in it (or in `skipped`). Live events with
    /// `seq <= head` are duplicates of this page and are skipped.
    pub head: u64,
    /// Whether the page stopped at its limit, so more events may follow
    /// after `head`.
    pub more: bool,
    /// Sequence numbers of stored records that could not be read (damaged
    /// on disk). They are skipped exactly, never the events after them, and
    /// the reader audits them.
    pub skipped: Vec<u64>,
}

impl Page {
    /// The retained snapshot made of the events of the selected slots: in
    /// `seq` order, each event once (an event retained on several topics
    /// holds several slots).
    pub fn snapshot(mut events: Vec<Arc<Event>>, head: u64) -> Page {
        events.sort_by_key(|e| e.seq);
        events.dedup_by_key(|e| e.seq);
        Page {
            events,
            head,
            ..Page::default()
        }
    }
}

/// Receives committed events, in `seq` order, exactly once each. The hub's
/// dispatcher is the sink: live delivery is driven by what the history
/// committed, which keeps every stream in `seq` order even when many
/// publishers share one group commit, and lets a cluster history feed
/// events published on other nodes through the same path.
pub type Sink = Arc<dyn Fn(&[Arc<Event>]) + Send + Sync>;

/// The key a client-chosen event id is known by: ids are unique (and looked
/// up) per tenant, so one tenant's ids neither collide with nor reveal
/// another's. Hub-wide events have their own scope.
pub fn scoped_id(tenant: Option<&str>, id: &str) -> String {
    format!("{}\0{id}", crate::retained::tenant_prefix(tenant))
}

/// Storage for published events.
pub trait History: Send + Sync + 'static {
    /// Sets the sink told about every committed event. Called once, before
    /// the first append.
    fn set_sink(&self, sink: Sink);

    /// Sequences and stores a batch atomically: all or none. Resolves once
    /// the events are durable (per the store's policy) and have been given
    /// to the sink, with the events in order. A duplicate id (in history or
    /// in the batch, within the event's tenant) fails the whole batch (the
    /// cluster history keeps this with a JetStream atomic batch).
    fn append(&self, drafts: Vec<EventDraft>, now_ms: u64) -> BoxFuture<'_, Result<Vec<Arc<Event>>, HistoryError>>;

    /// Maps a `Last-Event-ID` presented by a subscriber of `tenant` to a
    /// resume point. Client ids are looked up in the subscriber's tenant and
    /// among hub-wide events (the only events it can have seen); an id
    /// unknown there is [`ResumePoint::Reset`], exactly like an id that
    /// never existed. `Err` for a sequence number beyond the head.
    fn resolve(&self, last: &LastEventId, tenant: Option<&str>) -> BoxFuture<'_, Result<ResumePoint, ()>>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Page>;

    /// The retained snapshot a subscriber of `tenant` with `selectors` may
    /// be shown: the latest event of every retained slot of its tenant and
    /// of hub-wide events on the selected topics (see [`crate::retained`]),
    /// in `seq` order, and the head. Visibility is still checked per event
    /// by the caller.
    fn retained(&self, tenant: Option<&str>, selectors: &SelectorSet) -> BoxFuture<'_, Page>;

    /// The last sequence number assigned (0 before the first event).
    fn head(&self) -> u64;
}

struct MemoryState {
    sink: Option<Sink>,
    events: VecDeque<Arc<Event>>,
    /// Client ids by [`scoped_id`].
    by_id: HashMap<String, u64>,
    /// Retained events by [`crate::retained::slot_key`].
    retained: BTreeMap<String, Arc<Event>>,
    slots: RetainedIndex,
    head: u64,
}

/// History held in memory, bounded by count: the oldest events fall off.
pub struct MemoryHistory {
    state: Mutex<MemoryState>,
    capacity: usize,
}

/// Retained slots per tenant when no bound is configured.
pub const DEFAULT_RETAINED_PER_TENANT: usize = 10_000;

impl MemoryHistory {
    /// Keeps at most `capacity` events.
    pub fn new(capacity: usize) -> MemoryHistory {
        MemoryHistory::with_retained_per_tenant(capacity, DEFAULT_RETAINED_PER_TENANT)
    }

    /// Keeps at most `capacity` events and `per_tenant` retained slots per
    /// tenant.
    pub fn with_retained_per_tenant(capacity: usize, per_tenant: usize) -> MemoryHistory {
        MemoryHistory {
            state: Mutex::new(MemoryState {
                sink: None,
                events: VecDeque::new(),
                by_id: HashMap::new(),
                retained: BTreeMap::new(),
                slots: RetainedIndex::new(per_tenant),
                head: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    fn append_now(&self, drafts: Vec<EventDraft>, now_ms: u64) -> Result<Vec<Arc<Event>>, HistoryError> {
        let mut s = self.state.lock();
        let mut batch_ids = std::collections::HashSet::new();
        for d in &drafts {
            if let (Some(id), true) = (&d.id, d.unique_id) {
                let key = scoped_id(d.audience.tenant.as_deref(), id);
                if s.by_id.contains_key(&key) || !batch_ids.insert(key) {
                    return Err(HistoryError::DuplicateId(id.clone()));
                }
            }
        }
        let mut out = Vec::with_capacity(drafts.len());
        for d in drafts {
            s.head += 1;
            let event = Arc::new(d.into_event(s.head, now_ms));
            s.keep(event.clone());
            out.push(event);
        }
        self.trim(&mut s);
        // Dispatch under the lock: the next append cannot be sequenced until
        // this one is delivered, so sinks see strictly increasing `seq`.
        if let Some(sink) = &s.sink {
            sink(&out);
        }
        Ok(out)
    }

    /// Drops the oldest events past the capacity.
    fn trim(&self, s: &mut MemoryState) {
        while s.events.len() > self.capacity {
            if let Some(old) = s.events.pop_front() {
                // The id's earliest use is gone: resuming from it is a reset.
                let key = scoped_id(old.audience.tenant.as_deref(), &old.id);
                if s.by_id.get(&key) == Some(&old.seq) {
                    s.by_id.remove(&key);
                }
            }
        }
    }

    fn resolve_now(&self, last: &LastEventId, tenant: Option<&str>) -> Result<ResumePoint, ()> {
        self.resolve_reaching(last, tenant, u64::MAX).map_err(|_| ())
    }

    /// Resolves a `Last-Event-ID` when events from `reach` on are kept
    /// elsewhere too (a cluster node's window is backed by JetStream, which
    /// holds more than the window): a resume is a reset only when neither
    /// holds the events it needs. Client ids are known only in the window.
    pub fn resolve_reaching(
        &self,
        last: &LastEventId,
        tenant: Option<&str>,
        reach: u64,
    ) -> Result<ResumePoint, BeyondHead> {
        let s = self.state.lock();
        let oldest = s.events.front().map_or(s.head + 1, |e| e.seq).min(reach);
        resume_point(last, tenant, s.head, oldest, |key| s.by_id.get(key).copied())
    }

    /// The oldest sequence number in the window (the head + 1 when empty).
    pub fn oldest(&self) -> u64 {
        let s = self.state.lock();
        s.events.front().map_or(s.head + 1, |e| e.seq)
    }
}

/// A `Last-Event-ID` that is a sequence number beyond the head: no event
/// with it was ever issued by this hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeyondHead;

/// The one rule mapping a `Last-Event-ID` to a resume point, for every
/// history: `head` is the last sequence number assigned, `oldest` the
/// oldest still kept, and `lookup` finds a client id by its
/// [`scoped_id`]. A client id is looked up in the subscriber's tenant and
/// among hub-wide events (the only events it can have seen); when both hold
/// it, the earlier is the safe side (a duplicate, never a gap). An id
/// unknown there is a reset, whoever else may use it.
pub fn resume_point(
    last: &LastEventId,
    tenant: Option<&str>,
    head: u64,
    oldest: u64,
    lookup: impl Fn(&str) -> Option<u64>,
) -> Result<ResumePoint, BeyondHead> {
    let seq = match last {
        LastEventId::Seq(seq) if *seq > head => return Err(BeyondHead),
        LastEventId::Seq(seq) => *seq,
        LastEventId::Client(id) => {
            let found = |t: Option<&str>| lookup(&scoped_id(t, id));
            match [tenant.and_then(|t| found(Some(t))), found(None)]
                .into_iter()
                .flatten()
                .min()
            {
                Some(seq) => seq,
                None => return Ok(ResumePoint::Reset),
            }
        }
    };
    // Resuming after `seq` needs every event from `seq + 1` on.
    if seq + 1 < oldest {
        Ok(ResumePoint::Reset)
    } else {
        Ok(ResumePoint::After(seq))
    }
}

impl MemoryState {
    /// Writes a retained event into its slots (and clears the slots it
    /// replaces).
    fn retain_slots(&mut self, event: &Arc<Event>) {
        if event.retain {
            let changes = self.slots.retain(event);
            for key in changes.removed {
                self.retained.remove(&key);
            }
            for key in changes.written {
                self.retained.insert(key, event.clone());
            }
        }
    }

    /// Indexes a sequenced event: its client id, its retained slots, the
    /// window.
    fn keep(&mut self, event: Arc<Event>) {
        self.retain_slots(&event);
        // A reused id (Mercure allows it) keeps pointing at its earliest
        // use: a resume from it may repeat events, never skip them, and a
        // reuse cannot move another publisher's id forward.
        if !event.id.bytes().all(|b| b.is_ascii_digit()) {
            self.by_id
                .entry(scoped_id(event.audience.tenant.as_deref(), &event.id))
                .or_insert(event.seq);
        }
        self.events.push_back(event);
    }
}

impl MemoryHistory {
    /// Adds an event sequenced elsewhere (a cluster stream), in `seq`
    /// order, and hands it to the sink. Events at or below the head are
    /// ignored (a redelivery).
    pub fn ingest(&self, event: Arc<Event>) {
        let mut s = self.state.lock();
        if event.seq <= s.head {
            return;
        }
        s.head = event.seq;
        s.keep(event.clone());
        self.trim(&mut s);
        if let Some(sink) = &s.sink {
            sink(std::slice::from_ref(&event));
        }
    }

    /// Seeds the retained snapshot with an event older than the window
    /// (a cluster node starting: JetStream keeps the latest retained event
    /// of every slot apart from the events). Seeds are given in `seq`
    /// order, before any event is ingested; the head does not move.
    pub fn seed_retained(&self, event: Arc<Event>) {
        self.state.lock().retain_slots(&event);
    }

    /// Whether an event with this client id is in the window, in `tenant`.
    pub fn contains_id(&self, tenant: Option<&str>, id: &str) -> bool {
        self.state.lock().by_id.contains_key(&scoped_id(tenant, id))
    }

    /// The event with this sequence number, if still in the window.
    pub fn get(&self, seq: u64) -> Option<Arc<Event>> {
        let s = self.state.lock();
        let first = s.events.front()?.seq;
        s.events
            .get(seq.checked_sub(first)? as usize)
            .filter(|e| e.seq == seq)
            .cloned()
    }
}

impl History for MemoryHistory {
    fn set_sink(&self, sink: Sink) {
        self.state.lock().sink = Some(sink);
    }

    fn append(&self, drafts: Vec<EventDraft>, now_ms: u64) -> BoxFuture<'_, Result<Vec<Arc<Event>>, HistoryError>> {
        let r = self.append_now(drafts, now_ms);
        Box::pin(async move { r })
    }

    fn resolve(&self, last: &LastEventId, tenant: Option<&str>) -> BoxFuture<'_, Result<ResumePoint, ()>> {
        let r = self.resolve_now(last, tenant);
        Box::pin(async move { r })
    }

    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Page> {
        let s = self.state.lock();
        let start = s.events.partition_point(|e| e.seq <= after);
        let events: Vec<_> = s.events.range(start..).take(limit).cloned().collect();
        let more = events.len() == limit;
        let head = if more {
            events.last().map_or(s.head, |e| e.seq)
        } else {
            s.head
        };
        drop(s);
        Box::pin(async move {
            Page {
                events,
                head,
                more,
                skipped: Vec::new(),
            }
        })
    }

    fn retained(&self, tenant: Option<&str>, selectors: &SelectorSet) -> BoxFuture<'_, Page> {
        let s = self.state.lock();
        let mut events: Vec<Arc<Event>> = Vec::new();
        for (lo, hi) in crate::retained::ranges_for(tenant, selectors) {
            events.extend(
                s.retained
                    .range(lo..hi)
                    .filter(|(k, _)| crate::retained::selected(k, selectors))
                    .map(|(_, e)| e.clone()),
            );
        }
        let head = s.head;
        // Sorted after the lock is released: appends wait on it.
        drop(s);
        let page = Page::snapshot(events, head);
        Box::pin(async move { page })
    }

    fn head(&self) -> u64 {
        self.state.lock().head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{Limits, SessionKey};
    use serde_json::json;

    fn draft(id: Option<&str>) -> EventDraft {
        let mut v = json!({"topics": ["t"], "data": "d", "audience": "public"});
        if let Some(id) = id {
            v["id"] = json!(id);
        }
        EventDraft::from_json(&v, &SessionKey::new([0; 32]), &Limits::default()).unwrap()
    }

    #[tokio::test]
    async fn resolve_and_evict() {
        let h = MemoryHistory::new(3);
        for _ in 0..5 {
            h.append(vec![draft(None)], 0).await.unwrap();
        }
        let r = |id: &str| LastEventId::parse(id).unwrap().unwrap();
        assert_eq!(h.resolve(&r("5"), None).await, Ok(ResumePoint::After(5)));
        assert_eq!(h.resolve(&r("2"), None).await, Ok(ResumePoint::After(2)));
        assert_eq!(h.resolve(&r("1"), None).await, Ok(ResumePoint::Reset));
        assert_eq!(h.resolve(&r("6"), None).await, Err(()));
        assert_eq!(h.resolve(&r("nope"), None).await, Ok(ResumePoint::Reset));
        let page = h.since(3, 10).await;
        assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert!(matches!(
            h.append(vec![draft(Some("x")), draft(Some("x"))], 0).await,
            Err(HistoryError::DuplicateId(_))
        ));
        assert_eq!(h.head(), 5);
    }

    fn tenant_draft(tenant: &str, id: &str) -> EventDraft {
        let v = json!({"topics": ["t"], "data": "d", "audience": {"tenant": tenant}, "id": id});
        EventDraft::from_json(&v, &SessionKey::new([0; 32]), &Limits::default()).unwrap()
    }

    #[tokio::test]
    async fn client_ids_are_scoped_per_tenant() {
        let h = MemoryHistory::new(10);
        h.append(vec![tenant_draft("acme", "ord-1")], 0).await.unwrap();
        // Another tenant may use the same id; the same tenant may not.
        h.append(vec![tenant_draft("globex", "ord-1")], 0).await.unwrap();
        assert!(matches!(
            h.append(vec![tenant_draft("acme", "ord-1")], 0).await,
            Err(HistoryError::DuplicateId(_))
        ));
        let id = LastEventId::Client("ord-1".into());
        assert_eq!(h.resolve(&id, Some("acme")).await, Ok(ResumePoint::After(1)));
        assert_eq!(h.resolve(&id, Some("globex")).await, Ok(ResumePoint::After(2)));
        // A third tenant learns nothing: the same answer as an unknown id.
        assert_eq!(h.resolve(&id, Some("initech")).await, Ok(ResumePoint::Reset));
        assert_eq!(h.resolve(&id, None).await, Ok(ResumePoint::Reset));
    }
}
