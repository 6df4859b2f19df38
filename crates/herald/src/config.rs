//! Configuration: defaults, then a TOML file, then `HERALD_*` environment
//! variables, then command-line flags (each later source wins).
//!
//! Errors name the key and the source that set it, and never print a
//! secret's value.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Everything `herald serve` can be told.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for generated secrets and (later) the store.
    pub data_dir: PathBuf,
    /// HS256 secret for user JWTs. Generated into the data dir when no key
    /// at all is configured.
    pub jwt_secret: Option<String>,
    /// PEM file with an RSA public key: RS256 tokens are verified with it.
    pub jwt_rs256_public_key: Option<PathBuf>,
    /// PEM file with an EC P-256 public key: ES256 tokens.
    pub jwt_es256_public_key: Option<PathBuf>,
    /// PEM file with an Ed25519 public key: EdDSA tokens.
    pub jwt_eddsa_public_key: Option<PathBuf>,
    /// Keys chosen by the token's `kid` header (`[[jwt_keys]]`): list the
    /// old and the new key to roll keys without refusing anyone.
    pub jwt_keys: Vec<JwtKeyConfig>,
    /// An identity provider's JWK Set (`https://`; `http://` for a loopback
    /// host only): its signature keys verify user JWTs, chosen by `kid`.
    pub jwks_url: Option<String>,
    /// PEM file of the CA certificates trusted for key set URLs (default:
    /// `SSL_CERT_FILE`, else the system's CA bundle).
    pub jwks_ca_file: Option<PathBuf>,
    /// Seconds between scheduled fetches of each key set (sooner when the
    /// answer's `Cache-Control: max-age` says so).
    pub jwks_refresh_secs: u64,
    /// Required `iss` claim, when set.
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set.
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    pub jwt_leeway_secs: u64,
    /// Longest credential lifetime accepted (`exp - iat`), in seconds; also
    /// how long revocation deny rules are kept.
    pub max_token_lifetime_secs: u64,
    /// Secret that keys session-id hashes. Derived from `jwt_secret` when
    /// unset, or generated into the data dir.
    pub session_hash_key: Option<String>,
    /// API keys for backends.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Browser origins allowed by CORS on the native API.
    pub cors_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Longest a client may take to send a whole request body, seconds
    /// (counted from the request's arrival). A body that trickles in holds
    /// a connection and a task; past this it is refused with `408`.
    pub body_timeout_secs: u64,
    /// TLS certificate chain (PEM). With `tls_key`, serves HTTPS + HTTP/2.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// Where history and hub state live: `embedded` (durable, in
    /// `data_dir`) or `memory` (lost at exit).
    pub store: StoreKind,
    /// When the embedded store fsyncs: `always` (every publish is durable
    /// before it is answered), `interval`, or `never`.
    pub fsync: FsyncMode,
    /// With `fsync = "interval"`: the most time between fsyncs, ms.
    pub fsync_interval_ms: u64,
    /// History kept for `Last-Event-ID` resume, in events.
    pub history_size: usize,
    /// Events older than this are dropped, seconds; 0 = no age limit.
    pub retention_max_age_secs: u64,
    /// Event bytes kept by the embedded store; 0 = no size limit.
    pub retention_max_bytes: u64,
    /// Memory the embedded store may use to cache its file's pages, bytes.
    pub store_cache_bytes: u64,
    /// Limits and back-pressure.
    pub limits: LimitsConfig,
    /// The Mercure protocol endpoint (`/.well-known/mercure`).
    pub mercure: MercureConfig,
    /// NATS URLs (`nats://host:4222[,nats://...]`): run as a node of a
    /// cluster over JetStream instead of the embedded store.
    pub cluster: Option<String>,
    /// Prefix of the JetStream streams Herald creates (`HERALD_EVENTS`, `HERALD_CONTROL`).
    pub cluster_stream: String,
    /// Replicas of those streams.
    pub cluster_replicas: usize,
    /// Events each cluster node keeps in memory for resume (env
    /// `HERALD_CLUSTER_WINDOW`). Separate from what JetStream keeps
    /// (`history_size`, `retention_max_age_secs`): an older resume is read
    /// from JetStream.
    pub cluster_window: usize,
    /// Count the session, account (and, with `cluster_ip_caps`, address)
    /// stream caps across the whole cluster rather than per node.
    pub cluster_caps: bool,
    /// Count the per-address cap across the cluster too (behind a balancer
    /// that hides client addresses, leave it off).
    pub cluster_ip_caps: bool,
    /// A node's cluster-wide stream places outlive its last heartbeat by
    /// at most twice this, seconds; a node that cannot renew its heartbeat
    /// for this long closes its streams.
    pub cluster_lease_secs: u64,
}

/// `[mercure]`: Herald speaking the Mercure protocol.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MercureConfig {
    /// Serve `/.well-known/mercure`.
    pub enabled: bool,
    /// Accept subscribers without a token (they receive public updates only).
    pub anonymous: bool,
    /// Key for both publisher and subscriber tokens (HS* secret, or a PEM
    /// public key / path to one for RS*, ES*, EdDSA). Default: `jwt_secret`.
    pub jwt_key: Option<String>,
    /// Algorithm of `jwt_key` (default HS256).
    pub jwt_alg: Option<String>,
    /// Key for publisher tokens (overrides `jwt_key`).
    pub publisher_jwt_key: Option<String>,
    /// Algorithm of `publisher_jwt_key`.
    pub publisher_jwt_alg: Option<String>,
    /// Key for subscriber tokens (overrides `jwt_key`).
    pub subscriber_jwt_key: Option<String>,
    /// Algorithm of `subscriber_jwt_key`.
    pub subscriber_jwt_alg: Option<String>,
    /// JWK Set verifying publisher tokens, chosen by `kid` (takes
    /// precedence over `publisher_jwt_key`, as in Mercure).
    pub publisher_jwks_url: Option<String>,
    /// JWK Set verifying subscriber tokens (takes precedence over
    /// `subscriber_jwt_key`).
    pub subscriber_jwks_url: Option<String>,
    /// Origins allowed by CORS on the Mercure endpoint (`*` allowed, as in Mercure).
    pub cors_origins: Vec<String>,
    /// Origins allowed to publish with the `mercureAuthorization` cookie.
    pub publish_origins: Vec<String>,
    /// Enable the subscriptions API and subscription events.
    pub subscriptions: bool,
    /// Heartbeat interval in seconds (overrides `limits.keepalive_secs`).
    pub heartbeat: Option<u64>,
}

impl Default for MercureConfig {
    fn default() -> Self {
        MercureConfig {
            enabled: true,
            anonymous: false,
            jwt_key: None,
            jwt_alg: None,
            publisher_jwt_key: None,
            publisher_jwt_alg: None,
            subscriber_jwt_key: None,
            subscriber_jwt_alg: None,
            publisher_jwks_url: None,
            subscriber_jwks_url: None,
            cors_origins: Vec::new(),
            publish_origins: Vec::new(),
            subscriptions: false,
            heartbeat: None,
        }
    }
}

/// One verification key chosen by `kid` (`[[jwt_keys]]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// The `kid` a token names in its header to be verified with this key.
    pub kid: String,
    /// The one algorithm the key verifies: HS256/384/512 with `secret`;
    /// RS256/384/512, PS256/384/512, ES256, ES384 or EdDSA with
    /// `public_key`.
    pub alg: String,
    /// PEM file with the public key.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// HMAC secret (at least 32 bytes).
    #[serde(default)]
    pub secret: Option<String>,
}

/// One backend API key. Only the hash of its secret is configured.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Name used in logs and audit events.
    pub id: String,
    /// `sha256:<hex>` or `blake3:<hex>` of the full key (`hk_...`).
    pub hash: String,
    /// Any of `publish`, `tokens`, `revoke`, `admin`.
    pub scopes: Vec<String>,
    /// Tenant the key is bound to.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Topics the key may publish to (default: all).
    #[serde(default)]
    pub publish: Option<Vec<String>>,
}

/// Which history backend.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// redb file in the data dir.
    Embedded,
    /// In memory only.
    Memory,
}

/// Embedded store durability.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// fsync before answering every publish (group commit).
    Always,
    /// fsync at most every `fsync_interval_ms`.
    Interval,
    /// Checkpoint once a second and at shutdown.
    Never,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What happens when a session opens a stream beyond its cap.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionCapPolicy {
    /// Close the session's oldest stream with `event: evicted`.
    Evict,
    /// Refuse the new stream with `429`.
    Reject,
}

/// Caps, queues and timers (`[limits]` in docs/configuration.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Streams per session.
    pub per_session: usize,
    /// What to do when a session is full.
    pub session_policy: SessionCapPolicy,
    /// Streams per account.
    pub per_account: usize,
    /// Streams per client IP.
    pub per_ip: usize,
    /// Streams in the whole hub; 0 = derived from the open-file limit.
    pub hub_total: usize,
    /// Outstanding SSE tokens per minter and subject.
    pub sse_tokens_outstanding: usize,
    /// Default SSE token lifetime, seconds.
    pub sse_token_ttl_secs: u64,
    /// Longest SSE token lifetime a minter may ask for, seconds.
    pub sse_token_max_ttl_secs: u64,
    /// Largest event, bytes.
    pub max_event_bytes: usize,
    /// Most events in one `{"events": [...]}` publish.
    pub max_batch: usize,
    /// Per-subscriber queue, events.
    pub queue_events: usize,
    /// Per-subscriber queue, bytes.
    pub queue_bytes: usize,
    /// A write stalled this long ends the stream, seconds.
    pub write_stall_secs: u64,
    /// Keepalive comment interval when idle, seconds.
    pub keepalive_secs: u64,
    /// Failed authentications allowed per client IP per minute.
    pub auth_failures_per_minute: u32,
    /// Most selectors on one subscription.
    pub max_selectors: usize,
    /// Most retained snapshot slots (one per topic and audience) kept per
    /// tenant (hub-wide events count as one more tenant); past it the
    /// tenant's oldest retained event gives up its slot.
    pub retained_per_tenant: usize,
    /// Most invalidation audiences held per tenant (hub-wide counting as one
    /// more) while invalidations are paused; past it a new audience's
    /// invalidation is refused (`429`).
    pub invalidation_held_audiences: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("herald-data"),
            jwt_secret: None,
            jwt_rs256_public_key: None,
            jwt_es256_public_key: None,
            jwt_eddsa_public_key: None,
            jwt_keys: Vec::new(),
            jwks_url: None,
            jwks_ca_file: None,
            jwks_refresh_secs: 300,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_secs: 5,
            max_token_lifetime_secs: 7 * 24 * 3600,
            session_hash_key: None,
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            body_timeout_secs: 30,
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Text,
            store: StoreKind::Embedded,
            fsync: FsyncMode::Always,
            fsync_interval_ms: 10,
            history_size: 100_000,
            retention_max_age_secs: 7 * 24 * 3600,
            retention_max_bytes: 1 << 30,
            store_cache_bytes: 64 << 20,
            limits: LimitsConfig::default(),
            mercure: MercureConfig::default(),
            cluster: None,
            cluster_stream: "HERALD".into(),
            cluster_replicas: 1,
            cluster_window: 10_000,
            cluster_caps: true,
            cluster_ip_caps: false,
            cluster_lease_secs: 10,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_session: 10,
            session_policy: SessionCapPolicy::Evict,
            per_account: 20,
            per_ip: 256,
            hub_total: 0,
            sse_tokens_outstanding: 10,
            sse_token_ttl_secs: 300,
            sse_token_max_ttl_secs: 3600,
            max_event_bytes: 1024 * 1024,
            max_batch: 1000,
            queue_events: 1024,
            queue_bytes: 4 * 1024 * 1024,
            write_stall_secs: 30,
            keepalive_secs: 15,
            auth_failures_per_minute: 60,
            max_selectors: 100,
            retained_per_tenant: 10_000,
            invalidation_held_audiences: 10_000,
        }
    }
}

/// A configuration problem, printed as one line before exiting with code 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Flags given on the command line; `None` leaves the lower sources alone.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlagOverrides {
    /// `--listen`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--data-dir`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--tls-cert`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// `--log-format`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// `--store`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// `--cluster`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

impl Config {
    /// Loads defaults ← `file` ← `HERALD_*` env ← flags, then checks it.
    ///
    /// Nested keys use a double underscore in the environment:
    /// `HERALD_LIMITS__PER_SESSION=5`.
    pub fn load(file: Option<&std::path::Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(
                Env::prefixed("HERALD_")
                    .ignore(&["config", "log", "token", "url"])
                    .map(|key| env_key(key.as_str()).into()),
            )
            .merge(Serialized::defaults(flags));
        let config: Config = figment.extract().map_err(|e| ConfigError(one_line(&e)))?;
        config.check()?;
        Ok(config)
    }

    /// Checks relations between keys that serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let err = |key: &str, why: &str| Err(ConfigError(format!("`{key}`: {why}")));
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return err("tls_cert", "tls_cert and tls_key must be given together");
        }
        // Every HMAC key (native and Mercure) is at least 32 bytes.
        if let Some((key, why)) = crate::auth::jwt_core::short_hmac_key(self) {
            return err(key, &why);
        }
        let l = &self.limits;
        // A cluster stores a batch as one JetStream atomic batch, which
        // holds at most 1,000 messages.
        if self.cluster.is_some() && l.max_batch > 1000 {
            return err(
                "limits.max_batch",
                "at most 1000 in a cluster (JetStream's atomic batch limit)",
            );
        }
        for (key, v) in [
            ("limits.per_session", l.per_session),
            ("limits.per_account", l.per_account),
            ("limits.per_ip", l.per_ip),
            ("limits.sse_tokens_outstanding", l.sse_tokens_outstanding),
            ("limits.max_event_bytes", l.max_event_bytes),
            ("limits.max_batch", l.max_batch),
            ("limits.queue_events", l.queue_events),
            ("limits.queue_bytes", l.queue_bytes),
            ("limits.max_selectors", l.max_selectors),
            ("limits.retained_per_tenant", l.retained_per_tenant),
            ("limits.invalidation_held_audiences", l.invalidation_held_audiences),
            ("history_size", self.history_size),
            ("cluster_window", self.cluster_window),
        ] {
            if v == 0 {
                return err(key, "must be greater than 0");
            }
        }
        for (key, v) in [
            ("limits.sse_token_ttl_secs", l.sse_token_ttl_secs),
            ("limits.keepalive_secs", l.keepalive_secs),
            ("limits.write_stall_secs", l.write_stall_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("max_token_lifetime_secs", self.max_token_lifetime_secs),
            ("cluster_lease_secs", self.cluster_lease_secs),
            ("jwks_refresh_secs", self.jwks_refresh_secs),
        ] {
            if v == 0 {
                return err(key, "must be greater than 0");
            }
        }
        if self.store_cache_bytes < 1 << 20 {
            return err("store_cache_bytes", "must be at least 1048576 (1 MiB)");
        }
        if l.sse_token_ttl_secs > l.sse_token_max_ttl_secs {
            return err(
                "limits.sse_token_ttl_secs",
                "must not exceed limits.sse_token_max_ttl_secs",
            );
        }
        self.check_jwt_keys()?;
        let mut ids = std::collections::HashSet::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            if !ids.insert(&key.id) {
                return err(&format!("api_keys[{i}].id"), "duplicate id");
            }
            // "" would read as no tenant in some places and as a tenant in
            // others: a key is bound to a named tenant or to none.
            if key.tenant.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return err(
                    &format!("api_keys[{i}].tenant"),
                    "must not be empty (omit it for a hub-wide key)",
                );
            }
            if crate::auth::api_key::parse_hash(&key.hash).is_none() {
                return err(
                    &format!("api_keys[{i}].hash"),
                    "must be `sha256:<64 hex>` or `blake3:<64 hex>` (see `herald apikey`)",
                );
            }
            for scope in &key.scopes {
                if herald_core::Scopes::default().with(scope).is_none() {
                    return err(
                        &format!("api_keys[{i}].scopes"),
                        &format!("unknown scope `{scope}` (expected publish, tokens, revoke, admin)"),
                    );
                }
            }
            if let Some(p) = &key.publish {
                if let Err(e) = herald_core::SelectorSet::parse(p) {
                    return err(&format!("api_keys[{i}].publish"), &e.message);
                }
            }
        }
        for origin in &self.cors_origins {
            if origin == "*" {
                return err(
                    "cors_origins",
                    "`*` is not allowed: credentials are only sent to listed origins",
                );
            }
            if axum::http::HeaderValue::from_str(origin).is_err() {
                return err("cors_origins", &format!("`{origin}` is not a valid origin"));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Checks `[[jwt_keys]]` and the key set URLs (the files and URLs
    /// themselves are read when the hub is built).
    fn check_jwt_keys(&self) -> Result<(), ConfigError> {
        use jsonwebtoken::{Algorithm, AlgorithmFamily};
        let err = |key: &str, why: &str| Err(ConfigError(format!("`{key}`: {why}")));
        for (key, url) in [
            ("jwks_url", &self.jwks_url),
            ("mercure.publisher_jwks_url", &self.mercure.publisher_jwks_url),
            ("mercure.subscriber_jwks_url", &self.mercure.subscriber_jwks_url),
        ] {
            if let Some(url) = url {
                if let Err(why) = crate::auth::jwks::check_url(url) {
                    return err(key, &why);
                }
            }
        }
        let mut kids = std::collections::HashSet::new();
        for (i, k) in self.jwt_keys.iter().enumerate() {
            let at = |field: &str| format!("jwt_keys[{i}].{field}");
            if k.kid.is_empty() || k.kid.len() > crate::auth::jwt_core::MAX_KID_BYTES {
                return err(&at("kid"), "must be 1 to 256 bytes");
            }
            if !kids.insert(k.kid.as_str()) {
                return err(&at("kid"), "duplicate kid");
            }
            let Ok(alg) = k.alg.parse::<Algorithm>() else {
                return err(
                    &at("alg"),
                    "must be HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA",
                );
            };
            match (alg.family(), &k.secret, &k.public_key) {
                (AlgorithmFamily::Hmac, Some(secret), None) => {
                    if secret.len() < crate::auth::jwt_core::MIN_HMAC_KEY_BYTES {
                        tracing::warn!(key = %at("secret"), "refusing an HMAC key shorter than 32 bytes");
                        return err(
                            &at("secret"),
                            "an HMAC key must be at least 32 bytes long (try `openssl rand -hex 32`)",
                        );
                    }
                }
                (AlgorithmFamily::Hmac, _, _) => {
                    return err(
                        &at("secret"),
                        "an HS256/384/512 key is a `secret` (and no `public_key`)",
                    )
                }
                (_, None, Some(_)) => {}
                (_, _, _) => {
                    return err(
                        &at("public_key"),
                        "a public-key algorithm takes a `public_key` PEM file (and no `secret`)",
                    )
                }
            }
        }
        Ok(())
    }
}

/// Maps an environment key (without `HERALD_`) to a config path:
/// `LIMITS__PER_SESSION` → `limits.per_session`, and Mercure's familiar
/// single-underscore form `MERCURE_ANONYMOUS` → `mercure.anonymous`.
fn env_key(key: &str) -> String {
    let k = key.to_ascii_lowercase().replace("__", ".");
    match k.strip_prefix("mercure_") {
        Some(rest) => format!("mercure.{rest}"),
        None => k,
    }
}

/// figment errors can span lines; the contract is one line naming the key.
fn one_line(e: &figment::Error) -> String {
    e.to_string().replace('\n', " ")
}
