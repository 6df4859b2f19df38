//! `POST /v1/revocations`: end access now, and keep it ended.
//!
//! Accepts Herald's own shape and, unchanged, an app's audit event in the
//! fuz_app shape (`type`, `outcome`, `account_id`, `target_account_id`,
//! `metadata.role`, `metadata.session_id`), so a backend can forward its
//! audit feed as is. A failed action (`"outcome": "failure"`) closes
//! nothing: its ids are whatever the failing caller sent.

use super::error::ApiError;
use super::request::json_body;
use super::request::{client_ip, header_credential};
use crate::hub::Hub;
use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::Json;
use herald_core::revocation::AccountRevokeReason;
use herald_core::{Revocation, SessionKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The body of `POST /v1/revocations` (described for the OpenAPI document;
/// the handler reads the fields it needs): Herald's own shape, or an
/// application's audit event forwarded as is.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RevocationRequest {
    /// Herald's shape.
    Herald(HeraldRevocation),
    /// An application's audit event.
    Forwarded(ForwardedAuditEvent),
}

/// What a revocation ends: see docs/security.md for what each type closes
/// and keeps refusing.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct HeraldRevocation {
    /// The revocation type.
    #[serde(rename = "type")]
    kind: RevocationType,
    /// The account (`sub`): required by every type but `token_revoke` and
    /// `tenant_revoke`.
    #[schema(min_length = 1)]
    account: Option<String>,
    /// `session_revoke`: the session id.
    #[schema(min_length = 1)]
    session: Option<String>,
    /// `role_grant_revoke`: the role.
    #[schema(min_length = 1)]
    role: Option<String>,
    /// `token_revoke`: the token id (`jti`).
    #[schema(min_length = 1)]
    jti: Option<String>,
    /// `tenant_revoke`: the tenant; with any other type, act on that
    /// tenant's accounts only (a tenant-bound revoker: its own only).
    #[schema(min_length = 1)]
    tenant: Option<String>,
}

/// Herald's revocation types.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RevocationType {
    /// A role of an account: its streams holding that role.
    RoleGrantRevoke,
    /// One session of an account.
    SessionRevoke,
    /// Every session of an account.
    SessionRevokeAll,
    /// Every token of an account.
    TokenRevokeAll,
    /// The account changed its password.
    PasswordChange,
    /// The account logged out.
    Logout,
    /// One token, by `jti`.
    TokenRevoke,
    /// A whole tenant.
    TenantRevoke,
}

/// An application's audit event: the target account wins over the actor;
/// `"outcome": "failure"` and types that revoke nothing change nothing.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ForwardedAuditEvent {
    /// The event type; Herald's revocation types revoke, others do nothing.
    #[serde(rename = "type")]
    #[schema(min_length = 1)]
    kind: String,
    /// `success` or `failure` (`failure` revokes nothing).
    #[schema(min_length = 1)]
    outcome: Option<String>,
    /// The acting account.
    #[schema(min_length = 1)]
    account_id: Option<String>,
    /// The account acted on.
    #[schema(min_length = 1)]
    target_account_id: Option<String>,
    /// `role`, `session_id`, `jti`, `tenant`.
    metadata: Option<ForwardedMetadata>,
}

/// The details of a forwarded audit event.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ForwardedMetadata {
    /// The role revoked.
    #[schema(min_length = 1)]
    role: Option<String>,
    /// The session revoked.
    #[schema(min_length = 1)]
    session_id: Option<String>,
    /// The token revoked.
    #[schema(min_length = 1)]
    jti: Option<String>,
    /// The tenant concerned.
    #[schema(min_length = 1)]
    tenant: Option<String>,
}

/// The values `?dry_run=` takes.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub enum DryRunFlag {
    /// Only count.
    #[serde(rename = "true")]
    True,
    /// Only count.
    #[serde(rename = "1")]
    One,
    /// Revoke.
    #[serde(rename = "false")]
    False,
    /// Revoke.
    #[serde(rename = "0")]
    Zero,
}

/// The answer of a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// Streams closed on this node.
    pub closed: usize,
    /// Whether a deny rule was applied (and is durable); `false` for a
    /// forwarded event that revokes nothing.
    pub applied: bool,
}

/// The answer of a dry run: nothing changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    /// Live streams on this node the revocation would close now.
    pub would_close: usize,
    /// Always `false`.
    pub applied: bool,
}

/// The answer of `POST /v1/revocations`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RevocationAnswer {
    /// Applied (or nothing to apply).
    Revoked(Revoked),
    /// `?dry_run=true`.
    DryRun(DryRun),
}

/// The fields a revocation may need, from either shape.
struct Fields<'a> {
    kind: &'a str,
    account: Option<&'a str>,
    session: Option<&'a str>,
    role: Option<&'a str>,
    jti: Option<&'a str>,
    tenant: Option<&'a str>,
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_revocation",
            format!("`{key}` must be a non-empty string"),
        )),
    }
}

/// Builds the revocation, or `None` for a forwarded audit event of a type
/// that revokes nothing.
fn parse(f: &Fields<'_>, key: &SessionKey, forwarded: bool) -> Result<Option<Revocation>, ApiError> {
    let need = |name: &str, v: Option<&str>| {
        v.map(str::to_string)
            .ok_or_else(|| ApiError::bad_request("invalid_revocation", format!("`{}` requires `{name}`", f.kind)))
    };
    let account_reason = match f.kind {
        "session_revoke_all" => Some(AccountRevokeReason::SessionRevokeAll),
        "token_revoke_all" => Some(AccountRevokeReason::TokenRevokeAll),
        "password_change" => Some(AccountRevokeReason::PasswordChange),
        "logout" => Some(AccountRevokeReason::Logout),
        _ => None,
    };
    let r = match (f.kind, account_reason) {
        (_, Some(reason)) => Revocation::AccountRevoke {
            account: need("account", f.account)?,
            reason,
        },
        ("role_grant_revoke", _) => Revocation::RoleGrantRevoke {
            account: need("account", f.account)?,
            role: need("role", f.role)?,
        },
        ("session_revoke", _) => Revocation::SessionRevoke {
            account: need("account", f.account)?,
            session: key.hash(&need("session", f.session)?),
        },
        ("token_revoke", _) => Revocation::TokenRevoke {
            jti: need("jti", f.jti)?,
        },
        ("tenant_revoke", _) => Revocation::TenantRevoke {
            tenant: need("tenant", f.tenant)?,
        },
        _ if forwarded => return Ok(None),
        (other, _) => {
            return Err(ApiError::bad_request(
                "invalid_revocation",
                format!("unknown revocation type `{other}`"),
            ))
        }
    };
    Ok(Some(r))
}

/// Revoke: end access now, and keep it ended
///
/// Closes every matching live stream and keeps refusing the revoked
/// credentials (docs/security.md). Answers once the deny rule is durable
/// (and, in a cluster, shared). Needs the `revoke` scope or an admin;
/// `?dry_run=true` (admins only, audited) counts what would close and
/// changes nothing. No other query parameter is accepted, and `dry_run`
/// in the body is refused.
#[utoipa::path(
    post,
    path = "/v1/revocations",
    operation_id = "revoke",
    tag = "revocations",
    security(("bearer" = []), ("cookie" = [])),
    params(("dry_run" = inline(Option<DryRunFlag>), Query,
        description = "`true` (or `1`): only count the streams it would close; `false` (or `0`): revoke.",
        example = "true")),
    request_body(content = RevocationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied, or (dry run) counted.", body = RevocationAnswer),
    )
)]
pub async fn revoke(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<RevocationAnswer>, ApiError> {
    let hub = hub.inner.clone();
    let ip = client_ip(&req, &hub.config);
    let by = hub.authenticate_request(header_credential(req.headers()), ip).await?;
    if !(by.scopes.revoke || by.is_admin()) {
        return Err(ApiError::forbidden(
            "revoke_forbidden",
            "revocations need an admin or a key with the `revoke` scope",
        ));
    }
    let dry_run = dry_run(&super::request::query_pairs(&req), &by)?;
    let body = json_body(req, 64 * 1024).await?;
    // A preview asked for in the body would be applied for real if it were
    // ignored: refused, as an unknown parameter is.
    if body.get("dry_run").is_some() {
        return Err(ApiError::bad_request(
            "invalid_revocation",
            "`dry_run` goes in the query (`?dry_run=true`), not the body",
        ));
    }
    let kind =
        str_field(&body, "type")?.ok_or_else(|| ApiError::bad_request("invalid_revocation", "`type` is required"))?;
    // The fuz_app audit shape carries `outcome` and `*account_id`.
    let forwarded = ["outcome", "account_id", "target_account_id", "metadata"]
        .iter()
        .any(|k| body.get(k).is_some());
    let null = Value::Null;
    let meta = match body.get("metadata") {
        None | Some(Value::Null) => &null,
        Some(m @ Value::Object(_)) => m,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_revocation",
                "`metadata` must be an object",
            ))
        }
    };
    let fields = if forwarded {
        // Only a well-formed outcome is believed: `"outcome": false` is
        // not a failure report, it is a malformed event.
        if str_field(&body, "outcome")? == Some("failure") {
            return Ok(Json(nothing(dry_run)));
        }
        Fields {
            kind,
            // The target account wins: "admin revoked bob's role" is about bob.
            account: str_field(&body, "target_account_id")?.or(str_field(&body, "account_id")?),
            session: str_field(meta, "session_id")?,
            role: str_field(meta, "role")?,
            jti: str_field(meta, "jti")?,
            tenant: str_field(meta, "tenant")?,
        }
    } else {
        Fields {
            kind,
            account: str_field(&body, "account")?,
            session: str_field(&body, "session")?,
            role: str_field(&body, "role")?,
            jti: str_field(&body, "jti")?,
            tenant: str_field(&body, "tenant")?,
        }
    };
    let Some(revocation) = parse(&fields, &hub.auth.session_key, forwarded)? else {
        return Ok(Json(nothing(dry_run)));
    };
    // An account is (tenant, sub). A tenant-bound revoker acts inside its
    // tenant only; a hub-wide revoker may name a tenant to scope an account,
    // session or role revocation to that tenant's account. Naming none, it
    // revokes the account name in every tenant (closing more is the safe
    // side, and the forwarded audit shape carries no tenant).
    let within_tenant = match (&by.tenant, fields.tenant) {
        (Some(own), Some(named)) if own != named => {
            return Err(ApiError::forbidden(
                "tenant_forbidden",
                "a tenant-bound credential revokes only inside its tenant",
            ))
        }
        (Some(own), _) => Some(own.clone()),
        (None, named) => named.map(str::to_string),
    };
    if dry_run {
        let mut e = crate::audit::AuditEntry::about("admin_action", &by);
        e.ip = Some(ip);
        e.detail = json!({"action": "revocation_dry_run", "type": fields.kind});
        let reach = hub.revocation_reach(revocation, within_tenant);
        hub.audit.record(e, crate::hub::now_ms());
        return Ok(Json(RevocationAnswer::DryRun(DryRun {
            would_close: reach,
            applied: false,
        })));
    }
    // Not shared yet: refused, so the caller retries (a revocation is
    // idempotent) rather than believe every node applied it.
    let closed = hub
        .revoke(revocation, within_tenant, Some(&by))
        .await
        .map_err(|e| ApiError::cluster_unavailable(e.to_string()))?;
    Ok(Json(RevocationAnswer::Revoked(Revoked { closed, applied: true })))
}

/// The answer for a revocation that revokes nothing.
fn nothing(dry_run: bool) -> RevocationAnswer {
    if dry_run {
        RevocationAnswer::DryRun(DryRun {
            would_close: 0,
            applied: false,
        })
    } else {
        RevocationAnswer::Revoked(Revoked {
            closed: 0,
            applied: false,
        })
    }
}

/// Whether the query asks for a dry run. Any other parameter is refused: a
/// misspelt `dry-run` that were ignored would revoke for real. A dry run
/// tells whether an account, session or token is live right now without
/// closing anything, so it is an administrator's (the console asks it
/// before it asks the operator to confirm), and it is audited.
fn dry_run(query: &[(String, String)], by: &herald_core::Principal) -> Result<bool, ApiError> {
    let mut dry_run = false;
    for (k, v) in query {
        match (k.as_str(), v.as_str()) {
            ("dry_run", "true" | "1") => dry_run = true,
            ("dry_run", "false" | "0") => {}
            ("dry_run", _) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "`dry_run` must be `true` or `false`",
                ))
            }
            (other, _) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("unknown parameter `{other}` (the only one is `dry_run`)"),
                ))
            }
        }
    }
    if dry_run && !by.is_admin() {
        return Err(ApiError::forbidden("admin_required", "a dry run is for administrators"));
    }
    Ok(dry_run)
}
