//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the whole HTTP API
//! (docs/openapi.md), generated from the handlers' `#[utoipa::path]`
//! attributes and the answer types they serialize, so it follows the code.
//!
//! Two things utoipa's attributes cannot say are added here, once, when
//! the document is first asked for: every error status of every operation
//! with the `error.code` values it can carry ([`ERRORS`], from the
//! handlers, the hub's domain errors and `herald-core`'s checks), and the
//! shape of the events on each stream (SSE frames, with the JSON their
//! control events carry).

use super::error::{ErrorBody, ErrorDetail};
use super::error_catalog::{error_responses, ERRORS};
use super::{admin, events, invalidation, ops, publish, revocations, tokens};
use crate::invalidation::MAX_SEGMENTS;
use crate::mercure;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "An audience-scoped, revocation-aware Server-Sent Events hub. Every error is \
            `{\"error\": {\"code\", \"message\"}}`; each operation lists the codes each status can carry. \
            A method a path does not list answers `405 method_not_allowed` with `Allow`. Every response \
            carries `Link: </.well-known/mercure>; rel=\"mercure\"`; every JSON answer but this document \
            `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`. The prose reference is \
            docs/api.md and docs/mercure.md in Herald's source.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "The hub serving this document")),
    paths(
        ops::landing,
        ops::admin_page,
        ops::console_js,
        ops::console_css,
        ops::admin_redirect,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        serve,
        events::subscribe,
        publish::publish,
        tokens::mint,
        revocations::revoke,
        admin::audit_page,
        admin::audit_stream,
        admin::connections,
        admin::connection,
        admin::kick,
        admin::overview,
        invalidation::invalidate,
        invalidation::state,
        invalidation::control,
        invalidation::tags,
        mercure::subscribe::subscribe,
        mercure::publish::publish,
        mercure::subscriptions::all,
        mercure::subscriptions::by_topic,
        mercure::subscriptions::one,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security),
    tags(
        (name = "streams", description = "Event streams (`text/event-stream`)"),
        (name = "publish", description = "Publishing events"),
        (name = "tokens", description = "SSE tokens for browsers"),
        (name = "revocations", description = "Ending access now, and keeping it ended"),
        (name = "admin", description = "Audit log, live connections, the overview"),
        (name = "invalidation", description = "Tag invalidation (docs/invalidation.md)"),
        (name = "mercure", description = "The Mercure protocol (docs/mercure.md)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "console", description = "The operator console's files"),
    )
)]
struct ApiDoc;

/// The security schemes the operations name.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        let schemes = [
            (
                "bearer",
                bearer(
                    "`Authorization: Bearer`: a user JWT, a backend API key (`hk_...`) or, on streams only, \
                     an SSE token (`st_...`).",
                ),
            ),
            (
                "token",
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    "token",
                    "`?token=st_...` on stream endpoints: SSE tokens only (a JWT or API key in a URL is refused).",
                ))),
            ),
            (
                "cookie",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    "herald_token",
                    "The `herald_token` cookie: a user JWT or an SSE token, never an API key. A write \
                     (or a stream) with it must come from the hub's own origin or one of `cors_origins` \
                     (`403 origin_forbidden`).",
                ))),
            ),
            (
                "mercure_bearer",
                bearer("`Authorization: Bearer <Mercure JWT>` (the bare token is accepted too)."),
            ),
            (
                "mercure_query",
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    "authorization",
                    "`?authorization=<Mercure JWT>`, as Mercure accepts it.",
                ))),
            ),
            (
                "mercure_cookie",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    "mercureAuthorization",
                    "The `mercureAuthorization` cookie; a publish with it must come from one of \
                     `mercure.publish_origins`.",
                ))),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
    }
}

/// utoipa 5 writes a Link Object's fields in snake case; OpenAPI names
/// them `operationId`, `operationRef` and `requestBody`.
fn camel_case_links(response: &mut Value) {
    let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else {
        return;
    };
    for link in links.values_mut().filter_map(Value::as_object_mut) {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(snake) {
                link.insert(camel.into(), v);
            }
        }
    }
}

/// A parameter is absent or a string, never JSON `null`; utoipa marks
/// an `Option` parameter nullable.
fn not_null(param: &mut Value) {
    if let Some(types) = param.pointer_mut("/schema/type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
        if let [one] = types.as_slice() {
            let one = one.clone();
            param["schema"]["type"] = one;
        }
    }
}

/// A `topic` selector is 1 to 1024 bytes without control characters
/// (`herald_core::selector`); the attributes cannot bound an array
/// parameter's items.
fn selector_items(param: &mut Value) {
    if param["name"] == "topic" && param["in"] == "query" {
        param["schema"]["items"] = json!({
            "type": "string",
            "minLength": 1,
            "maxLength": herald_core::selector::MAX_SELECTOR_LEN,
            "pattern": NO_CONTROL,
        });
    }
}

/// A topic events are published to: 1 to 1024 bytes without control
/// characters, not starting with `$` (the hub's own), without `{` (a
/// template is a selector, not a topic).
fn topic_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": herald_core::selector::MAX_SELECTOR_LEN,
        "pattern": "^[^${\\u0000-\\u001f\\u007f-\\u009f][^{\\u0000-\\u001f\\u007f-\\u009f]*$",
    })
}

/// No control character (Unicode `Cc`): what `char::is_control` refuses.
pub const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// The document, built once.
fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut().filter_map(Value::as_object_mut) {
                if let Some(params) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
                    params.iter_mut().for_each(not_null);
                    params.iter_mut().for_each(selector_items);
                }
                let id = operation.get("operationId").and_then(Value::as_str).unwrap_or("");
                let groups = ERRORS.iter().find(|(op, _)| *op == id).map_or(&[][..], |(_, g)| *g);
                let errors = error_responses(groups);
                if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
                    responses.values_mut().for_each(camel_case_links);
                    responses.extend(errors);
                }
            }
        }
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        schemas.extend(stream_schemas());
        // What the attributes cannot say: an event names `topics` or
        // `topic`, exactly one; an audience object sets at least one field
        // (utoipa 5 writes its `min_properties` as `maxProperties`).
        if let Some(event) = schemas.get_mut("EventInput") {
            event["oneOf"] = json!([{"required": ["topics"]}, {"required": ["topic"]}]);
            event["properties"]["topics"]["items"] = topic_schema();
            event["properties"]["topic"] = topic_schema();
            event["properties"]["type"]["not"] = json!({"enum": herald_core::event::RESERVED_TYPES});
        }
        // What each revocation type needs (`revocations::parse`).
        if let Some(revocation) = schemas.get_mut("HeraldRevocation") {
            let needs = [
                ("role_grant_revoke", &["account", "role"][..]),
                ("session_revoke", &["account", "session"]),
                ("token_revoke", &["jti"]),
                ("tenant_revoke", &["tenant"]),
            ];
            let mut rules: Vec<Value> = needs
                .iter()
                .map(|(kind, fields)| {
                    json!({"if": {"properties": {"type": {"const": kind}}}, "then": {"required": fields}})
                })
                .collect();
            rules.push(json!({
                "if": {"properties": {"type": {"enum": ["session_revoke_all", "token_revoke_all", "password_change", "logout"]}}},
                "then": {"required": ["account"]},
            }));
            revocation["allOf"] = rules.into();
        }
        // A forwarded audit event is told from Herald's shape by these.
        if let Some(forwarded) = schemas.get_mut("ForwardedAuditEvent") {
            let markers = ["outcome", "account_id", "target_account_id", "metadata"];
            forwarded["anyOf"] = markers.iter().map(|m| json!({"required": [m]})).collect();
        }
        if let Some(update) = schemas.get_mut("UpdateForm") {
            update["properties"]["topic"]["items"] = topic_schema();
            update["properties"]["type"]["not"] = json!({"enum": herald_core::event::RESERVED_TYPES});
        }
        if let Some(audience) = schemas.get_mut("AudienceFields") {
            audience["minProperties"] = 1.into();
            let label = json!({
                "type": "string",
                "minLength": 1,
                "maxLength": herald_core::audience::MAX_LABEL_LEN,
                "pattern": NO_CONTROL,
            });
            audience["properties"]["tenant"]["pattern"] = NO_CONTROL.into();
            for list in ["users", "sessions", "roles", "groups"] {
                audience["properties"][list]["items"] = label.clone();
            }
        }
        if let Some(tag) = schemas.get_mut("Tag") {
            tag["minItems"] = 1.into();
            tag["maxItems"] = MAX_SEGMENTS.into();
        }
        if let Some(text) = schemas.get_mut("TagSegment").and_then(|t| t.pointer_mut("/oneOf/0")) {
            text["maxLength"] = 256.into();
        }
    }
    doc
}

/// The control events of native streams: the hub's own types, each with
/// `data: {"reason": ...}`.
const CONTROL_EVENTS: [&str; 7] = [
    "reset", "revoked", "expired", "evicted", "kicked", "overflow", "shutdown",
];

/// The events of each stream, as SSE clients parse them: `event` (`message`
/// when absent), `data` (lines joined with `\n`), `id` (the last one
/// seen), `retry`. Control events' data is JSON, described with
/// `contentMediaType` / `contentSchema`.
fn stream_schemas() -> Map<String, Value> {
    let control = json!({
        "type": "object",
        "description": "A control event: no `id:` line of its own (except `overflow`); the stream ends after it, except after `reset`.",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": CONTROL_EVENTS},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {
                        "reason": {"type": "string", "description": "Why: the revocation type, `credential_expired`, `queue_full`, `shutdown`, `lease_lost`, ..."},
                        "last_event_id": {"type": "string", "description": "`overflow` only: resume after this event."},
                    },
                },
            },
            "id": {"type": "string"},
        },
    });
    let event = json!({
        "type": "object",
        "description": "An event as published: `id:` the hub id or the publisher's, `event:` its type (omitted for `message`), `retry:` when the publisher set it, one `data:` line per line of data.",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "not": {"enum": CONTROL_EVENTS}},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
    });
    let audit = json!({
        "type": "object",
        "description": "One audit record: `event: audit`, `id:` the record id, `data:` the record as JSON.",
        "required": ["event", "data", "id"],
        "properties": {
            "event": {"const": "audit"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "required": ["id", "time_ms", "kind", "detail"],
                    "properties": {
                        "id": {"type": "integer", "minimum": 0},
                        "time_ms": {"type": "integer", "minimum": 0},
                        "kind": {"type": "string"},
                        "detail": {"type": "object"},
                    },
                },
            },
            "id": {"type": "string", "pattern": "^[0-9]+$"},
        },
    });
    let mut out = Map::new();
    out.insert(
        "NativeStreamEvent".into(),
        json!({"description": "One event of `GET /v1/events`.", "oneOf": [event, control]}),
    );
    out.insert(
        "AuditStreamEvent".into(),
        json!({"description": "One event of `GET /v1/audit/events`.", "oneOf": [audit, control]}),
    );
    out.insert(
        "MercureStreamEvent".into(),
        json!({"description": "One event of a Mercure subscription: an update (`id:` its id, `event:` its type, `data:` its data) or a control event.", "oneOf": [event, control]}),
    );
    out
}

/// The document and its entity tag, built on first use.
struct Document {
    bytes: axum::body::Bytes,
    etag: HeaderValue,
}

fn document_bytes() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let bytes = serde_json::to_vec(&build()).unwrap_or_default();
        let tag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..16]);
        Document {
            etag: HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\"")),
            bytes: bytes.into(),
        }
    })
}

/// The OpenAPI document as JSON, as `GET /v1/openapi.json` serves it.
pub fn document() -> Value {
    serde_json::from_slice(&document_bytes().bytes).unwrap_or_default()
}

/// The OpenAPI 3.1 document of this API
///
/// Served without authentication; the same for every hub of this version,
/// whatever its configuration (Mercure endpoints answer `404` on a hub
/// that disabled them).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    security(()),
    params(("If-None-Match" = Option<String>, Header, description = "An entity tag from an earlier answer.")),
    responses(
        (status = 200, description = "The document.", content_type = "application/json", body = Object,
            headers(
                ("etag" = String, description = "The document's entity tag."),
                ("cache-control" = String, description = "`public, max-age=300`"),
            )),
        (status = 304, description = "Unchanged since the entity tag given in `If-None-Match`."),
    )
)]
pub async fn serve(headers: HeaderMap) -> Response {
    let doc = document_bytes();
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == doc.etag || t.trim() == "*"));
    let status = if unchanged {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut resp = if unchanged {
        status.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            doc.bytes.clone(),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, doc.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}
