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
use serde_json::{json, Value};

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

/// Handler for `POST /v1/revocations`.
pub async fn revoke(State(hub): State<Hub>, req: Request<Body>) -> Result<Json<Value>, ApiError> {
    let hub = hub.inner.clone();
    let ip = client_ip(&req, &hub.config);
    let by = hub.authenticate_api(header_credential(req.headers()), ip)?;
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
    let meta = body.get("metadata").unwrap_or(&null);
    let fields = if forwarded {
        if body.get("outcome").and_then(Value::as_str) == Some("failure") {
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
        return Ok(Json(json!({"would_close": reach, "applied": false})));
    }
    // Not shared yet: refused, so the caller retries (a revocation is
    // idempotent) rather than believe every node applied it.
    let closed = hub
        .revoke(revocation, within_tenant, Some(&by))
        .await
        .map_err(|e| ApiError::cluster_unavailable(e.to_string()))?;
    Ok(Json(json!({"closed": closed, "applied": true})))
}

/// The answer for a revocation that revokes nothing.
fn nothing(dry_run: bool) -> Value {
    if dry_run {
        json!({"would_close": 0, "applied": false})
    } else {
        json!({"closed": 0, "applied": false})
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
