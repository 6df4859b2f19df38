//! How events and hub state are written to the store: plain JSON records,
//! versioned by the store's format number. JSON keeps `herald store verify`
//! output and a hex dump of the file readable by an operator, and costs a
//! few microseconds per event — far below an fsync.

use herald_core::revocation::AccountRevokeReason;
use herald_core::{
    Audience, CredentialKind, DenyRule, Event, EventDraft, Principal, Revocation, Scopes, SelectorSet, SessionHash,
};
use serde::{Deserialize, Serialize};

/// A stored event.
#[derive(Serialize, Deserialize)]
pub struct EventRecord {
    seq: u64,
    id: String,
    topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    event_type: Option<String>,
    data: String,
    audience: AudienceRecord,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    retain: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<u64>,
    t: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct AudienceRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    users: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sessions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    private: bool,
}

/// A record that does not decode: the store is damaged or from elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct DecodeError(pub String);

fn hashes(v: &Option<Vec<String>>) -> Result<Option<Vec<SessionHash>>, DecodeError> {
    v.as_ref()
        .map(|list| {
            list.iter()
                .map(|h| SessionHash::from_hex(h).ok_or_else(|| DecodeError(format!("bad session hash {h:?}"))))
                .collect()
        })
        .transpose()
}

impl EventRecord {
    /// The stored form of an event.
    pub fn from_event(e: &Event) -> EventRecord {
        let a = &e.audience;
        EventRecord {
            seq: e.seq,
            id: e.id.clone(),
            topics: e.topics.clone(),
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            audience: AudienceRecord {
                tenant: a.tenant.clone(),
                users: a.users.clone(),
                sessions: a.sessions.as_ref().map(|s| s.iter().map(SessionHash::to_hex).collect()),
                roles: a.roles.clone(),
                groups: a.groups.clone(),
                private: a.private,
            },
            retain: e.retain,
            retry: e.retry,
            t: e.published_at_ms,
        }
    }

    /// Rebuilds the event (its frame is encoded again).
    pub fn into_event(self) -> Result<Event, DecodeError> {
        let audience = Audience {
            tenant: self.audience.tenant,
            sessions: hashes(&self.audience.sessions)?,
            users: self.audience.users,
            roles: self.audience.roles,
            groups: self.audience.groups,
            private: self.audience.private,
        };
        let draft = EventDraft {
            topics: self.topics,
            event_type: self.event_type,
            data: self.data,
            id: Some(self.id),
            audience,
            retain: self.retain,
            retry: self.retry,
            unique_id: false,
        };
        Ok(draft.into_event(self.seq, self.t))
    }
}

/// Encodes an event.
pub fn encode_event(e: &Event) -> Vec<u8> {
    serde_json::to_vec(&EventRecord::from_event(e)).unwrap_or_default()
}

/// Decodes an event.
pub fn decode_event(bytes: &[u8]) -> Result<Event, DecodeError> {
    serde_json::from_slice::<EventRecord>(bytes)
        .map_err(|e| DecodeError(e.to_string()))?
        .into_event()
}

/// A stored principal (for outstanding SSE tokens).
#[derive(Serialize, Deserialize)]
pub struct PrincipalRecord {
    sub: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    expires_at_ms: Option<u64>,
    #[serde(default)]
    issued_at_ms: Option<u64>,
    issued_at_resolution_ms: u64,
    #[serde(default)]
    jti: Option<String>,
    fingerprint: String,
    token_id: String,
}

impl PrincipalRecord {
    /// The stored form of an SSE token's principal.
    pub fn from_principal(p: &Principal) -> PrincipalRecord {
        PrincipalRecord {
            sub: p.sub.clone(),
            tenant: p.tenant.clone(),
            session: p.session.map(|h| h.to_hex()),
            roles: p.roles.clone(),
            groups: p.groups.clone(),
            subscribe: p.subscribe.as_strings(),
            publish: p.publish.as_strings(),
            admin: p.scopes.admin,
            expires_at_ms: p.expires_at_ms,
            issued_at_ms: p.issued_at_ms,
            issued_at_resolution_ms: p.issued_at_resolution_ms,
            jti: p.jti.clone(),
            fingerprint: hex::encode(p.fingerprint),
            token_id: match &p.kind {
                CredentialKind::SseToken { token_id } => token_id.clone(),
                _ => String::new(),
            },
        }
    }

    /// Rebuilds the principal.
    pub fn into_principal(self) -> Result<Principal, DecodeError> {
        let bad = |what: &str| DecodeError(format!("bad {what} in a stored token"));
        let mut p = Principal::new(self.sub);
        p.tenant = self.tenant;
        p.session = self
            .session
            .map(|h| SessionHash::from_hex(&h).ok_or_else(|| bad("session")))
            .transpose()?;
        p.roles = self.roles;
        p.groups = self.groups;
        p.subscribe = SelectorSet::parse(&self.subscribe).map_err(|_| bad("selector"))?;
        p.publish = SelectorSet::parse(&self.publish).map_err(|_| bad("selector"))?;
        p.scopes = Scopes {
            admin: self.admin,
            ..Scopes::default()
        };
        p.expires_at_ms = self.expires_at_ms;
        p.issued_at_ms = self.issued_at_ms;
        p.issued_at_resolution_ms = self.issued_at_resolution_ms;
        p.jti = self.jti;
        let fp = hex::decode(&self.fingerprint).map_err(|_| bad("fingerprint"))?;
        p.fingerprint = fp.try_into().map_err(|_| bad("fingerprint"))?;
        p.kind = CredentialKind::SseToken {
            token_id: self.token_id,
        };
        Ok(p)
    }
}

/// A stored SSE token record.
#[derive(Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its principal.
    pub principal: PrincipalRecord,
    /// Expiry (ms).
    pub expires_at_ms: u64,
    /// Who minted it for whom.
    pub minter: String,
    /// Single use.
    pub single_use: bool,
    /// Already used.
    pub used: bool,
}

/// A stored deny rule.
#[derive(Serialize, Deserialize)]
pub struct DenyRecord {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    at_ms: u64,
    expires_at_ms: u64,
    #[serde(default)]
    within_tenant: Option<String>,
    #[serde(default)]
    seen: Vec<String>,
}

impl DenyRecord {
    /// The stored form of a rule.
    pub fn from_rule(r: &DenyRule) -> DenyRecord {
        let mut d = DenyRecord {
            kind: r.revocation.reason().to_string(),
            account: None,
            role: None,
            session: None,
            jti: None,
            tenant: None,
            at_ms: r.at_ms,
            expires_at_ms: r.expires_at_ms,
            within_tenant: r.within_tenant.clone(),
            seen: r.seen.iter().map(hex::encode).collect(),
        };
        match &r.revocation {
            Revocation::RoleGrantRevoke { account, role } => {
                d.account = Some(account.clone());
                d.role = Some(role.clone());
            }
            Revocation::SessionRevoke { account, session } => {
                d.account = Some(account.clone());
                d.session = Some(session.to_hex());
            }
            Revocation::AccountRevoke { account, .. } => d.account = Some(account.clone()),
            Revocation::TokenRevoke { jti } => d.jti = Some(jti.clone()),
            Revocation::TenantRevoke { tenant } => d.tenant = Some(tenant.clone()),
        }
        d
    }

    /// Rebuilds the rule.
    pub fn into_rule(self) -> Result<DenyRule, DecodeError> {
        let bad = |what: &str| DecodeError(format!("deny rule without {what}"));
        let account = || self.account.clone().ok_or_else(|| bad("account"));
        let account_reason = |reason| -> Result<Revocation, DecodeError> {
            Ok(Revocation::AccountRevoke {
                account: account()?,
                reason,
            })
        };
        let revocation = match self.kind.as_str() {
            "role_grant_revoke" => Revocation::RoleGrantRevoke {
                account: account()?,
                role: self.role.clone().ok_or_else(|| bad("role"))?,
            },
            "session_revoke" => Revocation::SessionRevoke {
                account: account()?,
                session: self
                    .session
                    .as_deref()
                    .and_then(SessionHash::from_hex)
                    .ok_or_else(|| bad("session"))?,
            },
            "session_revoke_all" => account_reason(AccountRevokeReason::SessionRevokeAll)?,
            "token_revoke_all" => account_reason(AccountRevokeReason::TokenRevokeAll)?,
            "password_change" => account_reason(AccountRevokeReason::PasswordChange)?,
            "logout" => account_reason(AccountRevokeReason::Logout)?,
            "token_revoke" => Revocation::TokenRevoke {
                jti: self.jti.clone().ok_or_else(|| bad("jti"))?,
            },
            "tenant_revoke" => Revocation::TenantRevoke {
                tenant: self.tenant.clone().ok_or_else(|| bad("tenant"))?,
            },
            other => return Err(DecodeError(format!("unknown deny rule type {other:?}"))),
        };
        let seen = self
            .seen
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|v| <[u8; 16]>::try_from(v).ok())
                    .ok_or_else(|| bad("valid fingerprints"))
            })
            .collect::<Result<_, _>>()?;
        Ok(DenyRule {
            revocation,
            at_ms: self.at_ms,
            expires_at_ms: self.expires_at_ms,
            within_tenant: self.within_tenant,
            seen,
        })
    }
}
