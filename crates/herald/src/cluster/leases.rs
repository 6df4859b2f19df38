//! Stream caps across the cluster, held as leases in a JetStream
//! key-value bucket.
//!
//! Each capped thing (a session, an account, optionally an address) has a
//! key whose value lists its holders: the node epoch and stream id of every
//! stream it has open anywhere. Admission reads the list, counts the
//! holders of live nodes, and adds itself with compare-and-set over the
//! revision it read, so two nodes admitting at once cannot both take the
//! last place: one write wins, the other reads again and counts again.
//! The decision is made before the stream's first byte, as on one node.
//!
//! **Leases.** A node proves it is alive with a heartbeat key that carries
//! a per-message TTL (JetStream removes it when it is not renewed) and
//! that it renews with compare-and-set every third of the lease; the TTL is
//! two leases. When it expires, JetStream leaves a marker that every node's
//! watch sees: from then on the dead node's holders count for nothing and
//! are pruned by the next write, so a node that dies gives its places back
//! within two leases (`cluster_lease_secs`, 10 s by default: 20 s). Only
//! that evidence makes a node dead; a stale or unknown view counts it alive
//! (a cap may refuse too much, never admit too much).
//! The other side of that promise: a node that cannot renew its heartbeat
//! for one whole lease (partitioned from NATS, or paused) may already be
//! counted as dead elsewhere, so it closes every stream it held a lease
//! for and starts a new epoch; its clients reconnect and are counted
//! afresh. A cap therefore never admits more than it allows, provided
//! renewals and markers travel faster than a lease.

use super::{is_conflict, ClusterError};
use crate::registry::CapExceeded;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Compare-and-set attempts before an admission gives up as contended.
const CAS_ATTEMPTS: usize = 32;

/// One stream holding a place: the node epoch that admitted it, its id
/// there, and when it opened (the oldest is evicted first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    n: String,
    id: u64,
    at: u64,
}

/// A place to take: the key of what is capped, the cap, and what a full
/// key does.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The KV key (already hashed, see [`Claim::new`]).
    key: String,
    /// How many streams may hold it.
    cap: usize,
    /// Which cap this is, for the refusal.
    kind: CapExceeded,
    /// A full session gives up its oldest stream instead of refusing.
    evict_oldest: bool,
}

impl Claim {
    /// A claim on `what` (any string naming the capped thing; it is
    /// hashed into a key), refused as `kind` beyond `cap`.
    pub fn new(kind: CapExceeded, what: &str, cap: usize, evict_oldest: bool) -> Claim {
        let tag = match kind {
            CapExceeded::Session => "s",
            CapExceeded::Account => "a",
            CapExceeded::Ip => "i",
            CapExceeded::Hub | CapExceeded::Audit => "x",
        };
        Claim {
            key: format!("{tag}.{}", hex::encode(&blake3::hash(what.as_bytes()).as_bytes()[..16])),
            cap,
            kind,
            evict_oldest,
        }
    }
}

/// What is told to close streams: `(stream id)` evicted by a newer stream
/// of the same session on another node, or every leased stream (`None`)
/// when this node's lease lapsed.
pub type LeaseHandler = Arc<dyn Fn(Option<u64>) + Send + Sync>;

/// The cluster-wide caps of one node.
pub struct Leases {
    kv: kv::Store,
    js: jetstream::Context,
    client: async_nats::Client,
    bucket: String,
    evict_subject: String,
    lease: Duration,
    /// This node's current epoch: holders are written under it, and it
    /// changes when a lease lapses (every older holder is then dead).
    epoch: RwLock<String>,
    /// When each node's heartbeat was last seen here.
    /// `None` once its heartbeat was removed (expired).
    seen: RwLock<HashMap<String, Option<Instant>>>,
    /// Whether the heartbeat watch has delivered every heartbeat that
    /// existed when it began (until then an unseen node may be alive).
    current: std::sync::atomic::AtomicBool,
    handler: Mutex<Option<LeaseHandler>>,
}

/// A stream's places; dropping it gives them back (in the background).
pub struct Lease {
    leases: Arc<Leases>,
    keys: Vec<String>,
    holder: Holder,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let leases = self.leases.clone();
        let keys = std::mem::take(&mut self.keys);
        let holder = self.holder.clone();
        // Without a runtime (the process is ending) the places come back
        // when this node's heartbeat expires.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // Retried for a while: a NATS hiccup must not leak a place
            // until this node dies.
            for key in keys {
                for attempt in 0..60u64 {
                    if leases.remove_holder(&key, &holder).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250 * (attempt + 1).min(8))).await;
                }
            }
        });
    }
}

impl Lease {
    /// Whether the lease was taken in this node's current epoch: one taken
    /// while the epoch lapsed counts for nothing elsewhere.
    pub fn is_current(&self) -> bool {
        self.holder.n == self.leases.epoch()
    }
}

fn new_epoch() -> String {
    format!("e{}", hex::encode(rand::random::<[u8; 8]>()))
}

fn decode(entry: &Option<kv::Entry>) -> (Vec<Holder>, u64) {
    match entry {
        Some(e) if e.operation == kv::Operation::Put => {
            (serde_json::from_slice(&e.value).unwrap_or_default(), e.revision)
        }
        Some(e) => (Vec::new(), e.revision),
        None => (Vec::new(), 0),
    }
}

impl Leases {
    /// Opens (or creates) the bucket `{prefix}_SLOTS` and starts this
    /// node's heartbeat and its watch of the others'.
    pub(super) async fn open(
        client: async_nats::Client,
        js: &jetstream::Context,
        prefix: &str,
        replicas: usize,
        lease: Duration,
    ) -> Result<Arc<Leases>, ClusterError> {
        let lease = lease.max(Duration::from_secs(2));
        let bucket = format!("{prefix}_SLOTS");
        let config = kv::Config {
            bucket: bucket.clone(),
            description: "Herald stream caps across nodes".into(),
            history: 1,
            num_replicas: replicas,
            // Per-message TTLs (the heartbeats) need limit markers; the
            // marker a TTL leaves is how other nodes learn a node is dead.
            limit_markers: Some(lease * 2),
            ..Default::default()
        };
        let kv = super::retry_forming(|| js.create_key_value(config.clone())).await?;
        let leases = Arc::new(Leases {
            kv,
            js: js.clone(),
            client: client.clone(),
            bucket,
            evict_subject: format!("{}.evict", prefix.to_lowercase()),
            lease,
            epoch: RwLock::new(new_epoch()),
            seen: RwLock::new(HashMap::new()),
            current: std::sync::atomic::AtomicBool::new(false),
            handler: Mutex::new(None),
        });
        leases.beat_first().await?;
        Leases::heartbeat(Arc::downgrade(&leases));
        Leases::watch(Arc::downgrade(&leases));
        Leases::evictions(Arc::downgrade(&leases)).await?;
        Ok(leases)
    }

    /// Sets what closes streams for this node (evictions and lapses).
    pub fn on_close(&self, handler: LeaseHandler) {
        *self.handler.lock() = Some(handler);
    }

    /// The lease: how long a dead node's places stay taken is twice this.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn epoch(&self) -> String {
        self.epoch.read().clone()
    }

    /// Writes this epoch's heartbeat with its TTL; `revision` 0 creates it.
    async fn beat(&self, epoch: &str, revision: u64) -> Result<u64, String> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", revision.to_string().as_str());
        // Twice the lease: this node gives up its streams after one lease
        // without a renewal, well before the others see the heartbeat go.
        headers.insert("Nats-TTL", format!("{}s", (self.lease * 2).as_secs()).as_str());
        let subject = format!("$KV.{}.n.{epoch}", self.bucket);
        let ack = self
            .js
            .publish_with_headers(subject, headers, bytes::Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        let ack = tokio::time::timeout(self.lease / 3, ack)
            .await
            .map_err(|_| "heartbeat not acknowledged in time".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(ack.sequence)
    }

    async fn beat_first(&self) -> Result<(), ClusterError> {
        let epoch = self.epoch();
        self.beat(&epoch, 0).await.map_err(ClusterError)?;
        self.seen.write().insert(epoch, Some(Instant::now()));
        Ok(())
    }

    /// Renews the heartbeat every third of a lease. A renewal that fails
    /// for a whole lease (or finds the heartbeat gone) means other nodes
    /// may count this one dead: every leased stream is closed and a new
    /// epoch begins.
    fn heartbeat(weak: std::sync::Weak<Leases>) {
        tokio::spawn(async move {
            let mut revision = 0u64;
            let mut renewed = Instant::now();
            loop {
                let Some(me) = weak.upgrade() else { return };
                let period = me.lease / 3;
                drop(me);
                tokio::time::sleep(period).await;
                let Some(me) = weak.upgrade() else { return };
                let epoch = me.epoch();
                let lapsed = match me.beat(&epoch, revision).await {
                    Ok(rev) => {
                        revision = rev;
                        renewed = Instant::now();
                        me.seen.write().insert(epoch.clone(), Some(renewed));
                        false
                    }
                    // The first renewal after start or a lapse does not
                    // know the revision yet: learn it and retry.
                    Err(_) if revision == 0 => match me.kv.entry(format!("n.{epoch}")).await {
                        Ok(Some(e)) if e.operation == kv::Operation::Put => {
                            revision = e.revision;
                            false
                        }
                        _ => renewed.elapsed() >= me.lease,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster lease heartbeat failed");
                        // Gone (expired while this node was paused) or not
                        // renewable for a whole lease.
                        e.contains("wrong last sequence") || renewed.elapsed() >= me.lease
                    }
                };
                if lapsed {
                    let fresh = new_epoch();
                    tracing::warn!(old = %epoch, new = %fresh, "cluster lease lapsed: closing leased streams");
                    *me.epoch.write() = fresh.clone();
                    revision = 0;
                    renewed = Instant::now();
                    let handler = me.handler.lock().clone();
                    if let Some(h) = handler {
                        h(None);
                    }
                    Leases::retire(&me, epoch);
                    if me.beat(&fresh, 0).await.is_ok() {
                        me.seen.write().insert(fresh, Some(Instant::now()));
                    }
                }
            }
        });
    }

    /// Removes a lapsed epoch's heartbeat once NATS takes the write. Its
    /// streams are closed, so its places are free: the delete tells every
    /// node so now, where the heartbeat's TTL would take up to two leases
    /// (and reconnecting clients would meet the caps until then). Given up
    /// after two leases, when the TTL has removed it anyway.
    fn retire(me: &Arc<Leases>, epoch: String) {
        let (kv, lease) = (me.kv.clone(), me.lease);
        tokio::spawn(async move {
            let until = Instant::now() + 2 * lease;
            while kv.delete(format!("n.{epoch}")).await.is_err() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// Follows every node's heartbeat.
    fn watch(weak: std::sync::Weak<Leases>) {
        tokio::spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                // From each heartbeat's latest value, so nodes that beat
                // before this watch began are known at once.
                let watch = me.kv.watch_with_history("n.>").await;
                // A fresh watch re-delivers every heartbeat; until it has,
                // unseen nodes count as alive.
                me.current.store(false, std::sync::atomic::Ordering::Release);
                drop(me);
                if let Ok(mut watch) = watch {
                    while let Some(Ok(entry)) = watch.next().await {
                        let Some(me) = weak.upgrade() else { return };
                        let Some(node) = entry.key.strip_prefix("n.") else {
                            continue;
                        };
                        if entry.operation == kv::Operation::Put {
                            me.seen.write().insert(node.to_string(), Some(Instant::now()));
                        } else {
                            me.seen.write().insert(node.to_string(), None);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// Streams of this node evicted by a session's newer stream elsewhere.
    async fn evictions(weak: std::sync::Weak<Leases>) -> Result<(), ClusterError> {
        let Some(me) = weak.upgrade() else { return Ok(()) };
        let mut sub = me
            .client
            .subscribe(format!("{}.*", me.evict_subject))
            .await
            .map_err(super::err)?;
        drop(me);
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(me) = weak.upgrade() else { return };
                let epoch = me.epoch();
                if msg.subject.as_str().rsplit('.').next() != Some(epoch.as_str()) {
                    continue;
                }
                let Some(id) = std::str::from_utf8(&msg.payload).ok().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let handler = me.handler.lock().clone();
                if let Some(h) = handler {
                    h(Some(id));
                }
            }
        });
        Ok(())
    }

    /// Whether `node`'s holders still count. Dead means known dead: its
    /// heartbeat was removed (the TTL marker was seen), or it is absent
    /// from a watch that has delivered every current heartbeat. A stale or
    /// unknown view counts as alive: a cap may then refuse too much, never
    /// admit too much.
    fn alive(&self, node: &str, me: &str) -> bool {
        if node == me {
            return true;
        }
        match self.seen.read().get(node) {
            Some(Some(_)) => true,
            Some(None) => false,
            None => !self.current.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Takes a place under every claim for stream `id`, or none: a refused
    /// claim gives back those already taken.
    pub async fn acquire(self: &Arc<Self>, claims: &[Claim], id: u64, now_ms: u64) -> Result<Lease, LeaseRefused> {
        let holder = Holder {
            n: self.epoch(),
            id,
            at: now_ms,
        };
        let mut lease = Lease {
            leases: self.clone(),
            keys: Vec::with_capacity(claims.len()),
            holder: holder.clone(),
        };
        // Streams a full session gave up for this one: they no longer
        // count against the account either.
        let mut evicted: Vec<Holder> = Vec::new();
        for claim in claims {
            let mut taken = false;
            for _ in 0..CAS_ATTEMPTS {
                let entry = super::answered(|| self.kv.entry(claim.key.clone()))
                    .await
                    .map_err(|e| LeaseRefused::Unavailable(e.to_string()))?;
                let (mut holders, revision) = decode(&entry);
                holders.retain(|h| self.alive(&h.n, &holder.n) && !evicted.contains(h));
                let mut out = Vec::new();
                if holders.len() >= claim.cap {
                    if !claim.evict_oldest || claim.cap == 0 {
                        return Err(LeaseRefused::Cap(claim.kind));
                    }
                    holders.sort_by_key(|h| (h.at, h.id));
                    out = holders.drain(..holders.len() + 1 - claim.cap).collect();
                }
                holders.push(holder.clone());
                let value = serde_json::to_vec(&holders).map_err(|e| LeaseRefused::Unavailable(e.to_string()))?;
                match super::answered(|| self.kv.update(&claim.key, value.clone().into(), revision)).await {
                    Ok(_) => {
                        taken = true;
                        evicted.extend(out);
                        break;
                    }
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(LeaseRefused::Unavailable(e.to_string())),
                }
            }
            if !taken {
                return Err(LeaseRefused::Unavailable(
                    "cluster caps are too contended; retry".into(),
                ));
            }
            lease.keys.push(claim.key.clone());
        }
        for h in evicted {
            self.evict(h).await;
        }
        Ok(lease)
    }

    /// Tells the node holding `h` to close it (itself, if it is this one).
    async fn evict(&self, h: Holder) {
        if h.n == self.epoch() {
            let handler = self.handler.lock().clone();
            if let Some(handler) = handler {
                handler(Some(h.id));
            }
            return;
        }
        let _ = self
            .client
            .publish(format!("{}.{}", self.evict_subject, h.n), h.id.to_string().into())
            .await;
    }

    async fn remove_holder(&self, key: &str, holder: &Holder) -> Result<(), String> {
        for _ in 0..CAS_ATTEMPTS {
            let entry = self.kv.entry(key.to_string()).await.map_err(|e| e.to_string())?;
            let (mut holders, revision) = decode(&entry);
            let before = holders.len();
            let me = self.epoch();
            holders.retain(|h| h != holder && self.alive(&h.n, &me));
            if holders.len() == before {
                return Ok(());
            }
            let value = serde_json::to_vec(&holders).map_err(|e| e.to_string())?;
            match self.kv.update(key, value.into(), revision).await {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("contended".into())
    }
}

/// Why a cluster-wide place was not taken.
#[derive(Debug, Clone)]
pub enum LeaseRefused {
    /// The cap is full across the cluster.
    Cap(CapExceeded),
    /// NATS cannot be reached: refused rather than guessed.
    Unavailable(String),
}
