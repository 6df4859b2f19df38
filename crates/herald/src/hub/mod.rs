//! The hub: the protocol-independent heart of Herald. [`Hub`] is the
//! library's entry point; the `herald` binary is a thin shell around it.
//!
//! One concern per file: [`builder`] wires the parts together and starts
//! the background tasks, [`verify`] turns a presented credential into a
//! principal (rate limit, deny rules, audit), [`admission`] opens streams
//! (caps, slot, lifecycle listeners), [`publish`] validates and
//! sequences events, [`dispatcher`] fans committed events out to the
//! streams off the publish path, [`revoke`] closes streams and keeps deny
//! rules, and [`lifecycle`] runs the shared heartbeat and the graceful
//! shutdown.

mod admission;
mod builder;
mod dispatcher;
mod lifecycle;
mod publish;
mod revoke;
pub use revoke::NotShared;
mod verify;

pub use admission::{AdmitError, StreamLife, StreamListener, StreamRequest};
pub use publish::PublishError;
pub use verify::VerifyError;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::deny_list::DenyList;
use crate::history::History;
use crate::ratelimit::FailureLimiter;
use crate::registry::Registry;
use crate::secrets::Secrets;
use crate::store::Store;
use herald_core::{Event, Limits, Principal, Revocation};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The embedded store's file name inside the data dir.
pub const STORE_FILE: &str = "herald.redb";

pub use crate::clock::now_ms;

/// Audit records kept (in the store, or in memory without one).
const AUDIT_KEPT: usize = 100_000;

/// Committed audit records held in memory when a store keeps them all: the
/// newest, which the audit stream and most pages read.
const AUDIT_HELD: usize = 256;

/// A Server-Sent Events hub. Cheap to clone; all clones are the same hub.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

/// The hub's shared state.
pub struct HubInner {
    /// Effective configuration.
    pub(crate) config: Config,
    /// Credential verification.
    pub(crate) auth: Authenticator,
    /// Live streams.
    pub(crate) registry: Arc<Registry>,
    /// Stored events.
    pub(crate) history: Arc<dyn History>,
    /// Security events.
    pub(crate) audit: AuditLog,
    /// Sticky revocations.
    pub(crate) deny: DenyList,
    /// The cluster this node belongs to, when clustered.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Mercure token verification (`None` when Mercure has no key).
    pub(crate) mercure: Option<crate::auth::mercure::MercureAuth>,
    /// The embedded store, when history is durable.
    pub(crate) store: Option<Arc<Store>>,
    /// Tag invalidation controls.
    pub(crate) invalidation: crate::invalidation::Invalidation,
    /// Failed authentications per client IP.
    pub(crate) auth_failures: FailureLimiter,
    /// Event limits.
    pub(crate) limits: Limits,
    /// The last minutes' numbers, for operators.
    pub(crate) stats: Arc<crate::stats::HubStats>,
    /// Held shared by every publish in flight; shutdown takes it exclusively
    /// to wait for them before closing streams.
    in_flight: tokio::sync::RwLock<()>,
    draining: AtomicBool,
    /// Cancelled when the hub shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Where the generated secret was written, if it was.
    pub(crate) generated_secret_file: Option<std::path::PathBuf>,
    /// Told when streams open and close (protocol adapters subscribe).
    pub(crate) stream_listeners: parking_lot::RwLock<Vec<(&'static str, StreamListener)>>,
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
    /// The operating system refused a thread the hub needs (exit code 1).
    #[error("cannot start the hub's dispatch thread: {0}")]
    Thread(String),
}

/// Builds a [`Hub`].
pub struct HubBuilder {
    config: Config,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    history: Option<Arc<dyn History>>,
    secrets: Option<Secrets>,
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
    ) -> Result<Vec<Arc<Event>>, PublishError> {
        self.inner.publish_json(publisher, events).await
    }

    /// Applies a revocation: closes matching streams, keeps a deny rule.
    /// Returns how many streams were closed here; in a cluster, an error
    /// when the rule could not yet be shared with the other nodes (it is
    /// applied here and keeps being shared in the background).
    pub async fn revoke(&self, revocation: Revocation) -> Result<usize, NotShared> {
        self.inner.revoke(revocation, None, None).await
    }

    /// Resolves once every event published so far is in the queue (or on
    /// the connection) of every live stream that may see it. A publish is
    /// answered once its event is durable; delivery follows on the hub's
    /// dispatch thread, and this is how a test or an embedder that needs
    /// "delivered" waits for it.
    pub async fn dispatched(&self) {
        self.inner.registry.dispatched().await;
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
    /// Whether the hub is draining for shutdown.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
