//! `GET /v1/events`: open a stream.
//!
//! Everything that can refuse the stream — credential, selectors,
//! `Last-Event-ID`, caps — is decided before the first byte, so a refusal is
//! always a real status code, never an error inside a `200` stream.

use super::error::ApiError;
use super::request::{client_ip, header_credential, last_event_id, query_pairs, ConnInfo};
use crate::auth::Source;
use crate::hub::{now_ms, Hub, HubInner};
use crate::queue::SubscriberQueue;
use crate::registry::{CapExceeded, StreamKind, Subscriber};
use crate::stream::{self, Start};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use herald_core::{Principal, Selector, SelectorSet};
use serde_json::json;
use std::sync::Arc;

/// Handler for `GET /v1/events`.
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
    let principal = hub.authenticate(source, ip, false)?;
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
    open(
        &hub,
        StreamRequest {
            principal,
            selectors,
            ip,
            kind: StreamKind::Events,
            start,
            connection,
            spend_token: sse_token_of(source),
            mercure: None,
        },
    )
    .await
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

/// Everything needed to open a stream, whatever the protocol.
pub struct StreamRequest {
    /// Who is subscribing.
    pub principal: Principal,
    /// What it asked for.
    pub selectors: SelectorSet,
    /// Client address.
    pub ip: std::net::IpAddr,
    /// Events or audit.
    pub kind: StreamKind,
    /// Where the replay starts.
    pub start: Start,
    /// The connection's kill switch, when served by Herald's own server.
    pub connection: Option<crate::kill::KillSwitch>,
    /// A single-use SSE token to spend once the stream is admitted.
    pub spend_token: Option<String>,
    /// Mercure subscription details, for Mercure subscribers.
    pub mercure: Option<Box<crate::registry::MercureSubscription>>,
}

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

/// Admits a stream against the caps and builds its response. Shared by the
/// native event stream, the audit stream and Mercure.
pub async fn open(hub: &Arc<HubInner>, r: StreamRequest) -> Result<Response, ApiError> {
    if hub.is_draining() {
        return Err(ApiError::draining());
    }
    let now = now_ms();
    let principal = Arc::new(r.principal);
    let subscriber = Subscriber {
        id: hub.registry.next_id(),
        principal: principal.clone(),
        selectors: r.selectors,
        ip: r.ip,
        opened_at_ms: now,
        queue: SubscriberQueue::new(hub.config.limits.queue_events, hub.config.limits.queue_bytes, now),
        kind: r.kind,
        connection: r.connection,
        mercure: r.mercure,
    };
    let admitted = match hub.registry.admit(subscriber) {
        Ok(a) => a,
        Err(cap) => {
            // The record names the account refused (tenant and sub), so
            // an operator can tell who is hitting a cap.
            let mut e = crate::audit::AuditEntry::about("cap_rejected", &principal);
            e.ip = Some(r.ip);
            e.detail = json!({"cap": cap.code()});
            hub.audit.record(e, now);
            metrics::counter!("herald_cap_rejections_total", "cap" => cap.code()).increment(1);
            return Err(ApiError::too_many(cap.code(), cap_message(cap), 5));
        }
    };
    // Spend a single-use SSE token now that the stream is admitted. If it
    // was spent concurrently by another request, this stream loses.
    if let Some(raw) = &r.spend_token {
        if let Err(e) = hub.auth.sse_tokens.redeem(raw, now, true) {
            drop(admitted);
            return Err(e.into());
        }
        // The spend is durable before the stream is answered, so a crash
        // cannot make a single-use token usable twice.
        if let Some(store) = &hub.store {
            store.flush().await;
        }
    }
    let sub = admitted.subscriber.clone();
    hub.audit_stream(
        "stream_opened",
        &sub,
        json!({"selectors": sub.selectors.as_strings(), "kind": format!("{:?}", sub.kind)}),
    );
    crate::mercure::subscriptions::announce(hub, &sub, true);
    let body = stream::body(hub.clone(), sub, admitted.slot, r.start);
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

fn cap_message(cap: CapExceeded) -> &'static str {
    match cap {
        CapExceeded::Session => "this session has as many streams open as it may",
        CapExceeded::Account => "this account has as many streams open as it may",
        CapExceeded::Ip => "this address has as many streams open as it may",
        CapExceeded::Hub => "the hub is at its stream capacity",
        CapExceeded::Audit => "this session has as many audit streams open as it may",
    }
}
