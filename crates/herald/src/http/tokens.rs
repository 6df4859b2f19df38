//! `POST /v1/tokens`: mint an SSE token.
//!
//! A backend API key with the `tokens` scope mints for the principal named in
//! the body (inside its tenant, if it is bound to one). A user JWT mints for
//! itself and can only narrow: fewer selectors, fewer roles, a shorter life.
//! Nothing can be widened (asking for more is `403`, never silently
//! dropped), a token never outlives the credential that minted it, and an
//! SSE token cannot mint another.

use super::error::ApiError;
use super::request::json_body;
use super::request::{client_ip, header_credential};
use crate::audit::AuditEntry;
use crate::auth::sse_token::{minter_key, MintError};
use crate::auth::AuthError;
use crate::hub::{now_ms, Hub};
use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::Json;
use herald_core::{CredentialKind, Principal, Scopes, SelectorSet};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// The body of `POST /v1/tokens`. With an API key it names the principal
/// (`sub` and `subscribe` required); with a user JWT every field may only
/// narrow the JWT's own.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The account the token is for (required with an API key; the JWT's
    /// own `sub` otherwise).
    #[schema(example = "alice")]
    sub: Option<String>,
    /// Its tenant: a tenant-bound key mints only inside its own
    /// (`403 tenant_forbidden`); 1 to 256 bytes.
    tenant: Option<String>,
    /// Its session id (hashed by the hub).
    sid: Option<String>,
    /// Its roles (a JWT: a subset of its own).
    roles: Option<Vec<String>>,
    /// Its groups (a JWT: a subset of its own).
    groups: Option<Vec<String>>,
    /// The selectors it may subscribe to (required with an API key; a JWT:
    /// covered by its own).
    #[schema(example = json!(["orders.>"]))]
    subscribe: Option<Vec<String>>,
    /// Lifetime in seconds: default `limits.sse_token_ttl_secs` (300), at
    /// most `limits.sse_token_max_ttl_secs`; never beyond the minting
    /// credential's own expiry.
    #[schema(minimum = 1, example = 300)]
    ttl: Option<u64>,
    /// Spent by the first stream it opens (default `true`).
    single_use: Option<bool>,
    /// An admin token (opens `/v1/audit/events`); only from an admin.
    admin: Option<bool>,
}

/// A minted SSE token.
#[derive(Debug, Serialize, ToSchema)]
pub struct MintedToken {
    /// The token, `st_...`: `?token=` on a stream, or `Authorization: Bearer`.
    #[schema(example = "st_3q2+7w")]
    pub token: String,
    /// Unix seconds it expires at: the earlier of `now + ttl` and the
    /// minting credential's expiry.
    pub expires_at: u64,
    /// Seconds it has left, rounded down.
    pub expires_in: u64,
}

fn narrow(field: &str, own: &[String], asked: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    match asked {
        None => Ok(own.to_vec()),
        Some(list) if list.iter().all(|x| own.contains(x)) => Ok(list),
        Some(_) => Err(ApiError::forbidden(
            "token_widening_forbidden",
            format!("`{field}` may only narrow the credential's own {field}"),
        )),
    }
}

/// Mint an SSE token
///
/// A backend API key with the `tokens` scope mints for the principal the
/// body names (inside its tenant, if bound to one); a user JWT mints for
/// itself and can only narrow it. Asking for more is `403
/// token_widening_forbidden`, never silently dropped; an SSE token cannot
/// mint another. At most `limits.sse_tokens_outstanding` unused, unexpired
/// tokens per minter and subject (`429 too_many_tokens`).
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "mint_token",
    tag = "tokens",
    security(("bearer" = []), ("cookie" = [])),
    request_body(content = MintRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The token, durable before it is handed out.", body = MintedToken,
            links(
                ("stream" = (operation_id = "open_event_stream",
                    parameters(("token" = "$response.body#/token")),
                    description = "Open a stream with the token")),
            )),
    )
)]
pub async fn mint(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<MintedToken>, ApiError> {
    let hub = hub.inner.clone();
    let ip = client_ip(&req, &hub.config);
    let minter = hub.authenticate_request(header_credential(req.headers()), ip).await?;
    let body = json_body(req, 64 * 1024).await?;
    let r: MintRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request("invalid_request", format!("token request: {e}")))?;
    let now = now_ms();
    let limits = &hub.config.limits;
    let ttl = r.ttl.unwrap_or(limits.sse_token_ttl_secs);
    if ttl == 0 || ttl > limits.sse_token_max_ttl_secs {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!("`ttl` must be between 1 and {} seconds", limits.sse_token_max_ttl_secs),
        ));
    }
    let subscribe = r.subscribe.as_ref().map(SelectorSet::parse).transpose()?;
    if subscribe.as_ref().is_some_and(SelectorSet::is_empty) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`subscribe` must name at least one selector",
        ));
    }
    let (mut principal, count_key) = match &minter.kind {
        CredentialKind::ApiKey { .. } => {
            if !minter.scopes.tokens {
                return Err(ApiError::forbidden(
                    "tokens_forbidden",
                    "this API key may not mint SSE tokens",
                ));
            }
            let sub = r.sub.filter(|s| !s.is_empty()).ok_or_else(|| {
                ApiError::bad_request("invalid_request", "`sub` is required when a key mints a token")
            })?;
            let tenant = match (&minter.tenant, r.tenant) {
                (Some(own), Some(t)) if *own != t => {
                    return Err(ApiError::forbidden(
                        "tenant_forbidden",
                        "a tenant-bound key mints only inside its tenant",
                    ))
                }
                (Some(own), _) => Some(own.clone()),
                (None, Some(t))
                    if t.is_empty()
                        || t.len() > herald_core::audience::MAX_LABEL_LEN
                        || t.chars().any(char::is_control) =>
                {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        "`tenant` must be 1 to 256 bytes without control characters",
                    ))
                }
                (None, t) => t,
            };
            let subscribe = subscribe.ok_or_else(|| {
                ApiError::bad_request("invalid_request", "`subscribe` is required when a key mints a token")
            })?;
            // Asking for more than the key holds is refused, not quietly
            // narrowed: the caller would otherwise believe it got admin.
            if r.admin == Some(true) && !minter.scopes.admin {
                return Err(ApiError::forbidden(
                    "token_widening_forbidden",
                    "`admin` needs an API key with the admin scope",
                ));
            }
            let mut p = Principal::new(sub);
            p.tenant = tenant;
            p.session = r.sid.as_deref().map(|s| hub.auth.session_key.hash(s));
            p.roles = r.roles.unwrap_or_default();
            p.groups = r.groups.unwrap_or_default();
            p.subscribe = subscribe;
            p.scopes = Scopes {
                admin: r.admin == Some(true),
                ..Scopes::default()
            };
            p.issued_at_ms = Some(now);
            p.issued_at_resolution_ms = 1;
            // The key's own expiry, should it ever have one, bounds the token.
            p.expires_at_ms = minter.expires_at_ms;
            let key = minter_key(&minter, &p);
            (p, key)
        }
        CredentialKind::Jwt | CredentialKind::Embedded => {
            if r.sub.as_ref().is_some_and(|s| *s != minter.sub)
                || r.tenant.is_some() && r.tenant != minter.tenant
                || r.sid
                    .as_deref()
                    .is_some_and(|s| Some(hub.auth.session_key.hash(s)) != minter.session)
                || r.admin == Some(true) && !minter.scopes.admin
            {
                return Err(ApiError::forbidden(
                    "token_widening_forbidden",
                    "a user token can only mint SSE tokens for itself",
                ));
            }
            let mut p = minter.clone();
            p.roles = narrow("roles", &minter.roles, r.roles)?;
            p.groups = narrow("groups", &minter.groups, r.groups)?;
            if let Some(s) = subscribe {
                if !minter.subscribe.covers(&s) {
                    return Err(ApiError::forbidden(
                        "token_widening_forbidden",
                        "`subscribe` may only narrow the credential's own selectors",
                    ));
                }
                p.subscribe = s;
            }
            p.publish = SelectorSet::default();
            p.scopes = Scopes {
                admin: minter.scopes.admin && r.admin != Some(false),
                ..Scopes::default()
            };
            let key = minter_key(&minter, &p);
            (p, key)
        }
        CredentialKind::SseToken { .. } => {
            return Err(ApiError::forbidden(
                "tokens_forbidden",
                "an SSE token cannot mint another",
            ));
        }
    };
    principal.publish = SelectorSet::default();
    // A token for an account or session already revoked would be refused at
    // every stream open: refuse it here, where the minting backend learns
    // why, and say so in the audit log.
    if let Some(reason) = hub.deny.denies(&principal, now) {
        let mut entry = AuditEntry::about("token_refused", &principal);
        entry.ip = Some(ip);
        entry.detail = json!({"minter": minter.sub, "code": "subject_revoked", "reason": reason});
        hub.audit.record(entry, now);
        return Err(ApiError::forbidden(
            "subject_revoked",
            format!("the account or session this token would be for was revoked ({reason})"),
        ));
    }
    // Never beyond the parent credential's own expiry.
    let asked_ms = now.saturating_add(ttl.saturating_mul(1000));
    let expires_at_ms = minter.expires_at_ms.map_or(asked_ms, |e| e.min(asked_ms));
    let minted = hub
        .auth
        .sse_tokens
        .mint_shared(
            principal.clone(),
            count_key,
            expires_at_ms,
            r.single_use.unwrap_or(true),
            now,
        )
        .await
        .map_err(|e| match e {
            MintError::TooMany(_) => ApiError::too_many("too_many_tokens", e.to_string(), 30),
            MintError::ParentExpired => ApiError::from(AuthError::new(
                "token_expired",
                "the credential minting this SSE token has expired",
            )),
            MintError::Unavailable(_) => ApiError::cluster_unavailable(e.to_string()),
        })?;
    // What the token really lives: the ttl asked for, or less when the
    // parent expires first. Rounded down, so a client never believes it has
    // longer than it has.
    let expires_in = minted.expires_at_ms.saturating_sub(now) / 1000;
    // The token is durable before it is handed out: it must work after a
    // restart, and its bookkeeping (outstanding count, single use) too.
    if let Some(store) = &hub.store {
        store.flush().await;
    }
    let mut entry = AuditEntry::about("token_minted", &principal);
    entry.ip = Some(ip);
    entry.detail = json!({"minter": minter.sub, "selectors": principal.subscribe.as_strings(), "ttl": expires_in});
    hub.audit.record(entry, now);
    Ok(Json(MintedToken {
        token: minted.token,
        expires_at: minted.expires_at_ms / 1000,
        expires_in,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::{ApiKeyConfig, Config, StoreKind};
    use crate::hub::{now_ms, Hub};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{json, Value};
    use tower::ServiceExt;

    const SECRET: &str = "tokens-test-secret-at-least-32-bytes";

    struct Fixture {
        hub: Hub,
        tokens_key: String,
    }

    fn fixture() -> Fixture {
        let (tokens_key, hash) = crate::auth::api_key::generate();
        let config = Config {
            jwt_secret: Some(SECRET.into()),
            store: StoreKind::Memory,
            api_keys: vec![ApiKeyConfig {
                id: "backend".into(),
                hash,
                scopes: vec!["tokens".into()],
                tenant: None,
                publish: None,
            }],
            ..Config::default()
        };
        Fixture {
            hub: Hub::builder(config).build().expect("hub"),
            tokens_key,
        }
    }

    fn jwt(claims: Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    }

    async fn call(hub: &Hub, req: Request<Body>) -> (StatusCode, Value) {
        let r = hub.router().oneshot(req).await.expect("response");
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn mint(hub: &Hub, credential: &str, body: Value) -> (StatusCode, Value) {
        let req = Request::post("/v1/tokens")
            .header("authorization", format!("Bearer {credential}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        call(hub, req).await
    }

    async fn open(hub: &Hub, token: &str) -> (StatusCode, Value) {
        let req = Request::get(format!("/v1/events?topic=news&token={token}"))
            .body(Body::empty())
            .expect("request");
        let r = hub.router().oneshot(req).await.expect("response");
        let status = r.status();
        if status != StatusCode::OK {
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
            return (status, serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
        (status, Value::Null)
    }

    #[tokio::test]
    async fn a_token_minted_from_a_short_lived_jwt_is_clamped_to_it() {
        let f = fixture();
        let exp = now_ms() / 1000 + 2;
        let parent = jwt(json!({"sub": "alice", "iat": exp - 2, "exp": exp, "herald": {"subscribe": ["news"]}}));
        let (s, v) = mint(&f.hub, &parent, json!({"ttl": 3600})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["expires_at"], exp, "{v}");
        assert!(v["expires_in"].as_u64().expect("expires_in") <= 2, "{v}");
        let token = v["token"].as_str().expect("token").to_string();
        // After the parent's expiry the token is refused before any byte.
        let wait = (exp * 1000 + 50).saturating_sub(now_ms());
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        let (s, v) = open(&f.hub, &token).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("token_expired"))
        );
    }

    #[tokio::test]
    async fn an_expired_parent_cannot_mint() {
        let f = fixture();
        // Within the verification leeway, so the JWT itself is still let in.
        let exp = now_ms() / 1000 - 2;
        let parent = jwt(json!({"sub": "alice", "iat": exp - 10, "exp": exp, "herald": {"subscribe": ["news"]}}));
        let (s, v) = mint(&f.hub, &parent, json!({})).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("token_expired")),
            "{v}"
        );
    }

    #[tokio::test]
    async fn a_tokens_only_key_asking_for_admin_is_forbidden() {
        let f = fixture();
        let (s, v) = mint(
            &f.hub,
            &f.tokens_key,
            json!({"sub": "bob", "subscribe": ["news"], "admin": true}),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("token_widening_forbidden"))
        );
        let (s, v) = mint(
            &f.hub,
            &f.tokens_key,
            json!({"sub": "bob", "subscribe": ["news"], "admin": false}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["expires_in"], 300, "unclamped: the ttl asked for");
    }

    #[tokio::test]
    async fn the_outstanding_cap_is_per_account() {
        let f = fixture();
        let cap = f.hub.config().limits.sse_tokens_outstanding;
        let body = |tenant: &str| json!({"sub": "capx", "tenant": tenant, "subscribe": ["news"]});
        for _ in 0..cap {
            assert_eq!(mint(&f.hub, &f.tokens_key, body("acme")).await.0, StatusCode::OK);
        }
        let (s, v) = mint(&f.hub, &f.tokens_key, body("acme")).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("too_many_tokens"))
        );
        let (s, v) = mint(&f.hub, &f.tokens_key, body("globex")).await;
        assert_eq!(s, StatusCode::OK, "capx@globex is not capx@acme: {v}");
    }
}
