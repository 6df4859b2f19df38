//! Revocations: which live streams a revocation closes, and which
//! credentials it keeps out afterwards (the sticky deny rule).
//!
//! Both questions are answered here, from the [`Principal`] alone, so a
//! stream opened on any node and a credential presented at any later time
//! are judged by the same rule.

use crate::principal::Principal;
use crate::session::SessionHash;

/// One revocation, as posted to `POST /v1/revocations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// The account lost a role.
    RoleGrantRevoke {
        /// Account id.
        account: String,
        /// The role revoked.
        role: String,
    },
    /// One session of the account ended.
    SessionRevoke {
        /// Account id.
        account: String,
        /// The session, hashed.
        session: SessionHash,
    },
    /// Every credential of the account issued so far ends. `reason` is the
    /// wire type: `session_revoke_all`, `token_revoke_all`,
    /// `password_change` or `logout`.
    AccountRevoke {
        /// Account id.
        account: String,
        /// The wire type that caused it.
        reason: AccountRevokeReason,
    },
    /// One token (by `jti`) ends.
    TokenRevoke {
        /// The revoked JWT id.
        jti: String,
    },
    /// Every credential of the tenant issued so far ends.
    TenantRevoke {
        /// The tenant.
        tenant: String,
    },
}

/// The four wire types that revoke a whole account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountRevokeReason {
    /// `session_revoke_all`
    SessionRevokeAll,
    /// `token_revoke_all`
    TokenRevokeAll,
    /// `password_change`
    PasswordChange,
    /// `logout`
    Logout,
}

impl Revocation {
    /// The wire type, also sent to clients as `{"reason": ...}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Revocation::RoleGrantRevoke { .. } => "role_grant_revoke",
            Revocation::SessionRevoke { .. } => "session_revoke",
            Revocation::AccountRevoke { reason, .. } => match reason {
                AccountRevokeReason::SessionRevokeAll => "session_revoke_all",
                AccountRevokeReason::TokenRevokeAll => "token_revoke_all",
                AccountRevokeReason::PasswordChange => "password_change",
                AccountRevokeReason::Logout => "logout",
            },
            Revocation::TokenRevoke { .. } => "token_revoke",
            Revocation::TenantRevoke { .. } => "tenant_revoke",
        }
    }

    /// Whether a live stream of `principal` must be closed.
    pub fn closes(&self, p: &Principal) -> bool {
        match self {
            // `admin` names the hub's own admin grant (the `herald.admin`
            // claim or an `admin`-scoped key) as well as an app role of that
            // name, so revoking it closes open audit streams.
            Revocation::RoleGrantRevoke { account, role } => {
                p.sub == *account && (p.roles.contains(role) || (role == "admin" && p.scopes.admin))
            }
            Revocation::SessionRevoke { account, session } => p.sub == *account && p.session.as_ref() == Some(session),
            Revocation::AccountRevoke { account, .. } => p.sub == *account,
            Revocation::TokenRevoke { jti } => p.jti.as_deref() == Some(jti.as_str()),
            Revocation::TenantRevoke { tenant } => p.tenant.as_deref() == Some(tenant.as_str()),
        }
    }
}

/// A revocation kept as a deny rule until no credential it could match can
/// still be valid.
#[derive(Clone, Debug, PartialEq)]
pub struct DenyRule {
    /// What was revoked.
    pub revocation: Revocation,
    /// Unix time (ms) it was applied.
    pub at_ms: u64,
    /// Unix time (ms) after which the rule can be forgotten: `at_ms` plus the
    /// longest credential lifetime the hub accepts.
    pub expires_at_ms: u64,
    /// When set, only principals of this tenant are affected (a revocation
    /// posted by a tenant admin or a tenant-bound key).
    pub within_tenant: Option<String>,
    /// Fingerprints of credentials seen on streams the revocation closed:
    /// they are refused even when their issue time, in whole seconds, cannot
    /// tell whether they came before or after the revocation.
    pub seen: Vec<[u8; 16]>,
}

impl DenyRule {
    /// Whether a credential yielding `p` must be refused.
    pub fn denies(&self, p: &Principal) -> bool {
        if !self.applies_to(p) {
            return false;
        }
        match self.revocation {
            // A revoked session or token id is refused whenever it was issued.
            Revocation::SessionRevoke { .. } | Revocation::TokenRevoke { .. } => true,
            _ => self.issued_before(p),
        }
    }

    /// Whether a live stream of `p` is closed by this rule's revocation.
    pub fn applies_to(&self, p: &Principal) -> bool {
        self.within_tenant.as_ref().is_none_or(|t| p.tenant.as_ref() == Some(t)) && self.revocation.closes(p)
    }

    /// Whether `p`'s credential was issued before this rule. A credential of
    /// unknown issue time is treated as old (deny when unsure).
    fn issued_before(&self, p: &Principal) -> bool {
        let Some(issued) = p.issued_at_ms else {
            return true;
        };
        if self.seen.contains(&p.fingerprint) {
            return true;
        }
        // The latest instant the credential could have been issued at, given
        // the resolution of its `iat`.
        let latest = issued.saturating_add(p.issued_at_resolution_ms.saturating_sub(1));
        latest < self.at_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(sub: &str, iat_ms: u64) -> Principal {
        let mut p = Principal::new(sub);
        p.issued_at_ms = Some(iat_ms);
        p.issued_at_resolution_ms = 1000;
        p.roles = vec!["ops".into()];
        p
    }

    fn rule(r: Revocation, at_ms: u64) -> DenyRule {
        DenyRule {
            revocation: r,
            at_ms,
            expires_at_ms: at_ms + 1,
            within_tenant: None,
            seen: vec![],
        }
    }

    #[test]
    fn account_rules_only_deny_older_credentials() {
        let r = rule(
            Revocation::AccountRevoke {
                account: "u".into(),
                reason: AccountRevokeReason::Logout,
            },
            10_500,
        );
        assert!(r.denies(&principal("u", 9_000)));
        // Issued in the same second: ambiguous, allowed unless seen before.
        assert!(!r.denies(&principal("u", 10_000)));
        assert!(!r.denies(&principal("u", 11_000)));
        assert!(!r.denies(&principal("v", 9_000)));
        let mut seen = r.clone();
        let mut p = principal("u", 10_000);
        p.fingerprint = [9; 16];
        seen.seen.push([9; 16]);
        assert!(seen.denies(&p));
        let mut unknown = principal("u", 0);
        unknown.issued_at_ms = None;
        assert!(r.denies(&unknown));
    }

    #[test]
    fn role_rule_needs_the_role() {
        let r = rule(
            Revocation::RoleGrantRevoke {
                account: "u".into(),
                role: "ops".into(),
            },
            10_000,
        );
        assert!(r.denies(&principal("u", 1_000)));
        let mut p = principal("u", 1_000);
        p.roles.clear();
        assert!(!r.denies(&p));
    }
}
