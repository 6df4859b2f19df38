//! Credential verification shared by every protocol: the failed
//! authentication limit, the sticky deny rules, metrics and the audit trail
//! wrap whatever verifier a protocol uses.

use super::{now_ms, HubInner};
use crate::audit::AuditEntry;
use crate::auth::{AuthError, Source};
use herald_core::Principal;
use serde_json::json;
use std::net::IpAddr;

/// Why a request was not authenticated. The protocol adapters turn it
/// into their answer (`401` with `WWW-Authenticate`, or `429`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The request carried no credential.
    #[error("no credential was presented")]
    Missing,
    /// The address failed too often; retry after this many seconds.
    #[error("too many failed authentications from this address")]
    RateLimited {
        /// Seconds until the address may try again.
        retry_after: u64,
    },
    /// The credential was refused (invalid, expired, revoked…).
    #[error("{0}")]
    Refused(AuthError),
}

impl From<AuthError> for VerifyError {
    fn from(e: AuthError) -> VerifyError {
        VerifyError::Refused(e)
    }
}

impl HubInner {
    /// Verifies a credential and applies the sticky deny rules and the
    /// failed-authentication limit. Every refusal is audited.
    pub fn authenticate(
        &self,
        source: Option<Source<'_>>,
        ip: IpAddr,
        consume: bool,
    ) -> Result<Principal, VerifyError> {
        let Some(source) = source else {
            self.check_rate(ip)?;
            return Err(VerifyError::Missing);
        };
        self.verify(ip, |now| self.auth.authenticate(source, now, consume))
    }

    /// Fetches what verifying `source` needs and the hub may not hold yet,
    /// so that the synchronous checks after it find it: on a cluster node
    /// an SSE token minted on another node (from the shared ledger), and
    /// for a user JWT naming an unknown `kid` the identity provider's key
    /// set (rate-limited, shared with concurrent requests). Never fails;
    /// an address already over its failure budget fetches nothing.
    pub async fn prepare_credential(&self, source: Option<Source<'_>>, ip: IpAddr) {
        let Some(source) = source else { return };
        if self.check_rate(ip).is_err() {
            return;
        }
        let (Source::Query(raw) | Source::Bearer(raw) | Source::Cookie(raw)) = source;
        if raw.starts_with(crate::auth::sse_token::PREFIX) {
            self.auth.sse_tokens.prefetch(raw).await;
        } else {
            self.auth.prefetch(source).await;
        }
    }

    /// Before verifying a Mercure subscriber token where the request may
    /// wait: an unknown `kid` has `mercure.subscriber_jwks_url` fetched
    /// again (rate-limited, shared). An address already over its failure
    /// budget fetches nothing.
    pub async fn prepare_mercure_subscriber(&self, raw: &str, ip: IpAddr) {
        if let (Some(m), Ok(())) = (&self.mercure, self.check_rate(ip)) {
            m.prefetch_subscriber(raw).await;
        }
    }

    /// The same for a Mercure publisher token and `mercure.publisher_jwks_url`.
    pub async fn prepare_mercure_publisher(&self, raw: &str, ip: IpAddr) {
        if let (Some(m), Ok(())) = (&self.mercure, self.check_rate(ip)) {
            m.prefetch_publisher(raw).await;
        }
    }

    /// Authenticates a request that is not a stream open
    /// ([`HubInner::authenticate_api`]) once what its credential needs is
    /// fetched ([`HubInner::prepare_credential`]): a publisher whose JWT
    /// names a key its identity provider has just published is answered,
    /// not refused.
    pub async fn authenticate_request(&self, source: Option<Source<'_>>, ip: IpAddr) -> Result<Principal, VerifyError> {
        self.prepare_credential(source, ip).await;
        self.authenticate_api(source, ip)
    }

    /// Authenticates a stream open. What the credential needs is fetched
    /// first ([`HubInner::prepare_credential`]); an SSE token is not spent
    /// here (admission spends it once the stream wins its slot).
    pub async fn authenticate_stream(&self, source: Option<Source<'_>>, ip: IpAddr) -> Result<Principal, VerifyError> {
        self.prepare_credential(source, ip).await;
        self.authenticate(source, ip, false)
    }

    /// Authenticates a request that is not a stream open: SSE tokens are
    /// refused here, since they exist only to open streams.
    pub fn authenticate_api(&self, source: Option<Source<'_>>, ip: IpAddr) -> Result<Principal, VerifyError> {
        let Some(source) = source else {
            self.check_rate(ip)?;
            return Err(VerifyError::Missing);
        };
        let p = self.verify(ip, |now| self.auth.authenticate_request(source, now))?;
        if matches!(p.kind, herald_core::CredentialKind::SseToken { .. }) {
            return Err(VerifyError::Refused(AuthError::new(
                "invalid_token",
                "SSE tokens only open streams; use a JWT or an API key here",
            )));
        }
        Ok(p)
    }

    /// Refuses an address that failed authentication too often.
    pub fn check_rate(&self, ip: IpAddr) -> Result<(), VerifyError> {
        match self.auth_failures.blocked(ip, now_ms()) {
            Some(retry_after) => Err(VerifyError::RateLimited { retry_after }),
            None => Ok(()),
        }
    }

    /// Runs a credential check with everything every protocol shares: the
    /// failed-authentication limit, the sticky deny rules, metrics and the
    /// audit trail.
    pub fn verify(
        &self,
        ip: IpAddr,
        check: impl FnOnce(u64) -> Result<Principal, AuthError>,
    ) -> Result<Principal, VerifyError> {
        self.check_rate(ip)?;
        let now = now_ms();
        let result = check(now).and_then(|p| match self.deny.denies(&p, now) {
            Some(reason) => Err(AuthError::new(
                "credential_revoked",
                format!("this credential was revoked ({reason})"),
            )),
            None => Ok(p),
        });
        result.map_err(|e| {
            self.auth_failures.record(ip, now);
            metrics::counter!("herald_auth_failures_total", "code" => e.code).increment(1);
            self.audit.record(
                AuditEntry {
                    kind: "auth_failed",
                    ip: Some(ip),
                    detail: json!({"code": e.code, "reason": e.description}),
                    ..AuditEntry::default()
                },
                now,
            );
            VerifyError::Refused(e)
        })
    }
}
