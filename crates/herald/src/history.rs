//! History: where published events are sequenced and kept for resume.
//!
//! [`History`] is the seam between the hub and its storage. The in-memory
//! implementation lives here; the embedded durable store and the NATS
//! JetStream cluster implement the same trait, so the hub's resume logic
//! (no gap, no duplicate) is written once.
//!
//! Sequencing belongs to the history, not the hub: JetStream assigns its own
//! sequence numbers, and a durable store must never reuse one after a crash.

use futures_util::future::BoxFuture;
use herald_core::{Event, EventDraft};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
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
pub struct Page {
    /// Events in `seq` order.
    pub events: Vec<Arc<Event>>,
    /// The last sequence number assigned when the page was read. Live events
    /// with `seq <= head` are duplicates of this page and are skipped.
    pub head: u64,
}

/// Receives committed events, in `seq` order, exactly once each. The hub's
/// dispatcher is the sink: live delivery is driven by what the history
/// committed, which keeps every stream in `seq` order even when many
/// publishers share one group commit, and lets a cluster history feed
/// events published on other nodes through the same path.
pub type Sink = Arc<dyn Fn(&[Arc<Event>]) + Send + Sync>;

/// Storage for published events.
pub trait History: Send + Sync + 'static {
    /// Sets the sink told about every committed event. Called once, before
    /// the first append.
    fn set_sink(&self, sink: Sink);

    /// Sequences and stores a batch atomically: all or none. Resolves once
    /// the events are durable (per the store's policy) and have been given
    /// to the sink, with the events in order. A duplicate id (in history or
    /// in the batch) fails the whole batch.
    fn append(&self, drafts: Vec<EventDraft>, now_ms: u64) -> BoxFuture<'_, Result<Vec<Arc<Event>>, HistoryError>>;

    /// Maps a `Last-Event-ID` to a resume point. `Err` for an id that can
    /// never have been issued (a number beyond the head).
    fn resolve(&self, last_event_id: &str) -> BoxFuture<'_, Result<ResumePoint, ()>>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Page>;

    /// The latest retained event of every topic, in `seq` order, and the head.
    fn retained(&self) -> BoxFuture<'_, Page>;

    /// The last sequence number assigned (0 before the first event).
    fn head(&self) -> u64;
}

struct MemoryState {
    sink: Option<Sink>,
    events: VecDeque<Arc<Event>>,
    by_id: HashMap<String, u64>,
    retained: HashMap<String, Arc<Event>>,
    head: u64,
}

/// History held in memory, bounded by count: the oldest events fall off.
pub struct MemoryHistory {
    state: Mutex<MemoryState>,
    capacity: usize,
}

impl MemoryHistory {
    /// Keeps at most `capacity` events.
    pub fn new(capacity: usize) -> MemoryHistory {
        MemoryHistory {
            state: Mutex::new(MemoryState {
                sink: None,
                events: VecDeque::new(),
                by_id: HashMap::new(),
                retained: HashMap::new(),
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
                if s.by_id.contains_key(id) || !batch_ids.insert(id.as_str()) {
                    return Err(HistoryError::DuplicateId(id.clone()));
                }
            }
        }
        let mut out = Vec::with_capacity(drafts.len());
        for d in drafts {
            s.head += 1;
            let event = Arc::new(d.into_event(s.head, now_ms));
            if event.retain {
                for t in &event.topics {
                    s.retained.insert(t.clone(), event.clone());
                }
            }
            s.by_id.insert(event.id.clone(), event.seq);
            s.events.push_back(event.clone());
            out.push(event);
        }
        while s.events.len() > self.capacity {
            if let Some(old) = s.events.pop_front() {
                // A repeated (Mercure) id may now point at a newer event.
                if s.by_id.get(&old.id) == Some(&old.seq) {
                    s.by_id.remove(&old.id);
                }
            }
        }
        // Dispatch under the lock: the next append cannot be sequenced until
        // this one is delivered, so sinks see strictly increasing `seq`.
        if let Some(sink) = &s.sink {
            sink(&out);
        }
        Ok(out)
    }

    fn resolve_now(&self, id: &str) -> Result<ResumePoint, ()> {
        let s = self.state.lock();
        let oldest = s.events.front().map_or(s.head + 1, |e| e.seq);
        let seq = if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            let seq: u64 = id.parse().map_err(|_| ())?;
            if seq > s.head {
                return Err(());
            }
            seq
        } else {
            match s.by_id.get(id) {
                Some(seq) => *seq,
                None => return Ok(ResumePoint::Reset),
            }
        };
        // Resuming after `seq` needs every event from `seq + 1` on.
        if seq + 1 < oldest {
            Ok(ResumePoint::Reset)
        } else {
            Ok(ResumePoint::After(seq))
        }
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
        if event.retain {
            for t in &event.topics {
                s.retained.insert(t.clone(), event.clone());
            }
        }
        s.by_id.insert(event.id.clone(), event.seq);
        s.events.push_back(event.clone());
        while s.events.len() > self.capacity {
            if let Some(old) = s.events.pop_front() {
                if s.by_id.get(&old.id) == Some(&old.seq) {
                    s.by_id.remove(&old.id);
                }
            }
        }
        if let Some(sink) = &s.sink {
            sink(std::slice::from_ref(&event));
        }
    }

    /// Whether an event with this id is in the window.
    pub fn contains_id(&self, id: &str) -> bool {
        self.state.lock().by_id.contains_key(id)
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

    fn resolve(&self, last_event_id: &str) -> BoxFuture<'_, Result<ResumePoint, ()>> {
        let r = self.resolve_now(last_event_id);
        Box::pin(async move { r })
    }

    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Page> {
        let s = self.state.lock();
        let start = s.events.partition_point(|e| e.seq <= after);
        let events: Vec<_> = s.events.range(start..).take(limit).cloned().collect();
        let head = if events.len() == limit {
            events.last().map_or(s.head, |e| e.seq)
        } else {
            s.head
        };
        drop(s);
        Box::pin(async move { Page { events, head } })
    }

    fn retained(&self) -> BoxFuture<'_, Page> {
        let s = self.state.lock();
        let mut events: Vec<_> = s.retained.values().cloned().collect();
        let head = s.head;
        drop(s);
        events.sort_by_key(|e| e.seq);
        events.dedup_by_key(|e| e.seq);
        Box::pin(async move { Page { events, head } })
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
        assert_eq!(h.resolve("5").await, Ok(ResumePoint::After(5)));
        assert_eq!(h.resolve("2").await, Ok(ResumePoint::After(2)));
        assert_eq!(h.resolve("1").await, Ok(ResumePoint::Reset));
        assert_eq!(h.resolve("6").await, Err(()));
        assert_eq!(h.resolve("nope").await, Ok(ResumePoint::Reset));
        let page = h.since(3, 10).await;
        assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert!(matches!(
            h.append(vec![draft(Some("x")), draft(Some("x"))], 0).await,
            Err(HistoryError::DuplicateId(_))
        ));
        assert_eq!(h.head(), 5);
    }
}
