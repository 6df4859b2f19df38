//! Building a hub: configuration checked, secrets resolved, the store or
//! history chosen, every part wired to the others, background tasks started.

use super::{now_ms, BuildError, Hub, HubBuilder, HubInner, AUDIT_HELD, AUDIT_KEPT, STORE_FILE};
use crate::audit::AuditLog;
use crate::auth::{api_key::ApiKeys, jwt::JwtVerifier, sse_token::SseTokens, Authenticator};
use crate::config::{FsyncMode, SessionCapPolicy, StoreKind};
use crate::deny_list::DenyList;
use crate::history::{History, MemoryHistory};
use crate::ratelimit::FailureLimiter;
use crate::registry::{Caps, Registry};
use crate::secrets::{self, Secrets};
use crate::store::{FsyncPolicy, Store, StoreConfig};
use herald_core::Limits;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
        // One key set per identity provider URL, shared by the native and
        // the Mercure settings naming it.
        let jwks = crate::auth::jwks::JwksPool::from_config(&config);
        let jwt = JwtVerifier::from_config_in(&config, secrets.jwt_secret.as_deref(), &jwks)
            .map_err(|e| BuildError::Config(e.to_string()))?;
        let mercure = if config.mercure.enabled {
            Some(
                crate::auth::mercure::MercureAuth::from_config_in(&config, secrets.jwt_secret.as_deref(), &jwks)
                    .map_err(|e| BuildError::Config(e.to_string()))?,
            )
        } else {
            None
        };
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
                jwks,
                verified: crate::auth::verified::VerifiedTokens::new(crate::auth::VERIFIED_KEPT),
            },
            registry: Arc::new(Registry::new(caps)),
            history,
            // With a store, memory holds the newest records and the store
            // every one kept: a record per stream opened would otherwise
            // stay in memory long after its stream.
            audit: match &store {
                Some(store) => AuditLog::with_archive(AUDIT_KEPT, AUDIT_HELD, store.clone()),
                None => AuditLog::new(AUDIT_KEPT),
            },
            deny: DenyList::default(),
            store: store.clone(),
            cluster: self.cluster.clone(),
            mercure,
            invalidation: crate::invalidation::Invalidation::new(l.invalidation_held_audiences),
            auth_failures: FailureLimiter::new(l.auth_failures_per_minute),
            limits: Limits {
                max_event_bytes: l.max_event_bytes,
                max_topics: 100,
            },
            stats: Arc::new(crate::stats::HubStats::new()),
            in_flight: tokio::sync::RwLock::new(()),
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            generated_secret_file: secrets.generated_secret_file,
            stream_listeners: Default::default(),
            config,
        });
        if let Some(store) = &store {
            // Restore what the previous run left: audit log, deny rules,
            // outstanding SSE tokens. Then persist from here on.
            inner
                .audit
                .restore(store.load_audit(AUDIT_HELD).map_err(|e| BuildError::Store(e.0))?);
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
            // SSE tokens work on every node, once.
            inner.auth.sse_tokens.attach_ledger(cluster.tokens());
            if let Some(leases) = cluster.leases() {
                let target = Arc::downgrade(&inner);
                leases.on_close(Arc::new(move |id| {
                    if let Some(hub) = target.upgrade() {
                        hub.close_leased(id);
                    }
                }));
            }
        }
        // This node's refusals, overflows and revocations, as the audit log
        // records them (another node's records are its own numbers).
        let stats = inner.stats.clone();
        inner.audit.add_listener(Box::new(move |r, local| {
            if local {
                stats.observe(r);
            }
        }));
        let sink = super::dispatcher::spawn(inner.registry.clone(), inner.stats.clone())
            .map_err(|e| BuildError::Thread(e.to_string()))?;
        inner.history.set_sink(sink);
        tokio::spawn(super::lifecycle::heartbeat(Arc::downgrade(&inner)));
        // The hub starts whether or not the identity providers answer: until
        // a key set arrives its tokens are refused (and audited), while API
        // keys, SSE tokens and configured keys work.
        inner.auth.jwks.start(&inner.shutdown);
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
