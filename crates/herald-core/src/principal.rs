//! Principals: who is on the other end of a stream or a request.

use crate::selector::SelectorSet;
use crate::session::SessionHash;

/// What a credential allows beyond subscribing, as granted to API keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    /// May publish events (`POST /v1/publish`, `/v1/invalidate`).
    pub publish: bool,
    /// May mint SSE tokens for others (`POST /v1/tokens`).
    pub tokens: bool,
    /// May post revocations.
    pub revoke: bool,
    /// Hub (or tenant) administrator.
    pub admin: bool,
}

impl Scopes {
    /// Parses one scope name; `None` for an unknown name.
    pub fn with(mut self, name: &str) -> Option<Scopes> {
        match name {
            "publish" => self.publish = true,
            "tokens" => self.tokens = true,
            "revoke" => self.revoke = true,
            "admin" => self.admin = true,
            _ => return None,
        }
        Some(self)
    }
}

/// Which kind of credential a principal was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// A signed JWT (`Authorization: Bearer` or the `herald_token` cookie).
    Jwt,
    /// A backend API key, by its configured id.
    ApiKey {
        /// The key's configured id (never the secret).
        key_id: String,
    },
    /// A short-lived SSE token minted by `POST /v1/tokens`.
    SseToken {
        /// The token's public id (a hash prefix, never the token itself).
        token_id: String,
    },
    /// Trusted embedding code that built the principal itself.
    Embedded,
}

/// An account: a `sub` inside one tenant, or a hub-wide `sub`.
///
/// Two principals with the same `sub` in different tenants are different
/// accounts: caps, session eviction, audiences, deny rules and SSE-token
/// bookkeeping all compare the pair, never `sub` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Account<'a> {
    /// The tenant; `None` for a hub-wide account.
    pub tenant: Option<&'a str>,
    /// The account id within it.
    pub sub: &'a str,
}

/// The key naming a tenant (or, for `None`, the hub-wide scope) in
/// bookkeeping keys: `h`, or `t<len>:<tenant>`. Length-prefixed, so no
/// tenant name can spell another's key; every per-tenant key of the hub
/// (accounts, client ids, retained slots) starts with it.
pub fn tenant_key(tenant: Option<&str>) -> String {
    match tenant {
        None => "h".to_string(),
        Some(t) => format!("t{}:{t}", t.len()),
    }
}

impl Account<'_> {
    /// An unambiguous string key for bookkeeping (SSE-token counts, store
    /// keys): `h:sub` for a hub-wide account, `t<len>:<tenant>:sub` for a
    /// tenant's ([`tenant_key`]), so no choice of `sub` in one tenant can
    /// spell another tenant's key.
    pub fn key(&self) -> String {
        format!("{}:{}", tenant_key(self.tenant), self.sub)
    }
}

impl std::fmt::Display for Account<'_> {
    /// `sub` for a hub-wide account, `sub@tenant` otherwise (for humans:
    /// logs and messages; use [`Account::key`] as a key).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tenant {
            None => write!(f, "{}", self.sub),
            Some(t) => write!(f, "{}@{t}", self.sub),
        }
    }
}

/// A verified identity with everything the hub needs to decide visibility,
/// caps and revocation, without going back to the credential.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// Account id (`sub`).
    pub sub: String,
    /// The tenant this principal is bound to; `None` = hub-wide.
    pub tenant: Option<String>,
    /// The session, hashed at the edge; `None` when the credential has none.
    pub session: Option<SessionHash>,
    /// Roles held.
    pub roles: Vec<String>,
    /// Groups belonged to.
    pub groups: Vec<String>,
    /// Topics this principal may subscribe to.
    pub subscribe: SelectorSet,
    /// Topics this principal may publish to.
    pub publish: SelectorSet,
    /// Topics on which it may receive Mercure *private* updates; `None`
    /// means the same as `subscribe`. A Mercure subscriber may see public
    /// updates on any topic but private ones only where its
    /// `mercure.subscribe` claim matches.
    pub private_updates: Option<SelectorSet>,
    /// Extra powers (API key scopes; `admin` also from the JWT claim).
    pub scopes: Scopes,
    /// Unix time (ms) after which the credential is no longer valid.
    pub expires_at_ms: Option<u64>,
    /// Unix time (ms) the credential was issued, if known.
    pub issued_at_ms: Option<u64>,
    /// Resolution of `issued_at_ms`: JWT `iat` is in whole seconds (1000),
    /// hub-minted tokens are exact (1). Revocation uses it to stay correct
    /// within the second a revocation happens.
    pub issued_at_resolution_ms: u64,
    /// JWT id (`jti`), or for an SSE token the `jti` of its minter.
    pub jti: Option<String>,
    /// Hash of the presented credential, to recognise it again without
    /// keeping it.
    pub fingerprint: [u8; 16],
    /// What the credential was.
    pub kind: CredentialKind,
}

impl Principal {
    /// A principal for trusted embedding code or tests: no roles, no powers,
    /// subscribe to everything.
    pub fn new(sub: impl Into<String>) -> Principal {
        Principal {
            sub: sub.into(),
            tenant: None,
            session: None,
            roles: Vec::new(),
            groups: Vec::new(),
            subscribe: SelectorSet::all(),
            publish: SelectorSet::default(),
            private_updates: None,
            scopes: Scopes::default(),
            expires_at_ms: None,
            issued_at_ms: None,
            issued_at_resolution_ms: 1,
            jti: None,
            fingerprint: [0; 16],
            kind: CredentialKind::Embedded,
        }
    }

    /// The account this principal belongs to: (tenant or hub-wide, `sub`).
    pub fn account(&self) -> Account<'_> {
        Account {
            tenant: self.tenant.as_deref(),
            sub: &self.sub,
        }
    }

    /// Whether `self` and `other` are the same account (same tenant, same
    /// `sub`).
    pub fn same_account(&self, other: &Principal) -> bool {
        self.account() == other.account()
    }

    /// Whether this principal administers the hub (no tenant) or its tenant.
    pub fn is_admin(&self) -> bool {
        self.scopes.admin
    }

    /// Whether this principal administers the whole hub.
    pub fn is_hub_admin(&self) -> bool {
        self.scopes.admin && self.tenant.is_none()
    }

    /// Whether the principal's admin powers extend to `tenant`'s resources.
    pub fn administers(&self, tenant: Option<&str>) -> bool {
        self.is_hub_admin() || (self.scopes.admin && self.tenant.as_deref() == tenant && tenant.is_some())
    }

    /// Whether the credential has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|exp| now_ms >= exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_keys_are_length_prefixed_by_tenant() {
        // Stored bookkeeping uses these keys: their form must not drift.
        let hub = Account {
            tenant: None,
            sub: "alice",
        };
        let acme = Account {
            tenant: Some("acme"),
            sub: "alice",
        };
        assert_eq!(
            (hub.key(), acme.key()),
            ("h:alice".to_string(), "t4:acme:alice".to_string())
        );
        let tricky = Account {
            tenant: Some("acme:x"),
            sub: "y",
        };
        assert_ne!(
            tricky.key(),
            Account {
                tenant: Some("acme"),
                sub: "x:y"
            }
            .key()
        );
    }
}
