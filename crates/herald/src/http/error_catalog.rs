//! The error statuses of every operation of the OpenAPI document
//! ([`super::openapi`]) and the `error.code` values each can carry: what
//! the handlers answer, with the hub's domain errors ([`super::error`]) and
//! `herald-core`'s checks they pass on. The tests hold it to the sources:
//! every operation has an entry, every entry an operation, and every code
//! the adapters answer is listed.

use serde_json::{json, Map, Value};

/// Error statuses with the codes each can carry.
pub type Statuses = &'static [(u16, &'static [&'static str])];

/// Every request: a head that is not valid HTTP, or too large.
const ANY: Statuses = &[(400, &["invalid_request"]), (431, &["request_header_too_large"])];

/// A request authenticated as for the API (JWT or API key; an SSE token is
/// refused, after it was checked: a spent one is `token_used`).
const API_AUTH: Statuses = &[
    (
        401,
        &[
            "missing_credential",
            "invalid_token",
            "token_expired",
            "token_used",
            "credential_revoked",
        ],
    ),
    (429, &["auth_rate_limited"]),
];

/// A stream open (`?token=`, header or cookie; SSE tokens welcome).
const STREAM_AUTH: Statuses = &[
    (
        401,
        &[
            "missing_credential",
            "invalid_token",
            "token_expired",
            "token_used",
            "credential_revoked",
        ],
    ),
    (429, &["auth_rate_limited"]),
    (403, &["origin_forbidden"]),
];

/// A native write: the `herald_token` cookie needs an allowed origin.
const COOKIE_WRITE: Statuses = &[(403, &["origin_forbidden"])];

/// A JSON body, read through the hub's one body reader.
const JSON_BODY: Statuses = &[
    (400, &["invalid_json"]),
    (408, &["body_timeout"]),
    (413, &["body_too_large"]),
];

/// An admin endpoint.
const ADMIN: Statuses = &[(403, &["admin_required"])];

/// The stream caps, judged before the first byte.
const STREAM_CAPS: Statuses = &[
    (
        429,
        &[
            "session_stream_cap",
            "account_stream_cap",
            "ip_stream_cap",
            "hub_stream_cap",
        ],
    ),
    (503, &["draining", "cluster_unavailable"]),
];

/// What an event's JSON can be refused for (`EventDraft::from_json`,
/// `EventDraft::authorize`).
const EVENT: Statuses = &[
    (
        400,
        &[
            "invalid_event",
            "topics_required",
            "too_many_topics",
            "invalid_topic",
            "reserved_topic",
            "invalid_field",
            "reserved_type",
            "invalid_id",
            "data_required",
            "audience_required",
            "invalid_audience",
            "audience_too_many_labels",
            "audience_label_too_long",
        ],
    ),
    (403, &["topic_forbidden", "tenant_forbidden"]),
    (413, &["event_too_large"]),
];

/// An audience (`Audience::from_json`).
const AUDIENCE: Statuses = &[(
    400,
    &[
        "audience_required",
        "invalid_audience",
        "audience_too_many_labels",
        "audience_label_too_long",
    ],
)];

/// A Mercure token (header, `?authorization=`, cookie); `404` on a hub that
/// disabled Mercure.
const MERCURE_AUTH: Statuses = &[
    (
        401,
        &[
            "missing_credential",
            "invalid_token",
            "token_expired",
            "credential_revoked",
        ],
    ),
    (429, &["auth_rate_limited"]),
    (404, &["not_found"]),
];

/// The subscriptions API: the token's `mercure.subscribe` must match the
/// URL path; `404` when it is off or (one subscription) absent.
const MERCURE_SUBSCRIPTIONS: Statuses = &[(403, &["topic_forbidden"])];

/// Selectors of a subscription.
const SELECTORS: Statuses = &[(400, &["topics_required", "too_many_selectors", "invalid_selector"])];

/// The error statuses of every operation, by operation id. Checked by the
/// tests: every operation has an entry, every entry an operation, and every
/// code the adapters' sources answer appears somewhere.
pub const ERRORS: &[(&str, &[Statuses])] = &[
    ("landing", &[]),
    ("console", &[]),
    ("console_script", &[]),
    ("console_style", &[]),
    ("console_redirect", &[]),
    ("healthz", &[]),
    ("readyz", &[]),
    ("metrics", &[]),
    ("openapi", &[]),
    (
        "open_event_stream",
        &[
            STREAM_AUTH,
            SELECTORS,
            STREAM_CAPS,
            &[(400, &["invalid_last_event_id"]), (403, &["topic_forbidden"])],
        ],
    ),
    (
        "publish",
        &[
            API_AUTH,
            COOKIE_WRITE,
            JSON_BODY,
            EVENT,
            &[
                (400, &["batch_too_large"]),
                (403, &["publish_forbidden"]),
                (409, &["duplicate_id"]),
                (503, &["draining", "store_unavailable"]),
            ],
        ],
    ),
    (
        "mint_token",
        &[
            API_AUTH,
            COOKIE_WRITE,
            JSON_BODY,
            &[
                (400, &["invalid_request", "invalid_ttl", "invalid_selector"]),
                (
                    403,
                    &[
                        "tokens_forbidden",
                        "tenant_forbidden",
                        "token_widening_forbidden",
                        "subject_revoked",
                    ],
                ),
                (429, &["too_many_tokens"]),
                (503, &["cluster_unavailable"]),
            ],
        ],
    ),
    (
        "revoke",
        &[
            API_AUTH,
            COOKIE_WRITE,
            JSON_BODY,
            &[
                (400, &["invalid_request", "invalid_revocation"]),
                (403, &["revoke_forbidden", "admin_required", "tenant_forbidden"]),
                (503, &["cluster_unavailable"]),
            ],
        ],
    ),
    ("audit_page", &[API_AUTH, ADMIN, &[(503, &["store_unavailable"])]]),
    (
        "open_audit_stream",
        &[
            STREAM_AUTH,
            ADMIN,
            &[
                (400, &["invalid_last_event_id"]),
                (429, &["audit_stream_cap", "ip_stream_cap", "hub_stream_cap"]),
                (503, &["draining", "cluster_unavailable"]),
            ],
        ],
    ),
    ("list_connections", &[API_AUTH, ADMIN]),
    ("get_connection", &[API_AUTH, ADMIN, &[(404, &["not_found"])]]),
    (
        "kick_connection",
        &[API_AUTH, COOKIE_WRITE, ADMIN, &[(404, &["not_found"])]],
    ),
    ("overview", &[API_AUTH, ADMIN]),
    (
        "invalidate",
        &[
            API_AUTH,
            COOKIE_WRITE,
            JSON_BODY,
            AUDIENCE,
            &[
                (400, &["invalid_tags"]),
                (403, &["publish_forbidden", "topic_forbidden", "tenant_forbidden"]),
                (429, &["invalidations_held_full"]),
                (503, &["draining", "store_unavailable"]),
            ],
        ],
    ),
    ("invalidation_state", &[API_AUTH, ADMIN]),
    (
        "control_invalidation",
        &[
            API_AUTH,
            COOKIE_WRITE,
            ADMIN,
            &[(404, &["not_found"]), (503, &["draining", "store_unavailable"])],
        ],
    ),
    (
        "toggle_tags",
        &[
            API_AUTH,
            COOKIE_WRITE,
            ADMIN,
            JSON_BODY,
            &[(400, &["invalid_tags"]), (404, &["not_found"])],
        ],
    ),
    (
        "mercure_subscribe",
        &[
            MERCURE_AUTH,
            SELECTORS,
            STREAM_CAPS,
            &[(400, &["invalid_last_event_id"]), (403, &["origin_forbidden"])],
        ],
    ),
    (
        "mercure_publish",
        &[
            MERCURE_AUTH,
            &[
                (
                    400,
                    &[
                        "topics_required",
                        "too_many_topics",
                        "invalid_topic",
                        "invalid_field",
                        "invalid_id",
                        "reserved_type",
                    ],
                ),
                (403, &["origin_forbidden", "publish_forbidden", "topic_forbidden"]),
                (408, &["body_timeout"]),
                (413, &["event_too_large"]),
                (503, &["draining", "store_unavailable"]),
            ],
        ],
    ),
    ("mercure_subscriptions", &[MERCURE_AUTH, MERCURE_SUBSCRIPTIONS]),
    ("mercure_topic_subscriptions", &[MERCURE_AUTH, MERCURE_SUBSCRIPTIONS]),
    ("mercure_subscription", &[MERCURE_AUTH, MERCURE_SUBSCRIPTIONS]),
];

/// What an error status means, for its response's description.
fn status_meaning(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed or names something invalid.",
        401 => "No valid credential (`WWW-Authenticate` says why).",
        403 => "The credential may not do this.",
        404 => "No such resource.",
        408 => "The body did not arrive within `body_timeout_secs`; the connection is closed.",
        409 => "Conflicts with an event in history.",
        413 => "Too large.",
        429 => "Over a limit; retry after `Retry-After` seconds.",
        431 => "The request line and headers exceed 64 KiB or 100 lines; the connection is closed.",
        503 => "Unavailable for now; retry after `Retry-After` seconds.",
        _ => "An error.",
    }
}

/// The error responses of one operation: one per status, its body's
/// `error.code` limited to the codes listed for that status.
pub fn error_responses(groups: &[Statuses]) -> Map<String, Value> {
    let mut by_status: Vec<(u16, Vec<&str>)> = Vec::new();
    for (status, codes) in groups.iter().copied().chain([ANY]).flatten() {
        let i = match by_status.iter().position(|(s, _)| s == status) {
            Some(i) => i,
            None => {
                by_status.push((*status, Vec::new()));
                by_status.len() - 1
            }
        };
        let entry = &mut by_status[i].1;
        for code in *codes {
            if !entry.contains(code) {
                entry.push(code);
            }
        }
    }
    by_status.sort_by_key(|(s, _)| *s);
    let mut out = Map::new();
    for (status, codes) in by_status {
        let listed: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
        let mut response = json!({
            "description": format!("{} `error.code`: {}.", status_meaning(status), listed.join(", ")),
            "content": {"application/json": {"schema": {
                "allOf": [
                    {"$ref": "#/components/schemas/ErrorBody"},
                    {"type": "object", "properties": {"error": {"type": "object", "properties": {
                        "code": {"type": "string", "enum": codes},
                    }}}},
                ],
            }}},
        });
        let header = match status {
            401 => Some((
                "www-authenticate",
                "`Bearer realm=\"herald\"`, with `error_description` saying why.",
                json!({"type": "string"}),
            )),
            429 | 503 => Some((
                "retry-after",
                "Seconds to wait before retrying.",
                json!({"type": "integer", "minimum": 0}),
            )),
            _ => None,
        };
        if let Some((name, description, schema)) = header {
            response["headers"] = json!({name: {"description": description, "schema": schema}});
        }
        out.insert(status.to_string(), response);
    }
    out
}
