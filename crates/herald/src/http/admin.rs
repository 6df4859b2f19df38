//! Admin endpoints: the audit log (JSON page and SSE stream) and live
//! connections. A tenant admin sees only its tenant; another tenant's
//! resources answer `404`, never `403`, so their existence does not leak.

use super::error::ApiError;
use super::request::{client_ip, header_credential, last_event_id, query_pairs, ConnInfo};
use crate::audit::AuditEntry;
use crate::audit_stream::visible_to;
use crate::auth::Source;
use crate::hub::{now_ms, Hub, HubInner};
use crate::queue::CloseReason;
use crate::registry::{Lookup, StreamKind};
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
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request("invalid_request", format!("`{key}` must be a whole number")))
        })
        .transpose()
}

/// `GET /v1/audit?after=ID&limit=N`.
pub async fn audit_page(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let after = number(&query, "after")?.unwrap_or(0);
    let limit = number(&query, "limit")?.unwrap_or(100).clamp(1, 1000) as usize;
    let records = hub.audit.page(after, limit, |r| visible_to(&p, r));
    let next = records.last().map_or(after, |r| r.id);
    let records: Vec<&crate::audit::AuditRecord> = records.iter().map(|r| r.as_ref()).collect();
    Ok(Json(json!({"records": records, "next": next})))
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
            start: Start::AuditAfter(after),
            connection,
            spend_token,
            extension: None,
        },
    )
    .await
}

/// `GET /v1/connections`.
pub async fn connections(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let list: Vec<Value> = hub
        .registry
        .find(Lookup::All, |s| p.administers(s.principal.tenant.as_deref()))
        .iter()
        .map(|s| {
            json!({
                "id": s.id.to_string(),
                "kind": if s.kind == StreamKind::Audit { "audit" } else { "events" },
                "account": s.principal.sub,
                "tenant": s.principal.tenant,
                "session": s.principal.session.map(|h| h.prefix()),
                "ip": s.ip.to_string(),
                "selectors": s.selectors.as_strings(),
                "opened_at": s.opened_at_ms / 1000,
            })
        })
        .collect();
    Ok(Json(json!({"connections": list})))
}

/// `DELETE /v1/connections/{id}`: cut a stream (`event: kicked`).
pub async fn kick(State(hub): State<Hub>, Path(id): Path<String>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let p = admin(&hub, &req, &query, false)?;
    let not_found = || ApiError::not_found(format!("no connection `{id}`"));
    let n: u64 = id.parse().map_err(|_| not_found())?;
    let target = hub
        .registry
        .find(Lookup::All, |s| {
            s.id == n && p.administers(s.principal.tenant.as_deref())
        })
        .into_iter()
        .next()
        .ok_or_else(not_found)?;
    hub.registry.close(target.id, CloseReason::Kicked);
    let mut e = AuditEntry::about("admin_action", &p);
    e.stream = Some(target.id);
    e.detail = json!({"action": "kick", "account": target.principal.sub});
    hub.audit.record(e, now_ms());
    Ok(Json(json!({"closed": true})))
}
