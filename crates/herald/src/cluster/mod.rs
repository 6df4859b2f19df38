//! Clustering over NATS JetStream: many hub nodes, one stream of events.
//!
//! Herald invents no replication of its own. A publish on any node is
//! appended to a JetStream stream and answered once JetStream acknowledged
//! it; the JetStream sequence *is* the event's `seq`. Every node consumes
//! the stream in order (an ordered consumer from the first message kept)
//! and feeds it to its local history window, which dispatches to the node's
//! streams through the same sink as a single node. So any node can resume
//! any client, and audience rules are the same everywhere.
//!
//! Revocations travel on a second stream that every node also consumes
//! from the beginning (kept for the longest credential lifetime): a
//! revocation posted to one node closes matching streams on all of them,
//! and a node started later still refuses revoked credentials.
//!
//! What must be decided once for the whole cluster lives in JetStream
//! key-value buckets, with JetStream's compare-and-set as the only
//! arbiter: SSE tokens ([`tokens`]) and stream caps ([`leases`]).
//! [`history`] is the [`crate::history::History`] of a cluster node.

pub mod history;
pub mod leases;
pub mod tokens;

use crate::history::MemoryHistory;
use crate::store::codec::{decode_event, DenyRecord};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use herald_core::{DenyRule, Event, EventDraft};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Cluster settings.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `nats://host:4222[,nats://...]`
    pub urls: String,
    /// JetStream stream name prefix (`HERALD` → `HERALD_EVENTS`, `HERALD_CONTROL`).
    pub stream: String,
    /// Replicas for streams created by Herald.
    pub replicas: usize,
    /// Events kept in the JetStream stream (`history_size`).
    pub max_events: usize,
    /// Events kept in each node's memory for resume (`cluster_window`);
    /// older resumes are read from JetStream.
    pub window: usize,
    /// Stream caps across the cluster (`cluster_caps`).
    pub caps: bool,
    /// How long a node's places outlive its last heartbeat, at most twice
    /// this (`cluster_lease_secs`).
    pub lease: Duration,
    /// Oldest event kept.
    pub max_age: Duration,
    /// How long revocations are kept (the longest credential lifetime).
    pub control_max_age: Duration,
    /// Retained slots kept per tenant in each node's window.
    pub retained_per_tenant: usize,
}

/// Runs a JetStream administration call, retrying while a JetStream
/// cluster is still forming (electing its leaders takes a few seconds
/// after it starts).
async fn retry_forming<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    mut call: impl FnMut() -> F,
) -> Result<T, ClusterError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for JetStream");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// Waits between asking JetStream again when nobody answered: 1.5 s in
/// all, short enough to keep a stream open or a mint waiting, long enough
/// for the usual pause while a restarted NATS server takes its streams
/// back.
const UNANSWERED_BACKOFF: [Duration; 5] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(750),
];

/// Whether `e`, or anything it was caused by, says that no JetStream
/// server took the request. Nothing was read or written then, so asking
/// again can never apply a change twice.
fn unanswered(e: &(dyn std::error::Error + 'static)) -> bool {
    use jetstream::context::{PublishError, PublishErrorKind, RequestError, RequestErrorKind};
    let mut cause = Some(e);
    while let Some(e) = cause {
        let no_one = e
            .downcast_ref::<PublishError>()
            .is_some_and(|e| e.kind() == PublishErrorKind::StreamNotFound)
            || e.downcast_ref::<RequestError>()
                .is_some_and(|e| e.kind() == RequestErrorKind::NoResponders)
            || e.downcast_ref::<async_nats::RequestError>()
                .is_some_and(|e| e.kind() == async_nats::RequestErrorKind::NoResponders);
        if no_one {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Runs a key-value call on a request's path (a cap's lease, an SSE
/// token's mint or spend), asking again while no JetStream server answers
/// it: after a NATS server restarts, its peers report healthy a moment
/// before every stream has a server answering for it again, and a node
/// would otherwise refuse those requests with `503` until then.
async fn answered<T, E, F>(mut call: impl FnMut() -> F) -> Result<T, E>
where
    E: std::error::Error + 'static,
    F: std::future::Future<Output = Result<T, E>>,
{
    for wait in UNANSWERED_BACKOFF {
        match call().await {
            Err(e) if unanswered(&e) => tokio::time::sleep(wait).await,
            done => return done,
        }
    }
    call().await
}

/// Creates a stream, or brings an existing one to `config` (a stream made
/// by an older Herald lacks atomic batches).
async fn create_stream(js: &jetstream::Context, config: stream::Config) -> Result<stream::Stream, ClusterError> {
    retry_forming(|| js.create_or_update_stream(config.clone())).await?;
    retry_forming(|| js.get_stream(config.name.clone())).await
}

/// A node's connection to the cluster and its view of the event stream.
pub struct Cluster {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The event stream, read directly for resumes older than the window.
    events: stream::Stream,
    window: MemoryHistory,
    tokens: Arc<tokens::ClusterTokens>,
    leases: Option<Arc<leases::Leases>>,
    dispatched: watch::Receiver<u64>,
    events_subject: String,
    /// Where the latest retained event of each slot is kept, one subject
    /// per slot (`{prefix}.retained.<slot hash>`, one message each).
    retained_subject: String,
    control_subject: String,
    audit_subject: String,
    node: String,
    /// Told about revocations from other nodes; until it is set (the hub
    /// is built after joining), they wait in `pending`.
    rule_handler: parking_lot::Mutex<Option<RuleHandler>>,
    pending: parking_lot::Mutex<Vec<DenyRule>>,
    audit_handler: parking_lot::Mutex<Option<AuditHandler>>,
    pending_audit: parking_lot::Mutex<Vec<crate::audit::AuditRecord>>,
}

/// What records an audit record that came from another node.
pub type AuditHandler = Arc<dyn Fn(crate::audit::AuditRecord) + Send + Sync>;

/// Reads `stream` in order, from sequence `from` (0: its first message),
/// for as long as `handle` returns `true`. The ordered consumer is
/// recreated after the last sequence seen whenever it fails (a NATS server
/// restarts or the client fails over to another one), so a node never
/// stops following.
fn follow(
    stream: stream::Stream,
    from: u64,
    mut handle: impl FnMut(&jetstream::Message, u64) -> bool + Send + 'static,
) {
    tokio::spawn(async move {
        let mut last = from.saturating_sub(1);
        loop {
            let deliver_policy = if last == 0 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: last + 1,
                }
            };
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy,
                    ..Default::default()
                })
                .await;
            let messages = match consumer {
                Ok(c) => c.messages().await.ok(),
                Err(_) => None,
            };
            if let Some(mut messages) = messages {
                let mut errors = 0;
                loop {
                    // A consumer can go quiet without failing when its
                    // server dies; if the stream has moved past what we
                    // saw, start a fresh consumer.
                    let msg = match tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
                        Ok(Some(msg)) => msg,
                        Ok(None) => break,
                        Err(_) => match stream.get_info().await {
                            Ok(info) if info.state.last_sequence > last => break,
                            _ => continue,
                        },
                    };
                    let Ok(msg) = msg else {
                        errors += 1;
                        if errors > 3 {
                            break;
                        }
                        continue;
                    };
                    errors = 0;
                    let Ok(seq) = msg.info().map(|i| i.stream_sequence) else {
                        continue;
                    };
                    if seq <= last {
                        continue;
                    }
                    last = seq;
                    if !handle(&msg, seq) {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

/// Whether a key-value compare-and-set lost to another writer.
/// nats-server 2.12+ reports it as JetStream error 10164 ("wrong last
/// sequence"), which async-nats 0.51 does not map to `WrongLastRevision`,
/// so the text is checked too.
fn is_conflict(e: &async_nats::jetstream::kv::UpdateError) -> bool {
    matches!(e.kind(), async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision)
        || e.to_string().contains("wrong last sequence")
}

/// The event a stored record at `seq` stands for: the record does not know
/// its sequence (JetStream assigned it), and an event without a client id
/// is known by its sequence.
fn event_of(payload: &[u8], seq: u64) -> Result<Event, crate::store::codec::DecodeError> {
    let mut e = decode_event(payload)?;
    if e.id.is_empty() {
        e.id = seq.to_string();
    }
    let draft = EventDraft {
        topics: e.topics,
        event_type: e.event_type,
        data: e.data,
        id: Some(e.id),
        audience: e.audience,
        retain: e.retain,
        retry: e.retry,
        unique_id: false,
    };
    Ok(draft.into_event(seq, e.published_at_ms))
}

/// What applies a revocation that came from another node.
pub type RuleHandler = Arc<dyn Fn(DenyRule) + Send + Sync>;

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
#[error("cluster: {0}")]
pub struct ClusterError(pub String);

fn err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError(e.to_string())
}

impl Cluster {
    /// Connects, creates the streams if missing, and starts consuming events.
    /// `on_rule` is told about every revocation posted on another node.
    pub async fn join(config: ClusterConfig) -> Result<Arc<Cluster>, ClusterError> {
        // `nats://a:4222,nats://b:4222`: every server is a seed; the client
        // fails over between them.
        let addrs = config
            .urls
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClusterError(format!("`cluster`: {e}")))?;
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(addrs)
            .await
            .map_err(err)?;
        let js = jetstream::new(client.clone());
        let prefix = config.stream.to_lowercase();
        let events_subject = format!("{prefix}.events");
        let control_subject = format!("{prefix}.control");
        let audit_subject = format!("{prefix}.audit");
        let events_config = stream::Config {
            name: format!("{}_EVENTS", config.stream),
            subjects: vec![events_subject.clone()],
            max_messages: config.max_events as i64,
            max_age: config.max_age,
            num_replicas: config.replicas,
            duplicate_window: Duration::from_secs(120),
            // A `{"events": [...]}` batch is stored all or none.
            allow_atomic_publish: true,
            ..Default::default()
        };
        let control_config = stream::Config {
            name: format!("{}_CONTROL", config.stream),
            subjects: vec![control_subject.clone()],
            max_age: config.control_max_age,
            num_replicas: config.replicas,
            ..Default::default()
        };
        let audit_config = stream::Config {
            name: format!("{}_AUDIT", config.stream),
            subjects: vec![audit_subject.clone()],
            max_messages: 100_000,
            num_replicas: config.replicas,
            ..Default::default()
        };
        let audit = create_stream(&js, audit_config).await?;
        let events = create_stream(&js, events_config).await?;
        let control = create_stream(&js, control_config).await?;
        let retained_subject = format!("{prefix}.retained");
        let retained = create_stream(
            &js,
            stream::Config {
                name: format!("{}_RETAINED", config.stream),
                subjects: vec![format!("{retained_subject}.*")],
                max_messages_per_subject: 1,
                max_age: config.max_age,
                num_replicas: config.replicas,
                ..Default::default()
            },
        )
        .await?;
        let tokens =
            Arc::new(tokens::ClusterTokens::open(&js, &config.stream, config.replicas, config.control_max_age).await?);
        let leases = if config.caps {
            Some(leases::Leases::open(client.clone(), &js, &config.stream, config.replicas, config.lease).await?)
        } else {
            None
        };
        let (tx, rx) = watch::channel(0u64);
        let node = format!("node-{}", hex::encode(rand::random::<[u8; 6]>()));
        let cluster = Arc::new(Cluster {
            client,
            js,
            events: events.clone(),
            window: MemoryHistory::with_retained_per_tenant(config.window.max(1), config.retained_per_tenant),
            tokens,
            leases,
            dispatched: rx,
            events_subject,
            retained_subject,
            control_subject,
            audit_subject,
            node: node.clone(),
            rule_handler: parking_lot::Mutex::new(None),
            pending: parking_lot::Mutex::new(Vec::new()),
            audit_handler: parking_lot::Mutex::new(None),
            pending_audit: parking_lot::Mutex::new(Vec::new()),
        });
        // Retained snapshots first: the latest retained event of every
        // slot, however old, so a node started later shows what the others
        // show. Then the events, from where the window begins.
        let from = cluster.seed_retained(&retained, config.window).await;
        let weak = Arc::downgrade(&cluster);
        follow(events, from, move |msg, seq| {
            let Some(c) = weak.upgrade() else { return false };
            match event_of(&msg.payload, seq) {
                Ok(e) => c.window.ingest(Arc::new(e)),
                Err(e) => tracing::error!(error = %e, seq, "undecodable event in the cluster stream"),
            }
            let _ = tx.send(seq);
            true
        });
        // Revocations from other nodes.
        let weak = Arc::downgrade(&cluster);
        follow(control, 0, move |msg, _| {
            let Some(c) = weak.upgrade() else { return false };
            if !c.sent_by_this_node(msg) {
                match serde_json::from_slice::<DenyRecord>(&msg.payload).map(DenyRecord::into_rule) {
                    Ok(Ok(rule)) => c.deliver_rule(rule),
                    _ => tracing::error!("undecodable revocation in the cluster stream"),
                }
            }
            true
        });
        // Audit records from other nodes (the hub is attached later).
        let weak = Arc::downgrade(&cluster);
        follow(audit, 0, move |msg, _| {
            let Some(c) = weak.upgrade() else { return false };
            if !c.sent_by_this_node(msg) {
                if let Ok(record) = serde_json::from_slice::<crate::audit::AuditRecord>(&msg.payload) {
                    c.deliver_audit(record);
                }
            }
            true
        });
        // Serve only once caught up with what the stream held when this
        // node joined: a resume from an id another node issued must not be
        // refused as never issued, nor a retained snapshot be short.
        let mut events_info = cluster.events.clone();
        let target = match events_info.info().await {
            Ok(info) if info.state.messages > 0 => Some(info.state.last_sequence),
            _ => None,
        };
        if let Some(target) = target {
            if !cluster.dispatched_through(target, Duration::from_secs(120)).await {
                tracing::warn!(target, "still reading the cluster's event stream; serving anyway");
            }
        }
        Ok(cluster)
    }

    /// Shares an audit record with the other nodes (in the background: the
    /// audit log must never slow the path that recorded it).
    pub fn publish_audit(&self, record: &crate::audit::AuditRecord) {
        let Ok(payload) = serde_json::to_vec(record) else {
            return;
        };
        let js = self.js.clone();
        let subject = self.audit_subject.clone();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Herald-Node", self.node.as_str());
        tokio::spawn(async move {
            if let Ok(ack) = js.publish_with_headers(subject, headers, payload.into()).await {
                let _ = ack.await;
            }
        });
    }

    fn sent_by_this_node(&self, msg: &jetstream::Message) -> bool {
        msg.headers
            .as_ref()
            .and_then(|h| h.get("Herald-Node"))
            .map(|v| v.as_str())
            == Some(self.node.as_str())
    }

    /// Sets where audit records from other nodes go, and hands over those
    /// that arrived before.
    pub fn on_audit(&self, handler: AuditHandler) {
        let mut slot = self.audit_handler.lock();
        for record in self.pending_audit.lock().drain(..) {
            handler(record);
        }
        *slot = Some(handler);
    }

    fn deliver_audit(&self, record: crate::audit::AuditRecord) {
        let slot = self.audit_handler.lock();
        match &*slot {
            Some(handler) => handler(record),
            None => {
                let mut pending = self.pending_audit.lock();
                if pending.len() < 100_000 {
                    pending.push(record);
                }
            }
        }
    }

    /// Sets what applies revocations from other nodes, and applies those
    /// that arrived before (a node replays every kept revocation at start).
    pub fn on_rule(&self, handler: RuleHandler) {
        let mut slot = self.rule_handler.lock();
        for rule in self.pending.lock().drain(..) {
            handler(rule);
        }
        *slot = Some(handler);
    }

    fn deliver_rule(&self, rule: DenyRule) {
        let slot = self.rule_handler.lock();
        match &*slot {
            Some(handler) => handler(rule),
            None => self.pending.lock().push(rule),
        }
    }

    /// Waits until this node has dispatched every event up to `seq`, at
    /// most `within`; whether it has.
    pub(crate) async fn dispatched_through(&self, seq: u64, within: Duration) -> bool {
        let mut rx = self.dispatched.clone();
        let reached = tokio::time::timeout(within, rx.wait_for(|d| *d >= seq)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// The cluster-wide SSE token ledger.
    pub fn tokens(&self) -> Arc<tokens::ClusterTokens> {
        self.tokens.clone()
    }

    /// The cluster-wide stream caps, unless `cluster_caps = false`.
    pub fn leases(&self) -> Option<&Arc<leases::Leases>> {
        self.leases.as_ref()
    }

    /// Whether the node can reach NATS now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Shares a revocation with every node.
    pub async fn broadcast_rule(&self, rule: &DenyRule) -> Result<(), ClusterError> {
        let payload = serde_json::to_vec(&DenyRecord::from_rule(rule)).map_err(err)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Herald-Node", self.node.as_str());
        let ack = self
            .js
            .publish_with_headers(self.control_subject.clone(), headers, payload.into())
            .await
            .map_err(err)?;
        ack.await.map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    use async_nats::jetstream::kv::{EntryError, EntryErrorKind};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The error a key-value read gives while no server answers for its
    /// stream, as seen from a node after a NATS server restarted.
    fn no_one_answered() -> EntryError {
        EntryError::with_source(
            EntryErrorKind::Other,
            PublishError::new(PublishErrorKind::StreamNotFound),
        )
    }

    #[test]
    fn only_a_request_nobody_took_counts_as_unanswered() {
        assert!(unanswered(&no_one_answered()));
        assert!(unanswered(&PublishError::new(PublishErrorKind::StreamNotFound)));
        // A timeout may have been applied by a server that answered late:
        // it is not asked again.
        assert!(!unanswered(&EntryError::new(EntryErrorKind::TimedOut)));
        assert!(!unanswered(&EntryError::with_source(
            EntryErrorKind::Other,
            PublishError::new(PublishErrorKind::TimedOut)
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_call_is_asked_again_and_other_errors_are_not() {
        let calls = AtomicUsize::new(0);
        let r: Result<u32, EntryError> = answered(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(no_one_answered()),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!((r.ok(), calls.load(Ordering::SeqCst)), (Some(7), 3));

        let calls = AtomicUsize::new(0);
        let r: Result<u32, EntryError> = answered(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(no_one_answered())
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), UNANSWERED_BACKOFF.len() + 1, "bounded");

        let calls = AtomicUsize::new(0);
        let r: Result<u32, EntryError> = answered(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(EntryError::new(EntryErrorKind::TimedOut))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a timeout is not asked again");
    }
}
