//! Stream admission: the one way a stream comes to exist, whatever the
//! protocol that asked for it.
//!
//! A protocol adapter authenticates the request (through [`super::verify`]),
//! checks the selectors against the credential and decides where the
//! replay starts; then it hands a [`StreamRequest`] here. Admission checks
//! the caps and takes the slot in one step ([`crate::registry::Registry::admit`]),
//! spends a single-use SSE token only once the slot is won (a `429` never
//! burns one), audits the opening, tells the lifecycle listeners, and
//! returns the SSE body. From then on the stream ends in one place only:
//! its body's guard, which releases the slot exactly once and tells the
//! listeners it closed ([`crate::stream`]).
//!
//! Lifecycle listeners let an adapter follow streams without the hub
//! knowing it: the Mercure adapter announces subscription events from them.

use super::{now_ms, HubInner};
use crate::auth::sse_token::SpendError;
use crate::auth::AuthError;
use crate::cluster::leases::{Claim, Lease, LeaseRefused};
use crate::kill::KillSwitch;
use crate::queue::{CloseReason, DirectWire, SubscriberQueue};
use crate::registry::{CapExceeded, Lookup, StreamKind, Subscriber};
use crate::stream::{self, Start};
use herald_core::{Principal, SelectorSet};
use serde_json::json;
use std::sync::Arc;

/// Everything needed to open a stream, whatever the protocol.
pub struct StreamRequest {
    /// Who is subscribing (already authenticated and checked against the
    /// deny rules).
    pub principal: Principal,
    /// What it asked for (already checked against the credential).
    pub selectors: SelectorSet,
    /// Client address.
    pub ip: std::net::IpAddr,
    /// Events or audit.
    pub kind: StreamKind,
    /// The adapter opening it, for operators ([`Subscriber::protocol`]).
    pub protocol: &'static str,
    /// Where the replay starts.
    pub start: Start,
    /// The connection's kill switch, when served by Herald's own server.
    pub connection: Option<KillSwitch>,
    /// The connection, when the dispatcher may write the stream's events
    /// to it directly ([`crate::queue`]); event streams only.
    pub direct: Option<DirectWire>,
    /// A single-use SSE token to spend once the stream is admitted.
    pub spend_token: Option<String>,
    /// What the adapter keeps about the stream
    /// ([`Subscriber::extension`]).
    pub extension: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// Why a stream was not opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdmitError {
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Draining,
    /// A cap is full.
    #[error("stream cap reached: {}", .0.code())]
    Cap(CapExceeded),
    /// The single-use SSE token was spent (or expired) in the meantime.
    #[error("{0}")]
    Token(AuthError),
    /// The cluster cannot be reached to check a cluster-wide cap or spend
    /// a token, so the stream is refused (deny when unsure).
    #[error("the cluster cannot be reached: {0}")]
    Unavailable(String),
}

/// A point in a stream's life that listeners hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamLife {
    /// Admitted, before its first byte.
    Opened,
    /// Ended, its slot released.
    Closed,
}

/// Told when any stream opens or closes. Called synchronously on the path
/// that opens or ends the stream: it must not wait.
pub type StreamListener = Arc<dyn Fn(&Arc<HubInner>, &Subscriber, StreamLife) + Send + Sync>;

impl HubInner {
    /// Adds a lifecycle listener under `name`; a second listener with the
    /// same name replaces the first (an adapter's router may be built more
    /// than once).
    pub fn on_stream(&self, name: &'static str, listener: StreamListener) {
        let mut listeners = self.stream_listeners.write();
        listeners.retain(|(n, _)| *n != name);
        listeners.push((name, listener));
    }

    /// Tells every lifecycle listener about `s`.
    pub(crate) fn stream_life(self: &Arc<Self>, s: &Subscriber, life: StreamLife) {
        let listeners: Vec<StreamListener> = self.stream_listeners.read().iter().map(|(_, l)| l.clone()).collect();
        for l in listeners {
            l(self, s, life);
        }
    }

    /// Audits and counts a refusal by a cap.
    fn refuse_cap(&self, principal: &Principal, ip: std::net::IpAddr, cap: CapExceeded, now: u64) -> AdmitError {
        // The record names the account refused (tenant and sub), so an
        // operator can tell who is hitting a cap.
        let mut e = crate::audit::AuditEntry::about("cap_rejected", principal);
        e.ip = Some(ip);
        e.detail = json!({"cap": cap.code()});
        self.audit.record(e, now);
        metrics::counter!("herald_cap_rejections_total", "cap" => cap.code()).increment(1);
        AdmitError::Cap(cap)
    }

    /// Takes the stream's places in the cluster-wide caps (session,
    /// account and, with `cluster_ip_caps`, address), when this node is
    /// part of a cluster that counts them. Audit streams keep their
    /// per-node cap.
    async fn cluster_lease(&self, s: &Subscriber, now: u64) -> Result<Option<Lease>, LeaseRefused> {
        let Some(leases) = self.cluster.as_ref().and_then(|c| c.leases()) else {
            return Ok(None);
        };
        if s.kind != StreamKind::Events {
            return Ok(None);
        }
        let caps = &self.config.limits;
        let account = s.principal.account().key();
        let mut claims = Vec::with_capacity(3);
        if let Some(session) = s.principal.session {
            claims.push(Claim::new(
                CapExceeded::Session,
                &format!("{}|{}", account, session.to_hex()),
                caps.per_session,
                caps.session_policy == crate::config::SessionCapPolicy::Evict,
            ));
        }
        claims.push(Claim::new(CapExceeded::Account, &account, caps.per_account, false));
        if self.config.cluster_ip_caps {
            claims.push(Claim::new(CapExceeded::Ip, &s.ip.to_string(), caps.per_ip, false));
        }
        leases.acquire(&claims, s.id, now).await.map(Some)
    }

    /// Closes streams for the cluster's caps: one evicted by a newer
    /// stream of its session on another node, or (`None`) every events
    /// stream when this node's lease lapsed.
    pub(crate) fn close_leased(&self, id: Option<u64>) {
        match id {
            Some(id) => {
                self.registry.close(id, CloseReason::Evicted);
            }
            None => {
                for s in self.registry.find(Lookup::All, |s| s.kind == StreamKind::Events) {
                    self.registry.close(s.id, CloseReason::LeaseLost);
                }
            }
        }
    }

    /// Admits a stream against the caps and returns its SSE body.
    pub async fn admit_stream(self: &Arc<Self>, r: StreamRequest) -> Result<axum::body::Body, AdmitError> {
        if self.is_draining() {
            return Err(AdmitError::Draining);
        }
        let now = now_ms();
        let principal = Arc::new(r.principal);
        let queue = SubscriberQueue::new(self.config.limits.queue_events, self.config.limits.queue_bytes, now);
        // The audit stream is written by its task alone.
        let direct = r.direct.filter(|_| r.kind == StreamKind::Events);
        let subscriber = Subscriber {
            id: self.registry.next_id(),
            principal: principal.clone(),
            selectors: r.selectors,
            ip: r.ip,
            opened_at_ms: now,
            queue,
            kind: r.kind,
            protocol: r.protocol,
            connection: r.connection,
            extension: r.extension,
        };
        // On a cluster node, the caps that count across nodes are taken
        // first; a local refusal then gives them back (the lease drops).
        let lease = match self.cluster_lease(&subscriber, now).await {
            Ok(lease) => lease,
            Err(LeaseRefused::Cap(cap)) => return Err(self.refuse_cap(&principal, r.ip, cap, now)),
            Err(LeaseRefused::Unavailable(why)) => return Err(AdmitError::Unavailable(why)),
        };
        let mut admitted = match self.registry.admit(subscriber) {
            Ok(a) => a,
            Err(cap) => return Err(self.refuse_cap(&principal, r.ip, cap, now)),
        };
        // Every event committed after this is dispatched to the stream;
        // those at or below it were committed before it existed.
        let live_after = self.registry.committed();
        if let Some(lease) = lease {
            // The lease's epoch lapsed while the places were taken: the
            // other nodes count them free, so the stream may not open.
            if !lease.is_current() {
                return Err(AdmitError::Unavailable(
                    "this node's cluster lease lapsed; retry".into(),
                ));
            }
            admitted.slot.hold(Box::new(lease));
        }
        // A revocation that arrived while the stream was being admitted
        // (its resume point resolved, its cluster places taken) found no
        // stream to close: judge the credential again, now registered.
        if self.deny.denies(&principal, now_ms()).is_some() {
            return Err(AdmitError::Token(AuthError::new(
                "credential_revoked",
                "this credential was revoked",
            )));
        }
        // Spend a single-use SSE token now that the stream is admitted. If it
        // was spent concurrently by another request, this stream loses.
        if let Some(raw) = &r.spend_token {
            if let Err(e) = self.auth.sse_tokens.spend(raw, now).await {
                drop(admitted);
                return Err(match e {
                    SpendError::Refused(e) => AdmitError::Token(e),
                    SpendError::Unavailable(e) => AdmitError::Unavailable(e),
                });
            }
            // The spend is durable before the stream is answered, so a crash
            // cannot make a single-use token usable twice.
            if let Some(store) = &self.store {
                store.flush().await;
            }
        }
        let sub = admitted.subscriber.clone();
        self.audit_stream(
            "stream_opened",
            &sub,
            json!({"selectors": sub.selectors.as_strings(), "kind": sub.kind.as_str(), "protocol": sub.protocol}),
        );
        self.stream_life(&sub, StreamLife::Opened);
        Ok(stream::body(
            self.clone(),
            sub,
            admitted.slot,
            r.start,
            live_after,
            direct,
        ))
    }
}
