//! Admin endpoints: the audit log (JSON page and SSE stream), live
//! connections and the overview of the last minutes. A tenant admin sees only its tenant; another tenant's
//! resources answer `404`, never `403`, so their existence does not leak.

use super::error::ApiError;
use super::request::{client_ip, header_credential, last_event_id, query_pairs, ConnInfo};
use crate::audit::AuditEntry;
use crate::audit_stream::visible_to;
use crate::auth::Source;
use crate::hub::{now_ms, Hub, HubInner};
use crate::queue::CloseReason;
use crate::registry::{Lookup, StreamKind, Subscriber};
use crate::stats::Scope;
use crate::stream::Start;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::{LastEventId, Principal, SelectorSet};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::ToSchema;

/// One audit record as the API shows it (`crate::audit::AuditRecord`,
/// described here for the OpenAPI document). Never a credential.
#[derive(ToSchema)]
#[schema(as = AuditRecord)]
#[allow(dead_code)]
pub struct AuditRecordSchema {
    /// Strictly increasing; resume with it (`after`, `Last-Event-ID`).
    id: u64,
    /// Unix milliseconds.
    time_ms: u64,
    /// `stream_opened`, `stream_closed`, `auth_failed`, `cap_rejected`,
    /// `revocation_applied`, `token_minted`, `admin_action`,
    /// `origin_forbidden`.
    kind: String,
    /// The tenant concerned (absent: none).
    tenant: Option<String>,
    /// The account concerned.
    account: Option<String>,
    /// 8 hex characters of the session hash.
    session: Option<String>,
    /// The client address.
    ip: Option<String>,
    /// The stream id.
    stream: Option<u64>,
    /// Kind-specific details (`reason`, `code`, `cap`, `closed`, ...).
    detail: Value,
}

/// A page of the audit log, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage<'a> {
    /// The records.
    #[schema(value_type = Vec<AuditRecordSchema>)]
    pub records: Vec<&'a crate::audit::AuditRecord>,
    /// Where the next page starts (its `after`): the last record's id, or
    /// `after` for an empty page; on a `partial` forward page, the last id
    /// examined.
    pub next: u64,
    /// Where the previous page ends (its `before`): the first record's id
    /// (`null` for an empty page); on a `partial` page read with
    /// `before`, the oldest id examined.
    pub prev: Option<u64>,
    /// `true` when the page stopped after examining 10,000 records (in
    /// memory or in the store) without finding `limit` that match: more
    /// may follow, from `next` (forward) or `prev` (back). A filter that
    /// matches rarely never makes one request read the whole log. A
    /// tenant admin's page examines its tenant's records only.
    pub partial: bool,
}

/// The most audit records one `GET /v1/audit` page examines, matching
/// or not (in memory and again in the store): what one request may cost,
/// whatever its filter.
pub const AUDIT_PAGE_SCAN: usize = 10_000;

/// One live stream as an operator sees it. Never a credential: the
/// session only as its hash prefix.
#[derive(Debug, Serialize, ToSchema)]
pub struct Connection {
    /// The stream id (`DELETE /v1/connections/{id}` cuts it).
    #[schema(example = "17")]
    pub id: String,
    /// `events` or `audit`.
    #[schema(example = "events")]
    pub kind: &'static str,
    /// `native`, `mercure` or `audit`.
    #[schema(example = "native")]
    pub protocol: &'static str,
    /// The account (`sub`).
    pub account: String,
    /// Its tenant (`null`: hub-wide).
    pub tenant: Option<String>,
    /// 8 hex characters of the session hash.
    pub session: Option<String>,
    /// The client address.
    pub ip: String,
    /// What it subscribed to.
    pub selectors: Vec<String>,
    /// The credential's roles.
    pub roles: Vec<String>,
    /// The credential's groups.
    pub groups: Vec<String>,
    /// Unix seconds it opened at.
    pub opened_at: u64,
    /// Unix seconds its credential expires at (`null`: never).
    pub expires_at: Option<u64>,
    /// Frames waiting for the writer now.
    pub queue: usize,
    /// Events written to it so far, replay included.
    pub sent: u64,
}

/// The answer of `GET /v1/connections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// Matching streams after `after`, oldest first, at most `limit`.
    pub connections: Vec<Connection>,
    /// Every match, listed or not (whatever `after`).
    pub total: usize,
    /// When more matches follow the last one listed: its id, the next
    /// page's `after`. `null` on the last page.
    #[schema(example = "17")]
    pub next: Option<String>,
}

/// The answer of a kick.
#[derive(Debug, Serialize, ToSchema)]
pub struct Kicked {
    /// Always `true`: the stream got `event: kicked`.
    pub closed: bool,
}

/// Streams open now, by tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewStreams {
    /// Streams this admin may see.
    pub total: usize,
    /// Per tenant, most streams first.
    pub by_tenant: Vec<TenantStreams>,
}

/// One tenant's open streams.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantStreams {
    /// The tenant (`null`: hub-wide streams).
    pub tenant: Option<String>,
    /// Its open streams.
    pub streams: usize,
}

/// The answer of `GET /v1/overview`: the last five minutes on this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// The node's clock, unix milliseconds.
    pub now_ms: u64,
    /// The admin's tenant (`null`: a hub admin).
    pub tenant: Option<String>,
    /// Milliseconds per sample.
    pub interval_ms: u64,
    /// Streams open now.
    pub streams: OverviewStreams,
    /// Counts since the node started.
    #[schema(value_type = OverviewCounts)]
    pub totals: Value,
    /// One per second, oldest first, at most 300.
    #[schema(value_type = Vec<OverviewSample>)]
    pub samples: Vec<Value>,
    /// Health; a tenant admin sees `ready` and `draining` only.
    #[schema(value_type = OverviewHealth)]
    pub health: Value,
}

/// Counts of the overview (`crate::stats`), described for the OpenAPI
/// document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OverviewCounts {
    /// Events published.
    published: u64,
    /// Events written to streams' queues.
    delivered: u64,
    /// Streams closed because their queue was full.
    overflowed: u64,
    /// Streams closed by a revocation.
    revoked: u64,
    /// Refusals.
    refused: u64,
    /// Refusals by `cap:<code>`, `auth:<code>`, `origin_forbidden`.
    refused_by: std::collections::BTreeMap<String, u64>,
    /// `false`: a tenant first seen after 4,096 others, whose totals are
    /// not kept.
    tracked: Option<bool>,
}

/// One second of the overview.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OverviewSample {
    /// Unix milliseconds the second started at.
    t: u64,
    /// Streams open.
    streams: usize,
    /// Open streams of the 64 tenants with most (`""`: hub-wide).
    by_tenant: std::collections::BTreeMap<String, usize>,
    /// Past the per-tenant budget: only hub-wide numbers kept.
    tenants_trimmed: Option<bool>,
    /// Events published.
    published: u64,
    /// Events written to streams' queues.
    delivered: u64,
    /// Streams closed because their queue was full.
    overflowed: u64,
    /// Streams closed by a revocation.
    revoked: u64,
    /// Refusals.
    refused: u64,
    /// Refusals by kind.
    refused_by: std::collections::BTreeMap<String, u64>,
    /// Publish latency (`null`: none that second, or a tenant admin).
    publish_ms: Option<Latencies>,
    /// Fan-out latency (`null`: none that second, or a tenant admin).
    fanout_ms: Option<Latencies>,
}

/// Latency bounds of a second, milliseconds (log₂ buckets).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Latencies {
    /// Median bound.
    p50: f64,
    /// 99th percentile bound.
    p99: f64,
    /// The slowest.
    max: f64,
}

/// The overview's health.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OverviewHealth {
    /// As `/readyz` says.
    ready: bool,
    /// Shutting down.
    draining: bool,
    /// The newest event's sequence number (hub admins only).
    history_head: Option<u64>,
    /// Deny rules in force (hub admins only).
    deny_rules: Option<usize>,
    /// Unused, unexpired SSE tokens (hub admins only).
    sse_tokens_outstanding: Option<usize>,
    /// The store (`null`: in memory; hub admins only).
    store: Option<StoreHealth>,
    /// The cluster (`null`: a single node; hub admins only).
    cluster: Option<ClusterHealth>,
    /// The identity providers' key sets (hub admins only; empty without
    /// `jwks_url` or Mercure's `*_jwks_url`).
    jwks: Option<Vec<JwksHealth>>,
}

/// One identity provider's key set (`crate::auth::jwks::JwksStatus`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JwksHealth {
    /// The URL, as configured.
    url: String,
    /// Whether a fetch has ever succeeded.
    loaded: bool,
    /// Keys held now.
    keys: usize,
    /// Unix ms of the last successful fetch.
    last_success_ms: Option<u64>,
    /// Why the last fetch failed, when it did.
    last_error: Option<String>,
    /// Fetches attempted since start.
    fetches: u64,
}

/// The store's size.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StoreHealth {
    /// Events stored.
    events: u64,
    /// The file's size.
    bytes: u64,
}

/// The cluster link.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClusterHealth {
    /// Whether NATS is reachable.
    connected: bool,
}

/// Authenticates an admin (hub or tenant). SSE tokens (and so `?token=`)
/// are accepted only where a stream is opened (`stream`), as everywhere.
fn admin<B>(
    hub: &Arc<HubInner>,
    req: &Request<B>,
    query: &[(String, String)],
    stream: bool,
) -> Result<Principal, ApiError> {
    let ip = client_ip(req, &hub.config);
    let source = match query.iter().find(|(k, _)| k == "token") {
        Some((_, t)) if stream => Some(Source::Query(t)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "the token parameter is accepted on streams only; send a credential in the Authorization header",
            ))
        }
        None => header_credential(req.headers()),
    };
    let p = if stream {
        hub.authenticate(source, ip, false)?
    } else {
        hub.authenticate_api(source, ip)?
    };
    if !p.is_admin() {
        return Err(ApiError::forbidden(
            "admin_required",
            "this endpoint is for administrators",
        ));
    }
    Ok(p)
}

fn number(query: &[(String, String)], key: &str) -> Result<Option<u64>, ApiError> {
    filter(query, key)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request("invalid_request", format!("`{key}` must be a whole number")))
        })
        .transpose()
}

/// A text filter of the query: `None` when absent.
fn filter<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Whether `value` passes an exact-match filter, where "" names "none"
/// (a hub-wide record or stream has no tenant).
fn matches(filter: Option<&str>, value: Option<&str>) -> bool {
    filter.is_none_or(|f| value.unwrap_or("") == f)
}

/// A page of the audit log
///
/// Forward from `after`, or (with `before`) the newest records older than
/// `before`, for paging back from the live tail
/// (`before=18446744073709551615` for the newest); oldest first either
/// way. `after` and `before` together are `400 invalid_request`. A tenant
/// admin sees its tenant's records only. A page examines at most 10,000
/// records; one that stops there is `partial`, and its `next` or `prev`
/// goes on where it stopped.
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "audit_page",
    tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("after" = Option<u64>, Query, description = "Records with a larger id (default 0)."),
        ("before" = Option<u64>, Query, description = "The newest records with a smaller id."),
        ("limit" = Option<u64>, Query, description = "At most this many: default 100, clamped to 1–1000."),
        ("kind" = Option<String>, Query, description = "Only this kind."),
        ("tenant" = Option<String>, Query, description = "Only this tenant's (empty: records without one)."),
        ("account" = Option<String>, Query, description = "Only this account's."),
    ),
    responses((status = 200, description = "The records.", body = AuditPage))
)]
pub async fn audit_page(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let after = number(&query, "after")?;
    let before = number(&query, "before")?;
    if after.is_some() && before.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give `after` (page forward) or `before` (page back), not both",
        ));
    }
    let window = crate::audit::Window {
        limit: number(&query, "limit")?.unwrap_or(100).clamp(1, 1000) as usize,
        scan: AUDIT_PAGE_SCAN,
    };
    let owned = |key: &str| filter(&query, key).map(str::to_string);
    let (kind, tenant, account) = (owned("kind"), owned("tenant"), owned("account"));
    // Older pages are read (and decoded) from the store: off the runtime's
    // workers, which serve every stream and publish.
    let log = hub.clone();
    let read = tokio::task::spawn_blocking(move || {
        let wanted = |r: &crate::audit::AuditRecord| {
            visible_to(&p, r)
                && kind.as_deref().is_none_or(|k| r.kind == k)
                && matches(tenant.as_deref(), r.tenant.as_deref())
                && matches(account.as_deref(), r.account.as_deref())
        };
        // A tenant admin's reads, and a hub admin's of one tenant, look at
        // that tenant's records alone (the store indexes them by tenant).
        let scope = crate::audit_stream::tenant_scope(&p).or(tenant.as_deref().filter(|t| !t.is_empty()));
        match before {
            Some(before) => log.audit.page_before(before, window, scope, wanted),
            None => log.audit.page(after.unwrap_or(0), window, scope, wanted),
        }
        .map_err(|e| e.to_string())
    });
    let page = read
        .await
        .unwrap_or_else(|_| Err("the audit read stopped".to_string()))
        .map_err(ApiError::store_unavailable)?;
    let records = &page.records;
    let (next, prev) = match (before, page.stopped_at) {
        (None, Some(at)) => (at, records.first().map(|r| r.id)),
        (Some(_), Some(at)) => (records.last().map_or(0, |r| r.id), Some(at)),
        (_, None) => (
            records.last().map_or(after.unwrap_or(0), |r| r.id),
            records.first().map(|r| r.id),
        ),
    };
    let records: Vec<&crate::audit::AuditRecord> = records.iter().map(|r| r.as_ref()).collect();
    Ok(Json(AuditPage {
        records,
        next,
        prev,
        partial: page.stopped_at.is_some(),
    })
    .into_response())
}

/// Follow the audit log
///
/// The audit log as an endless `text/event-stream`: `: connected`, then
/// one `event: audit` per record from the newest on (or after
/// `Last-Event-ID`, a record id), `id:` the record id and `data:` the
/// record as JSON; `: keepalive` comments when idle; at most one closing
/// control event as on `/v1/events`. At most 10 per session
/// (`429 audit_stream_cap`). A tenant admin sees its tenant's records only.
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    operation_id = "open_audit_stream",
    tag = "admin",
    params(
        ("last_event_id" = Option<String>, Query, pattern = "^[0-9]{0,20}$",
            description = "Resume after this record id, at most the log's newest (the `Last-Event-ID` header wins)."),
        ("token" = Option<String>, Query, description = "An admin SSE token (`st_...`)."),
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{0,20}$",
            description = "Resume after this record id, at most the log's newest."),
    ),
    security(("bearer" = []), ("token" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The stream of audit records.",
            content_type = "text/event-stream", body = ref("#/components/schemas/AuditStreamEvent"),
            headers(
                ("cache-control" = String, description = "`no-cache`"),
                ("x-accel-buffering" = String, description = "`no`"),
            )),
    )
)]
pub async fn audit_stream(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    // An SSE token minted on another cluster node is fetched first.
    let token = query.iter().find(|(k, _)| k == "token").map(|(_, t)| t.clone());
    if let Some(raw) = token {
        hub.auth.sse_tokens.prefetch(&raw).await;
    }
    let p = admin(&hub, &req, &query, true)?;
    let head = hub.audit.head();
    let after = match last_event_id(&req, &query, "last_event_id")? {
        None => head,
        // Audit record ids are the hub's own, so only a number names one.
        Some(LastEventId::Seq(n)) if n <= head => n,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID must be an audit record id",
            ))
        }
    };
    let ip = client_ip(&req, &hub.config);
    let connection = req.extensions().get::<ConnInfo>().map(|c| c.kill.clone());
    // A single-use SSE token is spent wherever it was presented (query,
    // header or cookie), exactly as `admin` read it.
    let source = match query.iter().find(|(k, _)| k == "token") {
        Some((_, t)) => Some(Source::Query(t)),
        None => header_credential(req.headers()),
    };
    let spend_token = super::events::sse_token_of(source);
    super::events::open(
        &hub,
        super::events::StreamRequest {
            principal: p,
            selectors: SelectorSet::default(),
            ip,
            kind: StreamKind::Audit,
            protocol: "audit",
            start: Start::AuditAfter(after),
            connection,
            // The audit stream is written by its task alone.
            direct: None,
            spend_token,
            extension: None,
        },
    )
    .await
}

/// One stream as an operator sees it. Never a credential: the session
/// only as its hash prefix.
fn describe(s: &Subscriber) -> Connection {
    let (queue, sent) = s.queue.depth_and_sent();
    Connection {
        id: s.id.to_string(),
        kind: s.kind.as_str(),
        protocol: s.protocol,
        account: s.principal.sub.clone(),
        tenant: s.principal.tenant.clone(),
        session: s.principal.session.map(|h| h.prefix()),
        ip: s.ip.to_string(),
        selectors: s.selectors.as_strings(),
        roles: s.principal.roles.clone(),
        groups: s.principal.groups.clone(),
        opened_at: s.opened_at_ms / 1000,
        expires_at: s.principal.expires_at_ms.map(|ms| ms / 1000),
        queue,
        sent,
    }
}

/// Most connections one answer lists.
const CONNECTIONS_LISTED: u64 = 10_000;

/// List live streams
///
/// Oldest first. `total` counts every match; `limit` bounds how many are
/// listed, and `after` (the answer's `next`) pages on. A tenant admin sees
/// its tenant's streams only.
#[utoipa::path(
    get,
    path = "/v1/connections",
    operation_id = "list_connections",
    tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("tenant" = Option<String>, Query, description = "Only this tenant's streams (empty: hub-wide streams)."),
        ("account" = Option<String>, Query, description = "Only this account's (`sub`)."),
        ("limit" = Option<u64>, Query, description = "At most this many listed: default 10,000, clamped to 1–10,000."),
        ("after" = Option<u64>, Query, description = "Only streams with a larger id: the previous page's `next`."),
    ),
    responses((status = 200, description = "The streams.", body = ConnectionList,
        links(("connection" = (operation_id = "get_connection",
            parameters(("id" = "$response.body#/connections/0/id")),
            description = "The first stream listed"))))),
)]
pub async fn connections(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<ConnectionList>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let limit = number(&query, "limit")?
        .unwrap_or(CONNECTIONS_LISTED)
        .clamp(1, CONNECTIONS_LISTED) as usize;
    let after = number(&query, "after")?.unwrap_or(0);
    let (tenant, account) = (filter(&query, "tenant"), filter(&query, "account"));
    // Start from the narrowest index, so a tenant admin's request costs
    // what its tenant holds, not what the hub holds (nor tells its size).
    let lookup = match (account, p.tenant.as_deref().or(tenant.filter(|t| !t.is_empty()))) {
        (Some(a), _) => Lookup::Account(a),
        (None, Some(t)) => Lookup::Tenant(t),
        (None, None) => Lookup::All,
    };
    let mut found = hub.registry.find(lookup, |s| {
        p.administers(s.principal.tenant.as_deref()) && matches(tenant, s.principal.tenant.as_deref())
    });
    // Ids grow as streams open, so id order is opening order, and a page
    // that starts after an id misses none opened before the next page.
    found.sort_unstable_by_key(|s| s.id);
    let page = &found[found.partition_point(|s| s.id <= after)..];
    let connections: Vec<Connection> = page.iter().take(limit).map(|s| describe(s)).collect();
    let next = if page.len() > limit {
        connections.last().map(|c| c.id.clone())
    } else {
        None
    };
    Ok(Json(ConnectionList {
        connections,
        total: found.len(),
        next,
    }))
}

/// The stream `id` if `p` administers it: another tenant's is "not found".
fn administered(hub: &HubInner, p: &Principal, id: &str) -> Result<Arc<Subscriber>, ApiError> {
    let not_found = || ApiError::not_found(format!("no connection `{id}`"));
    let n: u64 = id.parse().map_err(|_| not_found())?;
    hub.registry
        .get(n)
        .filter(|s| p.administers(s.principal.tenant.as_deref()))
        .ok_or_else(not_found)
}

/// One live stream
///
/// Another tenant's stream is `404`, never `403`.
#[utoipa::path(
    get,
    path = "/v1/connections/{id}",
    operation_id = "get_connection",
    tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The stream id.")),
    responses((status = 200, description = "The stream.", body = Connection,
        links(("kick" = (operation_id = "kick_connection",
            parameters(("id" = "$request.path.id")),
            description = "Cut this stream"))))),
)]
pub async fn connection(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Result<Json<Connection>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    Ok(Json(describe(&*administered(&hub, &p, &id)?)))
}

/// The last five minutes on this node
///
/// What is happening now, as this admin may see it: a tenant admin gets
/// its tenant's streams and counts, no latencies, no store or cluster
/// details. In a cluster every number is this node's.
#[utoipa::path(
    get,
    path = "/v1/overview",
    operation_id = "overview",
    tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "The overview.", body = Overview)),
)]
pub async fn overview(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Overview>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let scope = match p.tenant.as_deref() {
        Some(t) => Scope::Tenant(t),
        None => Scope::Hub,
    };
    let (total, mut by_tenant) = hub.registry.streams_by_tenant();
    by_tenant.retain(|(t, _)| p.administers(Some(t.as_str()).filter(|t| !t.is_empty())));
    by_tenant.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let streams = match scope {
        Scope::Hub => total,
        Scope::Tenant(_) => by_tenant.iter().map(|(_, n)| n).sum(),
    };
    let by_tenant: Vec<TenantStreams> = by_tenant
        .into_iter()
        .map(|(t, n)| TenantStreams {
            tenant: Some(t).filter(|t| !t.is_empty()),
            streams: n,
        })
        .collect();
    let (totals, samples) = hub.stats.snapshot(scope);
    let mut health = json!({"ready": !hub.is_draining(), "draining": hub.is_draining()});
    if matches!(scope, Scope::Hub) {
        let now = now_ms();
        health["history_head"] = hub.history.head().into();
        health["deny_rules"] = hub.deny.len().into();
        health["sse_tokens_outstanding"] = hub.auth.sse_tokens.outstanding(now).into();
        health["store"] = hub.store.as_ref().map_or(
            Value::Null,
            |s| json!({"events": s.event_count(), "bytes": s.file_bytes()}),
        );
        health["cluster"] = hub
            .cluster
            .as_ref()
            .map_or(Value::Null, |c| json!({"connected": c.connected()}));
        // The URLs and their errors name the hub's surroundings: an
        // operator's business, not `/readyz`'s, which anyone may read.
        health["jwks"] = serde_json::to_value(hub.auth.jwks.status()).unwrap_or_default();
    }
    // Ready as `/readyz` says it, for every admin.
    if hub.cluster.as_ref().is_some_and(|c| !c.connected()) {
        health["ready"] = false.into();
    }
    Ok(Json(Overview {
        now_ms: now_ms(),
        tenant: p.tenant,
        interval_ms: 1000,
        streams: OverviewStreams {
            total: streams,
            by_tenant,
        },
        totals,
        samples,
        health,
    }))
}

/// Cut a live stream
///
/// The stream gets `event: kicked` and ends; its client may reconnect (to
/// keep a user out, revoke). Audited (`admin_action`).
#[utoipa::path(
    delete,
    path = "/v1/connections/{id}",
    operation_id = "kick_connection",
    tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The stream id.")),
    responses((status = 200, description = "Closed.", body = Kicked)),
)]
pub async fn kick(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Result<Json<Kicked>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let target = administered(&hub, &p, &id)?;
    hub.registry.close(target.id, CloseReason::Kicked);
    let mut e = AuditEntry::about("admin_action", &p);
    e.stream = Some(target.id);
    e.detail = json!({"action": "kick", "account": target.principal.sub});
    hub.audit.record(e, now_ms());
    Ok(Json(Kicked { closed: true }))
}
