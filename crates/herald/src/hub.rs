//! The hub: authentication, publishing, streams and their lifecycle, wired
//! together. [`Hub`] is the library's entry point; the `herald` binary is a
//! thin shell around it.

use crate::audit::{AuditEntry, AuditLog};
use crate::auth::{api_key::ApiKeys, jwt::JwtVerifier, sse_token::SseTokens, AuthError, Authenticator, Source};
use crate::config::{Config, FsyncMode, SessionCapPolicy, StoreKind};
use crate::history::{History, HistoryError, MemoryHistory};
use crate::http::error::ApiError;
use crate::queue::CloseReason;
use crate::ratelimit::FailureLimiter;
use crate::registry::{Caps, Lookup, Registry};
use crate::revocations::DenyList;
use crate::secrets::{self, Secrets};
use crate::store::{FsyncPolicy, Store, StoreConfig};
use herald_core::{DenyRule, Event, EventDraft, Limits, Principal, Revocation};
use serde_json::json;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The embedded store's file name inside the data dir.
pub const STORE_FILE: &str = "herald.redb";

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Audit records kept (in memory and in the store).
const AUDIT_KEPT: usize = 100_000;

/// A Server-Sent Events hub. Cheap to clone; all clones are the same hub.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

/// The hub's shared state.
pub struct HubInner {
    /// Effective configuration.
    pub config: Config,
    /// Credential verification.
    pub auth: Authenticator,
    /// Live streams.
    pub registry: Arc<Registry>,
    /// Stored events.
    pub history: Arc<dyn History>,
    /// Security events.
    pub audit: AuditLog,
    /// Sticky revocations.
    pub deny: DenyList,
    /// The cluster this node belongs to, when clustered.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Mercure token verification (`None` when Mercure has no key).
    pub mercure: Option<crate::mercure::auth::MercureAuth>,
    /// The embedded store, when history is durable.
    pub store: Option<Arc<Store>>,
    /// Tag invalidation controls.
    pub invalidation: crate::invalidation::Invalidation,
    /// Failed authentications per client IP.
    pub auth_failures: FailureLimiter,
    /// Event limits.
    pub limits: Limits,
    /// Held shared by every publish in flight; shutdown takes it exclusively
    /// to wait for them before closing streams.
    in_flight: tokio::sync::RwLock<()>,
    draining: AtomicBool,
    /// Cancelled when the hub shuts down.
    pub shutdown: CancellationToken,
    /// Where the generated secret was written, if it was.
    pub generated_secret_file: Option<std::path::PathBuf>,
}

/// Why the hub could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting is wrong (exit code 2).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store cannot be used (exit code 1).
    #[error("{0}")]
    Store(String),
}

/// Builds a [`Hub`].
pub struct HubBuilder {
    config: Config,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    history: Option<Arc<dyn History>>,
    secrets: Option<Secrets>,
}

impl HubBuilder {
    /// Uses a custom history (durable store, cluster).
    pub fn history(mut self, history: Arc<dyn History>) -> Self {
        self.history = Some(history);
        self
    }

    /// Runs as a node of `cluster`: its event stream is the history, and
    /// revocations are shared with every node.
    pub fn cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        self.history = Some(cluster.clone());
        self.cluster = Some(cluster);
        self
    }

    /// Uses already-resolved secrets instead of reading/generating them.
    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Builds the hub and starts its background tasks (call inside a Tokio
    /// runtime).
    pub fn build(self) -> Result<Hub, BuildError> {
        let config = self.config;
        config.check().map_err(|e| BuildError::Config(e.0))?;
        let secrets = match self.secrets {
            Some(s) => s,
            None => secrets::resolve(&config).map_err(|e| BuildError::Config(e.0))?,
        };
        let jwt = JwtVerifier::from_config(&config, secrets.jwt_secret.as_deref())
            .map_err(|e| BuildError::Config(e.to_string()))?;
        let l = &config.limits;
        let hub_total = if l.hub_total > 0 {
            l.hub_total
        } else {
            default_hub_total()
        };
        let caps = Caps {
            per_session: l.per_session,
            evict_oldest_in_session: l.session_policy == SessionCapPolicy::Evict,
            per_account: l.per_account,
            per_ip: l.per_ip,
            hub_total,
            audit_per_session: 10,
        };
        let store = match (&self.history, config.store) {
            (None, StoreKind::Embedded) => {
                let fsync = match config.fsync {
                    FsyncMode::Always => FsyncPolicy::Always,
                    FsyncMode::Interval => {
                        FsyncPolicy::Interval(Duration::from_millis(config.fsync_interval_ms.max(1)))
                    }
                    FsyncMode::Never => FsyncPolicy::Never,
                };
                Some(
                    Store::open(StoreConfig {
                        path: config.data_dir.join(STORE_FILE),
                        fsync,
                        max_events: config.history_size as u64,
                        max_age_ms: config.retention_max_age_secs.saturating_mul(1000),
                        max_bytes: config.retention_max_bytes,
                        max_audit: AUDIT_KEPT as u64,
                        cache_bytes: config.store_cache_bytes,
                        retained_per_tenant: config.limits.retained_per_tenant,
                    })
                    .map_err(|e| BuildError::Store(e.0))?,
                )
            }
            _ => None,
        };
        let history: Arc<dyn History> = match (self.history, &store) {
            (Some(h), _) => h,
            (None, Some(s)) => s.clone(),
            (None, None) => Arc::new(MemoryHistory::with_retained_per_tenant(
                config.history_size,
                config.limits.retained_per_tenant,
            )),
        };
        let inner = Arc::new(HubInner {
            auth: Authenticator {
                jwt,
                api_keys: ApiKeys::new(&config.api_keys),
                sse_tokens: SseTokens::new(l.sse_tokens_outstanding),
                session_key: secrets.session_key,
            },
            registry: Arc::new(Registry::new(caps)),
            history,
            audit: AuditLog::new(AUDIT_KEPT),
            deny: DenyList::default(),
            store: store.clone(),
            cluster: self.cluster.clone(),
            mercure: if config.mercure.enabled {
                Some(
                    crate::mercure::auth::MercureAuth::from_config(&config, secrets.jwt_secret.as_deref())
                        .map_err(|e| BuildError::Config(e.to_string()))?,
                )
            } else {
                None
            },
            invalidation: crate::invalidation::Invalidation::new(l.invalidation_held_audiences),
            auth_failures: FailureLimiter::new(l.auth_failures_per_minute),
            limits: Limits {
                max_event_bytes: l.max_event_bytes,
                max_topics: 100,
            },
            in_flight: tokio::sync::RwLock::new(()),
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            generated_secret_file: secrets.generated_secret_file,
            config,
        });
        if let Some(store) = &store {
            // Restore what the previous run left: audit log, deny rules,
            // outstanding SSE tokens. Then persist from here on.
            inner
                .audit
                .restore(store.load_audit(AUDIT_KEPT).map_err(|e| BuildError::Store(e.0))?);
            let now = now_ms();
            for rule in store.load_deny().map_err(|e| BuildError::Store(e.0))? {
                if rule.expires_at_ms > now {
                    inner.deny.add(rule);
                }
            }
            inner
                .auth
                .sse_tokens
                .attach_store(store.clone())
                .map_err(|e| BuildError::Store(e.0))?;
            let persist = store.clone();
            inner.audit.add_listener(Box::new(move |r, _| persist.persist_audit(r)));
        }
        crate::audit_stream::attach(&inner);
        if let Some(cluster) = &inner.cluster {
            // Every node's audit records are visible on every node.
            let c = cluster.clone();
            inner.audit.add_listener(Box::new(move |r, local| {
                if local {
                    c.publish_audit(r);
                }
            }));
        }
        let registry = inner.registry.clone();
        inner.history.set_sink(Arc::new(move |events: &[Arc<Event>]| {
            let mut delivered = 0;
            for e in events {
                delivered += registry.dispatch(e);
            }
            metrics::counter!("herald_deliveries_total").increment(delivered as u64);
        }));
        tokio::spawn(heartbeat(Arc::downgrade(&inner)));
        Ok(Hub { inner })
    }
}

/// Default hub-wide stream cap: below the process's open-file limit, keeping
/// headroom for the listener, log files, the store and outgoing connections.
fn default_hub_total() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024);
    soft.saturating_sub(soft / 20 + 64).max(1)
}

impl Hub {
    /// Starts building a hub from a configuration.
    pub fn builder(config: Config) -> HubBuilder {
        HubBuilder {
            config,
            cluster: None,
            history: None,
            secrets: None,
        }
    }

    /// The axum router serving the whole HTTP surface. Nest it into an app
    /// with `Router::nest_service` / `merge`.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.clone())
    }

    /// Shared state (for the HTTP layer and advanced embedding).
    pub fn inner(&self) -> &Arc<HubInner> {
        &self.inner
    }

    /// Publishes events on behalf of `publisher` (validated and authorized
    /// like an HTTP publish). Answers once the events are in history.
    pub async fn publish(
        &self,
        publisher: &Principal,
        events: Vec<serde_json::Value>,
    ) -> Result<Vec<Arc<Event>>, ApiError> {
        self.inner.publish_json(publisher, events).await
    }

    /// Applies a revocation: closes matching streams, keeps a deny rule.
    /// Returns how many streams were closed.
    pub async fn revoke(&self, revocation: Revocation) -> usize {
        self.inner.revoke(revocation, None, None).await
    }

    /// Stops accepting publishes, waits for in-flight ones, and closes every
    /// stream with `event: shutdown`.
    pub async fn shutdown(&self) {
        self.inner.begin_shutdown().await
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
}

impl HubInner {
    /// The Mercure verifier, or `404` when Mercure is disabled.
    pub fn mercure_auth(&self) -> Result<&crate::mercure::auth::MercureAuth, ApiError> {
        self.mercure
            .as_ref()
            .ok_or_else(|| ApiError::not_found("the Mercure endpoint is not enabled"))
    }

    /// Whether the hub is draining for shutdown.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Verifies a credential and applies the sticky deny rules and the
    /// failed-authentication limit. Every refusal is audited.
    pub fn authenticate(&self, source: Option<Source<'_>>, ip: IpAddr, consume: bool) -> Result<Principal, ApiError> {
        let Some(source) = source else {
            self.check_rate(ip)?;
            return Err(ApiError::missing_credential());
        };
        self.verify(ip, |now| self.auth.authenticate(source, now, consume))
    }

    /// Authenticates a request that is not a stream open: SSE tokens are
    /// refused here, since they exist only to open streams.
    pub fn authenticate_api(&self, source: Option<Source<'_>>, ip: IpAddr) -> Result<Principal, ApiError> {
        let p = self.authenticate(source, ip, false)?;
        if matches!(p.kind, herald_core::CredentialKind::SseToken { .. }) {
            return Err(ApiError::from(AuthError::new(
                "invalid_token",
                "SSE tokens only open streams; use a JWT or an API key here",
            )));
        }
        Ok(p)
    }

    /// Refuses an address that failed authentication too often.
    pub fn check_rate(&self, ip: IpAddr) -> Result<(), ApiError> {
        match self.auth_failures.blocked(ip, now_ms()) {
            Some(retry) => Err(ApiError::too_many(
                "auth_rate_limited",
                "too many failed authentications from this address",
                retry,
            )),
            None => Ok(()),
        }
    }

    /// Runs a credential check with everything every protocol shares: the
    /// failed-authentication limit, the sticky deny rules, metrics and the
    /// audit trail.
    pub fn verify(
        &self,
        ip: IpAddr,
        check: impl FnOnce(u64) -> Result<Principal, AuthError>,
    ) -> Result<Principal, ApiError> {
        self.check_rate(ip)?;
        let now = now_ms();
        let result = check(now).and_then(|p| match self.deny.denies(&p, now) {
            Some(reason) => Err(AuthError::new(
                "credential_revoked",
                format!("this credential was revoked ({reason})"),
            )),
            None => Ok(p),
        });
        result.map_err(|e| {
            self.auth_failures.record(ip, now);
            metrics::counter!("herald_auth_failures_total", "code" => e.code).increment(1);
            self.audit.record(
                AuditEntry {
                    kind: "auth_failed",
                    ip: Some(ip),
                    detail: json!({"code": e.code, "reason": e.description}),
                    ..AuditEntry::default()
                },
                now,
            );
            ApiError::from(e)
        })
    }

    /// Validates, authorizes, sequences, stores and dispatches events.
    pub async fn publish_json(
        &self,
        publisher: &Principal,
        inputs: Vec<serde_json::Value>,
    ) -> Result<Vec<Arc<Event>>, ApiError> {
        let batch = inputs.len() > 1;
        let mut drafts = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let mut d = EventDraft::from_json(input, &self.auth.session_key, &self.limits)
                .and_then(|mut d| d.authorize(publisher).map(|_| d))
                .map_err(|mut e| {
                    if batch {
                        e.message = format!("events[{i}]: {}", e.message);
                    }
                    ApiError::from(e)
                })?;
            d.topics.shrink_to_fit();
            drafts.push(d);
        }
        self.publish_drafts(drafts).await
    }

    /// Sequences, stores and dispatches already-validated drafts.
    pub async fn publish_drafts(&self, drafts: Vec<EventDraft>) -> Result<Vec<Arc<Event>>, ApiError> {
        let _in_flight = self.in_flight.read().await;
        if self.is_draining() {
            return Err(ApiError::draining());
        }
        let events = self.history.append(drafts, now_ms()).await.map_err(|e| match e {
            HistoryError::DuplicateId(id) => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "duplicate_id",
                format!("an event with id `{id}` was already published"),
            ),
            HistoryError::Unavailable(why) => {
                let mut e = ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", why);
                e.retry_after = Some(1);
                e
            }
        })?;
        metrics::counter!("herald_events_published_total").increment(events.len() as u64);
        Ok(events)
    }

    /// Applies a revocation; `by` is the admin or key that posted it, and
    /// `within_tenant` limits it to one tenant's principals.
    pub async fn revoke(&self, revocation: Revocation, within_tenant: Option<String>, by: Option<&Principal>) -> usize {
        let now = now_ms();
        let rule = DenyRule {
            seen: Vec::new(),
            revocation,
            within_tenant,
            at_ms: now,
            expires_at_ms: now + (self.config.max_token_lifetime_secs + self.config.jwt_leeway_secs) * 1000,
        };
        let (closed, stored) = self.apply_rule(rule, by);
        // Streams are closed first (the in-memory rule already refuses
        // reconnects); the answer waits until the rule and its audit record
        // are durable (the writer commits jobs in order) and, in a cluster,
        // shared with every node.
        if let Some(store) = &self.store {
            store.persist_deny(&stored).await;
        }
        if let Some(cluster) = &self.cluster {
            if let Err(e) = cluster.broadcast_rule(&stored).await {
                tracing::error!(error = %e, "revocation not shared with the cluster");
            }
        }
        closed
    }

    /// Applies a deny rule on this node: closes the matching live streams,
    /// drops SSE tokens it covers, keeps the rule, audits. Returns how many
    /// streams closed and the rule as kept (with the credentials it saw).
    pub fn apply_rule(&self, mut rule: DenyRule, by: Option<&Principal>) -> (usize, DenyRule) {
        let now = now_ms();
        // Start from the index the revocation names, so the cost is
        // proportional to the streams it touches, not to all streams.
        let lookup = match &rule.revocation {
            Revocation::RoleGrantRevoke { account, .. } | Revocation::AccountRevoke { account, .. } => {
                Lookup::Account(account)
            }
            Revocation::SessionRevoke { session, .. } => Lookup::Session(*session),
            Revocation::TokenRevoke { jti } => Lookup::Jti(jti),
            Revocation::TenantRevoke { tenant } => Lookup::Tenant(tenant),
        };
        let matching = self.registry.find(lookup, |s| rule.applies_to(&s.principal));
        rule.seen.extend(matching.iter().map(|s| s.principal.fingerprint));
        let reason = rule.revocation.reason();
        // The rule goes in before the streams close, so a client that
        // reconnects the instant its stream ends is already refused.
        self.auth.sse_tokens.revoke_where(|p| rule.denies(p));
        let detail = describe(&rule.revocation);
        let rule_tenant = rule.within_tenant.clone();
        self.deny.add(rule.clone());
        let mut closed = 0;
        for s in matching {
            if self.registry.close(s.id, CloseReason::Revoked(reason)).is_some() {
                closed += 1;
            }
        }
        metrics::counter!("herald_revocations_total").increment(1);
        let mut entry = by.map_or_else(AuditEntry::default, |p| AuditEntry::about("revocation_applied", p));
        entry.kind = "revocation_applied";
        entry.detail = json!({"closed": closed, "revocation": detail, "within_tenant": rule_tenant});
        self.audit.record(entry, now);
        (closed, rule)
    }

    async fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
        // Wait for publishes already sequencing to finish and dispatch.
        drop(self.in_flight.write().await);
        for s in self.registry.find(Lookup::All, |_| true) {
            self.registry.close(s.id, CloseReason::Shutdown);
        }
        if let Some(store) = &self.store {
            store.close().await;
        }
        self.shutdown.cancel();
    }
}

/// A revocation as audit JSON (session ids only as a hash prefix).
fn describe(r: &Revocation) -> serde_json::Value {
    match r {
        Revocation::RoleGrantRevoke { account, role } => {
            json!({"type": r.reason(), "account": account, "role": role})
        }
        Revocation::SessionRevoke { account, session } => {
            json!({"type": r.reason(), "account": account, "session": session.prefix()})
        }
        Revocation::AccountRevoke { account, .. } => {
            json!({"type": r.reason(), "account": account})
        }
        Revocation::TokenRevoke { jti } => json!({"type": r.reason(), "jti": jti}),
        Revocation::TenantRevoke { tenant } => json!({"type": r.reason(), "tenant": tenant}),
    }
}

/// The heartbeat's period.
const TICK_MS: u64 = 250;

/// The one shared timer: keepalives, expiry, zombie detection and
/// housekeeping, instead of a timer per stream.
async fn heartbeat(hub: std::sync::Weak<HubInner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    let mut last_housekeeping = now_ms();
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        if hub.shutdown.is_cancelled() {
            return;
        }
        let now = now_ms();
        let keepalive_secs = hub
            .config
            .mercure
            .heartbeat
            .unwrap_or(hub.config.limits.keepalive_secs)
            .max(1);
        // Each stream's keepalive falls on its own tick of the interval
        // (by id), so a hub with 15,000 idle streams writes 250 keepalives
        // every tick instead of 15,000 at once every 15 s, a burst that
        // would delay every event published during it.
        let slots = (keepalive_secs * 1000 / TICK_MS).max(1);
        let phase = ticks % slots;
        ticks += 1;
        let stall_deadline = now.saturating_sub(hub.config.limits.write_stall_secs * 1000);
        let keepalive = herald_core::frame::encode_comment("keepalive");
        for s in hub.registry.find(Lookup::All, |_| true) {
            if s.principal.is_expired(now) {
                hub.registry.close(s.id, CloseReason::Expired);
            } else if s.queue.stalled_since(stall_deadline) {
                hub.registry.close(s.id, CloseReason::Zombie);
                // The writer is stuck in the socket and will not see the
                // close: cut the connection itself.
                if let Some(c) = &s.connection {
                    c.kill();
                }
            } else if s.id % slots == phase && s.queue.take_idle() {
                s.queue.push(0, keepalive.clone());
            }
        }
        if now.saturating_sub(last_housekeeping) >= keepalive_secs * 1000 {
            last_housekeeping = now;
            hub.auth.sse_tokens.purge(now);
            hub.deny.purge(now);
            hub.auth_failures.purge(now);
            metrics::gauge!("herald_deny_rules").set(hub.deny.len() as f64);
        }
    }
}

impl HubInner {
    /// Records an audit event about a stream.
    pub fn audit_stream(&self, kind: &'static str, s: &crate::registry::Subscriber, detail: serde_json::Value) {
        let mut e = AuditEntry::about(kind, &s.principal);
        e.ip = Some(s.ip);
        e.stream = Some(s.id);
        e.detail = detail;
        self.audit.record(e, now_ms());
    }
}
