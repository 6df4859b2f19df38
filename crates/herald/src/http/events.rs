//! `GET /v1/events`: open a stream.
//!
//! Everything that can refuse the stream — credential, selectors,
//! `Last-Event-ID`, caps — is decided before the first byte, so a refusal is
//! always a real status code, never an error inside a `200` stream.

use super::error::ApiError;
use super::request::{client_ip, cookies, header_credential, host, last_event_id, query_pairs, ConnInfo};
use crate::auth::Source;
use crate::hub::{Hub, HubInner};
use crate::queue::DirectWire;
use crate::registry::StreamKind;
use crate::stream::Start;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use herald_core::{Principal, Selector, SelectorSet};
use std::sync::Arc;

/// Open an event stream
///
/// Everything that can refuse the stream (credential, selectors,
/// `Last-Event-ID`, caps) is decided before the first byte, so a refusal
/// is a real status code. The `200` body is an endless `text/event-stream`:
///
/// * `: connected` first, then, without `Last-Event-ID`, the retained
///   snapshot (the latest retained event of each audience the credential
///   may see, per matching topic); with `Last-Event-ID`, every missed event
///   from history; then live events, with no gap and no duplicate.
/// * An event: `id: <hub id>`, `event: <type>` (omitted for `message`),
///   `retry: <ms>` when the publisher set it, one `data:` line per line of
///   data, a blank line.
/// * `: keepalive` comments every `limits.keepalive_secs` when idle.
/// * Control events (`reset`, `revoked`, `expired`, `evicted`, `kicked`,
///   `overflow`, `shutdown`) carry `data: {"reason": "..."}` and, except
///   `reset`, end the stream; only `overflow` carries an `id:` line (the
///   last event received; reconnect with it as `Last-Event-ID`).
///
/// A stream opened with `?token=st_...` also sets a reconnect grant
/// cookie (`herald_rg_<token id>`, `HttpOnly`, `SameSite=Strict`), so the
/// same URL reopens it after a drop while the token lives.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "open_event_stream",
    tag = "streams",
    params(
        ("topic" = Vec<String>, Query, style = Form, explode, min_items = 1,
            description = "A selector (repeatable, at least one, at most `limits.max_selectors`): `*`, an exact \
                topic, a NATS-style wildcard (`orders.*`, `orders.>`) or an RFC 6570 URI template.",
            example = json!(["*"])),
        ("last_event_id" = Option<String>, Query, max_length = 1024,
            description = "Resume after this event (the `Last-Event-ID` header wins): a hub id or a client id."),
        ("token" = Option<String>, Query,
            description = "An SSE token (`st_...`); a JWT or API key in a URL is refused."),
        ("Last-Event-ID" = Option<String>, Header, max_length = 1024,
            description = "Resume after this event, as `EventSource` sends it on reconnect; empty is no id."),
    ),
    security(("bearer" = []), ("token" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The stream: `: connected`, the snapshot or the missed events, then live \
            events, keepalive comments and at most one closing control event.",
            content_type = "text/event-stream", body = ref("#/components/schemas/NativeStreamEvent"),
            headers(
                ("cache-control" = String, description = "`no-cache`"),
                ("x-accel-buffering" = String, description = "`no`: proxies must not buffer the stream"),
                ("set-cookie" = String, description = "The reconnect grant, for a stream opened with `?token=`"),
            )),
    )
)]
pub async fn subscribe(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let ip = client_ip(&req, &hub.config);
    let token = query.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str());
    let source = match token {
        Some(t) => Some(Source::Query(t)),
        None => header_credential(req.headers()),
    };
    // Who is asking is settled before any other work: an unauthenticated
    // request must not get the hub to parse and compile up to
    // `max_selectors` selectors. The token is not spent yet: it is spent
    // only once the stream is admitted, so a 429 does not burn it.
    let sse_token = token.filter(|t| t.starts_with(crate::auth::sse_token::PREFIX));
    let (principal, spend_token) = match sse_token.filter(|raw| presents_grant(&hub, &req, raw)) {
        Some(raw) => reopen_with_grant(&hub, raw, ip).await?,
        None => (hub.authenticate_stream(source, ip).await?, sse_token_of(source)),
    };
    let grant_expires_at_ms = principal.expires_at_ms;
    let selectors = selectors_from_query(&query, hub.config.limits.max_selectors)?;
    authorize_selectors(&principal, &selectors)?;

    let start = match last_event_id(&req, &query, "last_event_id")? {
        None => Start::Retained,
        Some(id) => {
            let point = hub
                .history
                .resolve(&id, principal.tenant.as_deref())
                .await
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID names an event this hub never issued",
                    )
                })?;
            Start::Resume(point)
        }
    };
    let connection = req.extensions().get::<ConnInfo>().map(|c| c.kill.clone());
    let direct = req.extensions().get::<DirectWire>().cloned();
    let mut resp = open(
        &hub,
        StreamRequest {
            principal,
            selectors,
            ip,
            kind: StreamKind::Events,
            protocol: "native",
            start,
            connection,
            direct,
            spend_token,
            extension: None,
        },
    )
    .await?;
    if let (Some(raw), Some(expires_at_ms)) = (sse_token, grant_expires_at_ms) {
        if let Some(cookie) = grant_cookie(&hub, &req, raw, expires_at_ms) {
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
    Ok(resp)
}

/// Whether the request carries the reconnect grant of the SSE token in its
/// URL ([`crate::auth::sse_token::grant_cookie_name`]): the cookie a
/// browser got when it first opened a stream with that token.
fn presents_grant(hub: &HubInner, req: &Request<Body>, raw: &str) -> bool {
    let name = crate::auth::sse_token::grant_cookie_name(raw);
    let key = grant_key(hub);
    // Every cookie of that name is tried: one planted first by another site
    // of the same domain must not hide the real grant, and matches nothing
    // without the key.
    let mut values = cookies(req.headers(), &name);
    values.any(|value| crate::auth::sse_token::grant_matches(&key, raw, value))
}

fn grant_key(hub: &HubInner) -> [u8; 32] {
    hub.auth.session_key.subkey(crate::auth::sse_token::GRANT_CONTEXT)
}

/// Reopens a stream with a spent single-use token and its reconnect grant.
/// Everything else is judged as for a first open: the failed-authentication
/// limit, the deny rules (a revoked session's grant opens nothing), the
/// token's expiry; on a cluster node the token may come from the ledger.
/// Returns the principal and the token if it still has to be spent.
async fn reopen_with_grant(
    hub: &HubInner,
    raw: &str,
    ip: std::net::IpAddr,
) -> Result<(Principal, Option<String>), ApiError> {
    hub.auth.sse_tokens.prefetch(raw).await;
    let mut must_spend = false;
    let principal = hub.verify(ip, |now| {
        let (p, spend) = hub.auth.sse_tokens.redeem_granted(raw, now)?;
        must_spend = spend;
        Ok(p)
    })?;
    Ok((principal, must_spend.then(|| raw.to_string())))
}

/// The `Set-Cookie` of a stream opened with SSE token `raw`: its reconnect
/// grant, `HttpOnly` (no script reads it), `SameSite=Strict` (no other site
/// makes the browser send it), scoped to this stream path and living as
/// long as the token. `Secure` unless the page is on a loopback host over
/// plain HTTP, where browsers would drop a `Secure` cookie.
fn grant_cookie(hub: &HubInner, req: &Request<Body>, raw: &str, expires_at_ms: u64) -> Option<HeaderValue> {
    let max_age = expires_at_ms.saturating_sub(crate::clock::now_ms()).div_ceil(1000);
    if max_age == 0 {
        return None;
    }
    // Behind `Router::nest` the handler sees the path without its prefix;
    // the browser's path is the original one.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    let secure = if hub.config.tls_cert.is_some() || !loopback_host(req) {
        "; Secure"
    } else {
        ""
    };
    let name = crate::auth::sse_token::grant_cookie_name(raw);
    let value = crate::auth::sse_token::grant_value(&grant_key(hub), raw);
    HeaderValue::from_str(&format!(
        "{name}={value}; Max-Age={max_age}; Path={path}; HttpOnly; SameSite=Strict{secure}"
    ))
    .ok()
}

/// Whether the request names a loopback host (`localhost`, `127.x`, `[::1]`).
fn loopback_host(req: &Request<Body>) -> bool {
    let host = host(req).unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `topic` selectors of a subscribe request: at least one, at most `max`.
pub fn selectors_from_query(query: &[(String, String)], max: usize) -> Result<SelectorSet, ApiError> {
    let topics: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "topic")
        .map(|(_, v)| v.as_str())
        .collect();
    if topics.is_empty() {
        return Err(ApiError::bad_request(
            "topics_required",
            "give at least one `topic` selector",
        ));
    }
    if topics.len() > max {
        return Err(ApiError::bad_request(
            "too_many_selectors",
            format!("at most {max} topic selectors per stream"),
        ));
    }
    Ok(SelectorSet::parse(&topics)?)
}

/// Refuses selectors outside what the credential may subscribe to. Delivery
/// checks every event against the credential again; this gives the client a
/// clear `403` instead of a silent stream.
///
/// `*` asks for everything the credential allows, so any credential that
/// may subscribe to something may ask for it: delivery still admits only
/// events on topics its own selectors match
/// ([`herald_core::visibility::is_visible`]). A credential that may
/// subscribe to nothing is refused outright.
fn authorize_selectors(p: &Principal, selectors: &SelectorSet) -> Result<(), ApiError> {
    for s in &selectors.0 {
        let allowed = match s {
            Selector::All => !p.subscribe.is_empty(),
            _ => p.subscribe.0.iter().any(|allowed| allowed.covers(s)),
        };
        if !allowed {
            return Err(ApiError::forbidden(
                "topic_forbidden",
                format!("this credential may not subscribe to `{}`", s.as_str()),
            ));
        }
    }
    Ok(())
}

pub use crate::hub::StreamRequest;

/// The raw SSE token in a credential source, if it is one.
pub fn sse_token_of(source: Option<Source<'_>>) -> Option<String> {
    match source {
        Some(Source::Query(raw) | Source::Bearer(raw) | Source::Cookie(raw))
            if raw.starts_with(crate::auth::sse_token::PREFIX) =>
        {
            Some(raw.to_string())
        }
        _ => None,
    }
}

/// Admits a stream ([`HubInner::admit_stream`]) and answers it as SSE.
/// Shared by the native event stream, the audit stream and Mercure.
pub async fn open(hub: &Arc<HubInner>, r: StreamRequest) -> Result<Response, ApiError> {
    let body = hub.admit_stream(r).await?;
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}
