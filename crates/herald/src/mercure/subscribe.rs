//! Mercure subscribe: `GET /.well-known/mercure?topic=...`.

use super::subscriptions::MercureSubscription;
use crate::history::ResumePoint;
use crate::http::error::ApiError;
use crate::http::events::{open, StreamRequest};
use crate::http::request::{authorization, client_ip, cookie, last_event_id, query_pairs, ConnInfo};
use crate::hub::{now_ms, Hub};
use crate::queue::DirectWire;
use crate::registry::StreamKind;
use crate::stream::Start;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use herald_core::LastEventId;

/// Most topic selectors on one Mercure subscription.
pub const MAX_SELECTORS: usize = 1000;

/// The Mercure token of a request, in Mercure's order: `Authorization`
/// header, then the `authorization` query parameter, then the
/// `mercureAuthorization` cookie. The flag says whether it came from the
/// cookie (publishing with it needs an allowed origin).
pub fn token<B>(req: &Request<B>) -> (Option<String>, bool) {
    // Mercure clients send the bare token as well as `Bearer <token>`.
    if let Some((token, _)) = authorization(req.headers()) {
        return (Some(token.to_string()), false);
    }
    if let Some((_, t)) = query_pairs(req).into_iter().find(|(k, _)| k == "authorization") {
        return (Some(t), false);
    }
    match cookie(req.headers(), "mercureAuthorization") {
        Some(c) => (Some(c.to_string()), true),
        None => (None, false),
    }
}

/// Subscribe (Mercure)
///
/// A Mercure subscription: an endless `text/event-stream` with `:
/// connected`, the missed updates (`Last-Event-ID` / `lastEventID`;
/// `earliest` replays all history, an unknown id starts with `event:
/// reset`) or the retained snapshot, then live updates (`id:` the update
/// id, `event:` its type, `retry:`, `data:` lines), `: keepalive`
/// comments every `mercure.heartbeat` seconds, and the hub's control
/// events as on `/v1/events`. Private updates reach only subscribers whose
/// `mercure.subscribe` claim matches one of their topics. Without a token,
/// `mercure.anonymous` decides. `404` when Mercure is disabled.
#[utoipa::path(
    get,
    path = "/.well-known/mercure",
    operation_id = "mercure_subscribe",
    tag = "mercure",
    params(
        ("topic" = Vec<String>, Query, style = Form, explode, min_items = 1,
            description = "A topic selector (repeatable, at most 1000): an exact topic, `*`, an RFC 6570 URI \
                template, or a NATS-style wildcard.",
            example = json!(["https://example.com/books/{id}"])),
        ("lastEventID" = Option<String>, Query, max_length = 1024,
            description = "Resume after this update (the `Last-Event-ID` header wins); `earliest`: all history."),
        ("authorization" = Option<String>, Query, description = "A Mercure subscriber JWT."),
        ("Last-Event-ID" = Option<String>, Header, max_length = 1024, description = "Resume after this update."),
    ),
    security(("mercure_bearer" = []), ("mercure_query" = []), ("mercure_cookie" = []), ()),
    responses(
        (status = 200, description = "The subscription's stream.",
            content_type = "text/event-stream", body = ref("#/components/schemas/MercureStreamEvent"),
            headers(
                ("last-event-id" = String, description = "The hub's newest update id when the stream opened (`earliest` when none)."),
                ("cache-control" = String, description = "`no-cache`"),
            )),
    )
)]
pub async fn subscribe(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let query = query_pairs(&req);
    let ip = client_ip(&req, &hub.config);
    let mercure = super::verifier(&hub)?;
    let (token, from_cookie) = token(&req);
    if from_cookie {
        // As for native streams: another site could open streams with the
        // user's cookie, taking the account's slots. Allowed: the Mercure
        // CORS origins (`*` allows any) and the hub's own.
        let mut allowed = hub.config.mercure.cors_origins.clone();
        allowed.extend(crate::http::request::own_origins(&req, hub.config.tls_cert.is_some()));
        if let Err(refused) = crate::http::request::check_cookie_stream(req.headers(), &allowed) {
            return Err(crate::http::request::refuse_origin(
                &hub,
                ip,
                req.uri().path(),
                &refused,
                "a stream opened with the mercureAuthorization cookie must come from one of mercure.cors_origins or the hub's own origin",
            ));
        }
    }
    let (principal, payload) = match token {
        Some(t) => {
            hub.prepare_mercure_subscriber(&t, ip).await;
            let mut payload = None;
            let p = hub.verify(ip, |now| {
                mercure.subscriber(&t, now).map(|tok| {
                    payload = tok.claim.payload;
                    tok.principal
                })
            })?;
            (p, payload)
        }
        None if hub.config.mercure.anonymous => {
            hub.check_rate(ip)?;
            (mercure.anonymous(now_ms()), None)
        }
        None => {
            hub.check_rate(ip)?;
            return Err(ApiError::missing_credential());
        }
    };
    // Only now, with the subscriber known: up to 1,000 selectors, each
    // possibly a URI template compiled to a regex, are not parsed for a
    // request that is refused anyway.
    let selectors = crate::http::events::selectors_from_query(&query, MAX_SELECTORS)?;
    let start = match last_event_id(&req, &query, "lastEventID")? {
        None => Start::Retained,
        // Mercure's keyword for "everything history holds".
        Some(LastEventId::Client(k)) if k == "earliest" => Start::Resume(ResumePoint::After(0)),
        // Mercure answers an unknown id with what it has; Herald says so
        // explicitly with `event: reset`.
        Some(id) => Start::Resume(
            hub.history
                .resolve(&id, principal.tenant.as_deref())
                .await
                .unwrap_or(ResumePoint::Reset),
        ),
    };
    let head = hub.history.head();
    let subscriber = format!("urn:uuid:{}", super::subscriptions::uuid_v4());
    let connection = req.extensions().get::<ConnInfo>().map(|c| c.kill.clone());
    let direct = req.extensions().get::<DirectWire>().cloned();
    let mut resp = open(
        &hub,
        StreamRequest {
            principal,
            selectors,
            ip,
            kind: StreamKind::Events,
            protocol: "mercure",
            start,
            connection,
            direct,
            spend_token: None,
            extension: Some(Box::new(MercureSubscription { subscriber, payload })),
        },
    )
    .await?;
    let cursor = if head == 0 {
        "earliest".to_string()
    } else {
        head.to_string()
    };
    if let Ok(v) = HeaderValue::from_str(&cursor) {
        resp.headers_mut().insert("last-event-id", v);
    }
    Ok(resp)
}
