//! The Mercure subscriptions API and subscription events: who is
//! subscribed to what, as JSON-LD, for subscribers whose claim allows it.
//!
//! Subscription events are private updates on
//! `/.well-known/mercure/subscriptions/{topic}/{subscriber}` published when
//! a Mercure stream opens (`"active": true`) and closes (`false`).

use super::RESERVED_PREFIX;
use crate::http::error::ApiError;
use crate::http::request::client_ip;
use crate::hub::{Hub, HubInner};
use crate::registry::{Lookup, Subscriber};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::{Audience, EventDraft, Principal};
use serde_json::{json, Value};
use std::sync::Arc;

const CONTEXT: &str = "https://mercure.rocks/";

/// What the subscriptions API shows about a Mercure stream; kept as the
/// stream's [`Subscriber::extension`].
#[derive(Debug, Clone)]
pub struct MercureSubscription {
    /// `urn:uuid:...`, unique per stream.
    pub subscriber: String,
    /// The `mercure.payload` claim.
    pub payload: Option<Value>,
}

/// The Mercure details of a stream, if a Mercure subscriber opened it.
fn mercure_of(s: &Subscriber) -> Option<&MercureSubscription> {
    s.extension.as_ref()?.downcast_ref::<MercureSubscription>()
}

/// A random (version 4) UUID, formatted.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The IRI of one subscription.
fn subscription_id(topic: &str, subscriber: &str) -> String {
    format!(
        "{RESERVED_PREFIX}/subscriptions/{}/{}",
        escape(topic),
        escape(subscriber)
    )
}

/// The JSON-LD of one subscription of `s` (one per topic selector).
fn describe(s: &Subscriber, topic: &str, active: bool) -> Option<Value> {
    let m = mercure_of(s)?;
    let mut v = json!({
        "id": subscription_id(topic, &m.subscriber),
        "type": "Subscription",
        "subscriber": m.subscriber,
        "topic": topic,
        "active": active,
    });
    if let Some(p) = &m.payload {
        v["payload"] = p.clone();
    }
    Some(v)
}

/// Announces subscription events for `s` when the API is enabled.
///
/// They are delivered live and never stored: a subscription event says who
/// is connected now, and storing them let a few anonymous clients with many
/// topics each flush everyone's resume history. They are private updates
/// on the subscription's IRI, so only Mercure subscribers whose
/// `mercure.subscribe` claim covers it see them (the one visibility rule
/// decides, as for every event).
pub fn announce(hub: &Arc<HubInner>, s: &Subscriber, active: bool) {
    if !hub.config.mercure.subscriptions || mercure_of(s).is_none() {
        return;
    }
    let now = crate::hub::now_ms();
    let mut delivered = 0;
    for sel in &s.selectors.0 {
        let topic = sel.as_str();
        let Some(mut v) = describe(s, topic, active) else {
            continue;
        };
        v["@context"] = CONTEXT.into();
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let event = EventDraft {
            topics: vec![id],
            event_type: None,
            data: v.to_string(),
            id: None,
            audience: Audience {
                private: true,
                ..Audience::public()
            },
            retain: false,
            retry: None,
            unique_id: false,
        }
        .into_unnumbered(now);
        delivered += hub.registry.dispatch(&event, now);
    }
    metrics::counter!("herald_deliveries_total").increment(delivered as u64);
}

/// Authenticates a subscriber allowed to see `path`.
fn authorize(hub: &Arc<HubInner>, req: &Request<Body>, path: &str) -> Result<Principal, ApiError> {
    if !hub.config.mercure.subscriptions {
        return Err(ApiError::not_found("the subscriptions API is not enabled"));
    }
    let ip = client_ip(req, &hub.config);
    let (token, _) = super::subscribe::token(req);
    let Some(token) = token else {
        hub.check_rate(ip)?;
        return Err(ApiError::missing_credential());
    };
    let mercure = super::verifier(hub)?;
    let p = hub.verify(ip, |now| mercure.subscriber(&token, now).map(|t| t.principal))?;
    let allowed = p.private_updates.as_ref().is_some_and(|s| s.matches(path));
    if !allowed {
        return Err(ApiError::forbidden(
            "topic_forbidden",
            "the token's mercure.subscribe claim does not cover the subscriptions API",
        ));
    }
    Ok(p)
}

fn respond(req: &Request<Body>, body: Value) -> Response {
    let text = body.to_string();
    let etag = format!("\"{}\"", &blake3::hash(text.as_bytes()).to_hex()[..16]);
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/ld+json")], text).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn collect(hub: &HubInner, topic: Option<&str>, subscriber: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for s in hub.registry.find(Lookup::All, |s| mercure_of(s).is_some()) {
        let Some(m) = mercure_of(&s) else { continue };
        if subscriber.is_some_and(|id| id != m.subscriber) {
            continue;
        }
        for sel in &s.selectors.0 {
            if topic.is_some_and(|t| t != sel.as_str()) {
                continue;
            }
            out.extend(describe(&s, sel.as_str(), true));
        }
    }
    out
}

fn last_event_id(hub: &HubInner) -> String {
    match hub.history.head() {
        0 => "earliest".into(),
        n => n.to_string(),
    }
}

/// A `Subscriptions` collection document for `path`.
fn collection(hub: &HubInner, path: String, topic: Option<&str>) -> Value {
    json!({
        "@context": CONTEXT,
        "id": path,
        "type": "Subscriptions",
        "lastEventID": last_event_id(hub),
        "subscriptions": collect(hub, topic, None),
    })
}

/// A Mercure subscription as the subscriptions API shows it (JSON-LD),
/// described for the OpenAPI document.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(as = MercureSubscription)]
#[allow(dead_code)]
pub struct SubscriptionSchema {
    /// `https://mercure.rocks/` (on a single subscription).
    #[serde(rename = "@context")]
    context: Option<String>,
    /// The subscription's IRI.
    id: String,
    /// `Subscription`.
    #[serde(rename = "type")]
    kind: String,
    /// `urn:uuid:...`.
    subscriber: String,
    /// The topic selector.
    topic: String,
    /// Whether the stream is open.
    active: bool,
    /// The token's `mercure.payload` claim.
    payload: Option<Value>,
    /// The hub's newest update id (on a single subscription).
    #[serde(rename = "lastEventID")]
    last_event_id: Option<String>,
}

/// A collection of Mercure subscriptions (JSON-LD).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(as = MercureSubscriptions)]
#[allow(dead_code)]
pub struct SubscriptionsSchema {
    /// `https://mercure.rocks/`.
    #[serde(rename = "@context")]
    context: String,
    /// The collection's IRI.
    id: String,
    /// `Subscriptions`.
    #[serde(rename = "type")]
    kind: String,
    /// The hub's newest update id (`earliest` when none).
    #[serde(rename = "lastEventID")]
    last_event_id: String,
    /// The subscriptions.
    subscriptions: Vec<SubscriptionSchema>,
}

/// Every Mercure subscription
///
/// Needs a subscriber token whose `mercure.subscribe` matches the URL
/// path; `404` unless `mercure.subscriptions` is on.
#[utoipa::path(
    get,
    path = "/.well-known/mercure/subscriptions",
    operation_id = "mercure_subscriptions",
    tag = "mercure",
    security(("mercure_bearer" = []), ("mercure_query" = []), ("mercure_cookie" = [])),
    params(("If-None-Match" = Option<String>, Header, description = "An entity tag from an earlier answer.")),
    responses(
        (status = 200, description = "The subscriptions.", content_type = "application/ld+json",
            body = SubscriptionsSchema, headers(("etag" = String, description = "The answer's entity tag."))),
        (status = 304, description = "Unchanged since `If-None-Match`."),
    )
)]
pub async fn all(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let path = format!("{RESERVED_PREFIX}/subscriptions");
    authorize(&hub, &req, &path)?;
    Ok(respond(&req, collection(&hub, path, None)))
}

/// The Mercure subscriptions to one topic
///
/// `topic` is URL-encoded. Needs a subscriber token whose
/// `mercure.subscribe` matches the URL path.
#[utoipa::path(
    get,
    path = "/.well-known/mercure/subscriptions/{topic}",
    operation_id = "mercure_topic_subscriptions",
    tag = "mercure",
    security(("mercure_bearer" = []), ("mercure_query" = []), ("mercure_cookie" = [])),
    params(
        ("topic" = String, Path, description = "The topic selector, URL-encoded."),
        ("If-None-Match" = Option<String>, Header, description = "An entity tag from an earlier answer."),
    ),
    responses(
        (status = 200, description = "The subscriptions.", content_type = "application/ld+json",
            body = SubscriptionsSchema, headers(("etag" = String, description = "The answer's entity tag."))),
        (status = 304, description = "Unchanged since `If-None-Match`."),
    )
)]
pub async fn by_topic(
    State(hub): State<Hub>,
    Path(topic): Path<String>,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let path = format!("{RESERVED_PREFIX}/subscriptions/{}", escape(&topic));
    authorize(&hub, &req, &path)?;
    Ok(respond(&req, collection(&hub, path, Some(&topic))))
}

/// One Mercure subscription
///
/// `topic` and `subscriber` are URL-encoded; `404` when there is no such
/// subscription.
#[utoipa::path(
    get,
    path = "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
    operation_id = "mercure_subscription",
    tag = "mercure",
    security(("mercure_bearer" = []), ("mercure_query" = []), ("mercure_cookie" = [])),
    params(
        ("topic" = String, Path, description = "The topic selector, URL-encoded."),
        ("subscriber" = String, Path, description = "The subscriber (`urn:uuid:...`), URL-encoded."),
        ("If-None-Match" = Option<String>, Header, description = "An entity tag from an earlier answer."),
    ),
    responses(
        (status = 200, description = "The subscription.", content_type = "application/ld+json",
            body = SubscriptionSchema, headers(("etag" = String, description = "The answer's entity tag."))),
        (status = 304, description = "Unchanged since `If-None-Match`."),
    )
)]
pub async fn one(
    State(hub): State<Hub>,
    Path((topic, subscriber)): Path<(String, String)>,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let hub = hub.inner.clone();
    let path = subscription_id(&topic, &subscriber);
    authorize(&hub, &req, &path)?;
    let mut found = collect(&hub, Some(&topic), Some(&subscriber));
    let Some(mut body) = found.pop() else {
        return Err(ApiError::not_found("no such subscription"));
    };
    body["@context"] = CONTEXT.into();
    body["lastEventID"] = last_event_id(&hub).into();
    Ok(respond(&req, body))
}
