//! The history of a cluster node: JetStream sequences and stores, each
//! node's window serves resumes and dispatch.
//!
//! * **Appends.** One event is one JetStream message, deduplicated by a
//!   message id. A batch is one JetStream *atomic batch* (nats-server 2.12
//!   and later): its messages are stored together or not at all, with
//!   consecutive sequence numbers, so a NATS failure midway can never leave
//!   half a batch stored behind a `503`. The answer is built from what was
//!   stored and the sequences JetStream assigned: the same events every
//!   node builds when it reads them back.
//! * **Resumes.** The window (`cluster_window` events) answers most
//!   resumes from memory. A `Last-Event-ID` older than the window but still
//!   in JetStream (`history_size`, `retention_max_age_secs`) is served from
//!   JetStream, so a client is never reset while the events it needs are
//!   kept.

use super::{event_of, Cluster};
use crate::history::{History, HistoryError, Page, ResumePoint, Sink};
use crate::store::codec::encode_event;
use async_nats::jetstream::consumer;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use herald_core::{Event, EventDraft, LastEventId, SelectorSet};
use std::sync::Arc;
use std::time::Duration;

/// JetStream refuses atomic batches of more than this many messages.
pub const MAX_ATOMIC_BATCH: usize = 1000;

/// How long a resume from a client id waits for this node to catch up
/// with JetStream before the id is judged unknown.
const CATCH_UP: Duration = Duration::from_secs(20);

/// How long a publish waits for JetStream's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

fn unavailable(why: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(format!("cluster publish failed: {why}"))
}

/// One message to store: its JetStream message id and its encoded record.
struct Outgoing {
    msg_id: String,
    payload: bytes::Bytes,
    unique: bool,
    client_id: Option<String>,
}

/// The acknowledgement of an atomic batch's commit (or its refusal).
#[derive(serde::Deserialize)]
struct BatchAck {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl Cluster {
    fn outgoing(d: &EventDraft, now_ms: u64) -> Outgoing {
        // JetStream's duplicate window is keyed by message id. Unique
        // client ids are scoped by tenant, so the key is too (another
        // tenant's `ord-1` is not a duplicate); ids a publisher may reuse
        // (Mercure) get a fresh key, or the reuse would be dropped.
        let unique = d.unique_id && d.id.is_some();
        let msg_id = match &d.id {
            Some(id) if unique => crate::history::scoped_id(d.audience.tenant.as_deref(), id).replace('\0', "|"),
            _ => format!("herald-{}", hex::encode(rand::random::<[u8; 12]>())),
        };
        // Encoded without a sequence: JetStream assigns it.
        let mut record = d.clone().into_event(0, now_ms);
        record.id = d.id.clone().unwrap_or_default();
        Outgoing {
            msg_id,
            payload: encode_event(&record).into(),
            unique,
            client_id: d.id.clone(),
        }
    }

    /// Stores one event; its sequence.
    async fn store_one(&self, out: Outgoing) -> Result<u64, HistoryError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", out.msg_id.as_str());
        let pending = self
            .js
            .publish_with_headers(self.events_subject.clone(), headers, out.payload)
            .await
            .map_err(unavailable)?;
        let ack = tokio::time::timeout(ACK_TIMEOUT, pending)
            .await
            .map_err(|_| HistoryError::Unavailable("the cluster did not acknowledge in time".into()))?
            .map_err(unavailable)?;
        if ack.duplicate && out.unique {
            return Err(HistoryError::DuplicateId(out.client_id.unwrap_or_default()));
        }
        Ok(ack.sequence)
    }

    /// Stores a batch as one JetStream atomic batch; the sequences of its
    /// events, in order. Every message but the last is sent without waiting
    /// (JetStream stages them); the commit's acknowledgement says whether
    /// the whole batch was stored.
    async fn store_batch(&self, batch: Vec<Outgoing>) -> Result<Vec<u64>, HistoryError> {
        let batch_id = hex::encode(rand::random::<[u8; 16]>());
        let n = batch.len();
        let mut commit = None;
        for (i, out) in batch.into_iter().enumerate() {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            headers.insert("Nats-Msg-Id", out.msg_id.as_str());
            if i + 1 == n {
                headers.insert("Nats-Batch-Commit", "1");
                commit = Some((headers, out.payload));
            } else {
                self.client
                    .publish_with_headers(self.events_subject.clone(), headers, out.payload)
                    .await
                    .map_err(unavailable)?;
            }
        }
        let Some((headers, payload)) = commit else {
            return Ok(Vec::new());
        };
        let reply = tokio::time::timeout(
            ACK_TIMEOUT,
            self.client
                .request_with_headers(self.events_subject.clone(), headers, payload),
        )
        .await
        .map_err(|_| HistoryError::Unavailable("the cluster did not acknowledge the batch in time".into()))?
        .map_err(unavailable)?;
        let ack: BatchAck = serde_json::from_slice(&reply.payload).map_err(unavailable)?;
        if let Some(error) = ack.error {
            // A batch naming an id already stored is refused whole (the
            // hub answers `409` for it, as on one node).
            let text = error.to_string();
            if text.contains("duplicate") {
                return Err(HistoryError::DuplicateId("(an event of this batch)".into()));
            }
            return Err(unavailable(text));
        }
        if ack.duplicate || ack.count != n as u64 || ack.seq < n as u64 {
            return Err(unavailable(format!(
                "the batch acknowledgement does not match: {} of {n} events at {}",
                ack.count, ack.seq
            )));
        }
        Ok((ack.seq + 1 - n as u64..=ack.seq).collect())
    }

    async fn append_now(&self, drafts: Vec<EventDraft>, now_ms: u64) -> Result<Vec<Arc<Event>>, HistoryError> {
        if !self.connected() {
            return Err(HistoryError::Unavailable("the cluster (NATS) is unreachable".into()));
        }
        if drafts.len() > MAX_ATOMIC_BATCH {
            return Err(HistoryError::Unavailable(format!(
                "a cluster stores at most {MAX_ATOMIC_BATCH} events in one batch"
            )));
        }
        for d in &drafts {
            if let (Some(id), true) = (&d.id, d.unique_id) {
                if self.window.contains_id(d.audience.tenant.as_deref(), id) {
                    return Err(HistoryError::DuplicateId(id.clone()));
                }
            }
        }
        let mut outgoing: Vec<Outgoing> = drafts.iter().map(|d| Cluster::outgoing(d, now_ms)).collect();
        let seqs = if outgoing.len() == 1 {
            let one = outgoing.pop().map(|o| self.store_one(o));
            match one {
                Some(f) => vec![f.await?],
                None => Vec::new(),
            }
        } else {
            self.store_batch(outgoing).await?
        };
        // Answer once this node has dispatched them too (read-your-writes);
        // a node slow to read its own stream answers anyway, with the
        // events as stored.
        let last = seqs.iter().copied().max().unwrap_or(0);
        self.dispatched_through(last, ACK_TIMEOUT).await;
        let events: Vec<Arc<Event>> = drafts
            .into_iter()
            .zip(seqs)
            .map(|(d, seq)| {
                self.window.get(seq).unwrap_or_else(|| {
                    // What every node builds from the stored record.
                    let mut d = d;
                    if d.id.is_none() {
                        d.id = Some(seq.to_string());
                    }
                    d.unique_id = false;
                    Arc::new(d.into_event(seq, now_ms))
                })
            })
            .collect();
        for e in &events {
            self.mirror_retained(e).await;
        }
        Ok(events)
    }

    /// The oldest sequence JetStream still holds (a round trip).
    async fn first_kept(&self) -> Option<u64> {
        let mut events = self.events.clone();
        events.info().await.ok().map(|i| i.state.first_sequence.max(1))
    }

    /// Events after `after` read from JetStream, up to `limit` and never
    /// into the window (from `until` on, the window serves them).
    async fn since_in_stream(&self, after: u64, limit: usize, until: u64) -> Page {
        let empty = Page {
            events: Vec::new(),
            head: after,
            more: true,
            skipped: Vec::new(),
        };
        let consumer = self
            .events
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await;
        let Ok(consumer) = consumer else { return empty };
        let Ok(mut messages) = consumer.messages().await else {
            return empty;
        };
        let mut events = Vec::new();
        let mut head = after;
        let mut skipped = Vec::new();
        let mut reached_window = false;
        while events.len() < limit {
            let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await else {
                break;
            };
            let Ok(seq) = msg.info().map(|i| i.stream_sequence) else {
                continue;
            };
            if head == after && seq > after + 1 {
                // JetStream dropped `after + 1` since the resume was
                // resolved: going on would skip events. The stream ends; its
                // client's next resume resolves to a reset.
                return empty;
            }
            if seq >= until {
                reached_window = true;
                break;
            }
            match event_of(&msg.payload, seq) {
                Ok(e) => events.push(Arc::new(e)),
                Err(e) => {
                    tracing::error!(error = %e, seq, "undecodable event in the cluster stream");
                    skipped.push(seq);
                }
            }
            head = seq;
            if seq + 1 >= until {
                reached_window = true;
                break;
            }
        }
        // Everything before the window was read (JetStream may have holes
        // where messages were deleted): the window serves the rest.
        if reached_window {
            head = until - 1;
        }
        Page {
            events,
            head,
            more: true,
            skipped,
        }
    }
}

impl History for Cluster {
    fn set_sink(&self, sink: Sink) {
        self.window.set_sink(sink);
    }

    fn append(&self, drafts: Vec<EventDraft>, now_ms: u64) -> BoxFuture<'_, Result<Vec<Arc<Event>>, HistoryError>> {
        Box::pin(self.append_now(drafts, now_ms))
    }

    fn resolve(&self, last: &LastEventId, tenant: Option<&str>) -> BoxFuture<'_, Result<ResumePoint, ()>> {
        let last = last.clone();
        let tenant = tenant.map(str::to_string);
        Box::pin(async move {
            // An id another node issued that this node has not read yet:
            // wait (briefly) until it has, rather than call it unknown.
            if let LastEventId::Seq(seq) = last {
                if seq > self.window.head() {
                    self.dispatched_through(seq, ACK_TIMEOUT).await;
                }
            }
            let in_window = self
                .window
                .resolve_reaching(&last, tenant.as_deref(), u64::MAX)
                .map_err(|_| ())?;
            if in_window != ResumePoint::Reset {
                return Ok(in_window);
            }
            if matches!(last, LastEventId::Client(_)) {
                // A client id this node may not have read yet (it was just
                // restarted or resumed from a pause): catch up with what
                // JetStream holds, then look again.
                // Up to CATCH_UP: a node just restarted or resumed may
                // need a while when NATS itself is recovering, and a reset
                // (or a refusal, which ends a plain EventSource for good)
                // would be wrong while JetStream holds the id.
                let deadline = tokio::time::Instant::now() + CATCH_UP;
                let mut events = self.events.clone();
                while tokio::time::Instant::now() < deadline {
                    let Ok(info) = events.info().await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let target = info.state.last_sequence;
                    if target <= self.window.head() {
                        break;
                    }
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.dispatched_through(target, left).await;
                }
                return self
                    .window
                    .resolve_reaching(&last, tenant.as_deref(), u64::MAX)
                    .map_err(|_| ());
            }
            // Older than the window: JetStream may still hold it.
            match self.first_kept().await {
                Some(first) => self
                    .window
                    .resolve_reaching(&last, tenant.as_deref(), first)
                    .map_err(|_| ()),
                None => Ok(ResumePoint::Reset),
            }
        })
    }

    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Page> {
        Box::pin(async move {
            let oldest = self.window.oldest();
            if after + 1 < oldest {
                return self.since_in_stream(after, limit, oldest).await;
            }
            let page = self.window.since(after, limit).await;
            // The window holds every sequence from its oldest on; if it was
            // trimmed past `after` between the two reads, the missing
            // start is read from JetStream.
            match page.events.first() {
                Some(first) if first.seq > after + 1 => self.since_in_stream(after, limit, first.seq).await,
                _ => page,
            }
        })
    }

    fn retained(&self, tenant: Option<&str>, selectors: &SelectorSet) -> BoxFuture<'_, Page> {
        self.window.retained(tenant, selectors)
    }

    fn head(&self) -> u64 {
        self.window.head()
    }
}

/// The header carrying a mirrored retained event's sequence (its record
/// does not know it).
const SEQ_HEADER: &str = "Herald-Seq";

impl Cluster {
    /// Keeps the latest retained event of each of `event`'s slots in the
    /// retained stream, one subject per slot: JetStream's own limit of one
    /// message per subject replaces the previous one. What the event stream
    /// drops with age or count stays here, so every node, including one
    /// started later, shows the same snapshot.
    pub(super) async fn mirror_retained(&self, event: &Event) {
        if !event.retain {
            return;
        }
        let mut record = (*event).clone();
        // Stored as the event stream stores it: the client id, or none.
        if record.id == event.seq.to_string() {
            record.id.clear();
        }
        let payload: bytes::Bytes = encode_event(&record).into();
        for topic in &event.topics {
            let slot = crate::retained::slot_key(topic, &event.audience);
            let subject = format!(
                "{}.{}",
                self.retained_subject,
                hex::encode(&blake3::hash(slot.as_bytes()).as_bytes()[..16])
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(SEQ_HEADER, event.seq.to_string().as_str());
            let sent = match self.js.publish_with_headers(subject, headers, payload.clone()).await {
                Ok(ack) => tokio::time::timeout(ACK_TIMEOUT, ack)
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false),
                Err(_) => false,
            };
            if !sent {
                // The event itself is stored; only a node started after it
                // aged out of the event stream would miss it.
                tracing::warn!(seq = event.seq, "could not mirror a retained event");
            }
        }
    }

    /// Seeds the window's retained snapshot from the retained stream and
    /// returns the sequence the event stream is to be read from: the
    /// window's worth of the newest events (0: from the first).
    pub(super) async fn seed_retained(&self, retained: &async_nats::jetstream::stream::Stream, window: usize) -> u64 {
        let mut seeds = Vec::new();
        let consumer = retained
            .create_consumer(consumer::pull::OrderedConfig {
                // One message per subject is all the stream keeps.
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await;
        let mut info = retained.clone();
        let expected = info.info().await.map(|i| i.state.messages).unwrap_or(0);
        if let (Ok(consumer), true) = (consumer, expected > 0) {
            if let Ok(mut messages) = consumer.messages().await {
                while (seeds.len() as u64) < expected {
                    let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await else {
                        break;
                    };
                    let seq = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(SEQ_HEADER))
                        .and_then(|v| v.as_str().parse::<u64>().ok());
                    if let Some(Ok(e)) = seq.map(|seq| event_of(&msg.payload, seq)) {
                        seeds.push(Arc::new(e));
                    }
                }
            }
        }
        seeds.sort_by_key(|e| e.seq);
        seeds.dedup_by_key(|e| e.seq);
        for e in seeds {
            self.window.seed_retained(e);
        }
        let mut events = self.events.clone();
        match events.info().await {
            Ok(i) if i.state.last_sequence > window as u64 => {
                (i.state.last_sequence + 1 - window as u64).max(i.state.first_sequence)
            }
            _ => 0,
        }
    }
}
