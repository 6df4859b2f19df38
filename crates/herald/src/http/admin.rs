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
use axum::response::Response;
use axum::Json;
use herald_core::{LastEventId, Principal, SelectorSet};
use serde_json::{json, Value};
use std::sync::Arc;

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

/// `GET /v1/audit?after=ID&before=ID&limit=N&kind=K&tenant=T&account=A`:
/// forward from `after`, or (with `before`) the newest records older than
/// `before`, for paging back. Oldest first either way.
pub async fn audit_page(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
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
    let limit = number(&query, "limit")?.unwrap_or(100).clamp(1, 1000) as usize;
    let (kind, tenant, account) = (
        filter(&query, "kind"),
        filter(&query, "tenant"),
        filter(&query, "account"),
    );
    let wanted = |r: &crate::audit::AuditRecord| {
        visible_to(&p, r)
            && kind.is_none_or(|k| r.kind == k)
            && matches(tenant, r.tenant.as_deref())
            && matches(account, r.account.as_deref())
    };
    let records = match before {
        Some(before) => hub.audit.page_before(before, limit, wanted),
        None => hub.audit.page(after.unwrap_or(0), limit, wanted),
    };
    let next = records.last().map_or(after.unwrap_or(0), |r| r.id);
    let prev = records.first().map(|r| r.id);
    let records: Vec<&crate::audit::AuditRecord> = records.iter().map(|r| r.as_ref()).collect();
    Ok(Json(json!({"records": records, "next": next, "prev": prev})))
}

/// `GET /v1/audit/events`: the audit log as SSE, resumable with
/// `Last-Event-ID` (a record id).
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
            spend_token,
            extension: None,
        },
    )
    .await
}

/// One stream as an operator sees it. Never a credential: the session
/// only as its hash prefix.
fn describe(s: &Subscriber) -> Value {
    let (queue, sent) = s.queue.depth_and_sent();
    json!({
        "id": s.id.to_string(),
        "kind": s.kind.as_str(),
        "protocol": s.protocol,
        "account": s.principal.sub,
        "tenant": s.principal.tenant,
        "session": s.principal.session.map(|h| h.prefix()),
        "ip": s.ip.to_string(),
        "selectors": s.selectors.as_strings(),
        "roles": s.principal.roles,
        "groups": s.principal.groups,
        "opened_at": s.opened_at_ms / 1000,
        "expires_at": s.principal.expires_at_ms.map(|ms| ms / 1000),
        "queue": queue,
        "sent": sent,
    })
}

/// Most connections one answer lists.
const CONNECTIONS_LISTED: u64 = 10_000;

/// `GET /v1/connections?tenant=T&account=A&limit=N`, oldest first.
pub async fn connections(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let limit = number(&query, "limit")?
        .unwrap_or(CONNECTIONS_LISTED)
        .clamp(1, CONNECTIONS_LISTED) as usize;
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
    found.sort_unstable_by_key(|s| s.id);
    let list: Vec<Value> = found.iter().take(limit).map(|s| describe(s)).collect();
    Ok(Json(json!({"connections": list, "total": found.len()})))
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

/// `GET /v1/connections/{id}`.
pub async fn connection(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    Ok(Json(describe(&*administered(&hub, &p, &id)?)))
}

/// `GET /v1/overview`: what is happening now, as this admin may see it
/// (a tenant admin: its tenant's streams and counts, no latencies, no
/// store or cluster details).
pub async fn overview(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
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
    let by_tenant: Vec<Value> = by_tenant
        .into_iter()
        .map(|(t, n)| json!({"tenant": Some(t).filter(|t| !t.is_empty()), "streams": n}))
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
    }
    // Ready as `/readyz` says it, for every admin.
    if hub.cluster.as_ref().is_some_and(|c| !c.connected()) {
        health["ready"] = false.into();
    }
    Ok(Json(json!({
        "now_ms": now_ms(),
        "tenant": p.tenant,
        "interval_ms": 1000,
        "streams": {"total": streams, "by_tenant": by_tenant},
        "totals": totals,
        "samples": samples,
        "health": health,
    })))
}

/// `DELETE /v1/connections/{id}`: cut a stream (`event: kicked`).
pub async fn kick(State(hub): State<Hub>, Path(id): Path<String>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let target = administered(&hub, &p, &id)?;
    hub.registry.close(target.id, CloseReason::Kicked);
    let mut e = AuditEntry::about("admin_action", &p);
    e.stream = Some(target.id);
    e.detail = json!({"action": "kick", "account": target.principal.sub});
    hub.audit.record(e, now_ms());
    Ok(Json(json!({"closed": true})))
}
