//! Authentication: turns a presented credential into a [`Principal`].
//!
//! Three kinds of credential are accepted, each in its own module: user JWTs
//! ([`jwt`]), backend API keys ([`api_key`]) and hub-minted SSE tokens
//! ([`sse_token`]). Where a credential may come from is decided here: the
//! query string (`?token=`) only ever carries SSE tokens, because URLs end
//! up in logs. Every JWT, native or Mercure, goes through the one
//! verification core in [`jwt_core`], with the key [`keys`] chooses
//! (configured, or fetched from an identity provider by [`jwks`]).

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod jwt_core;
pub mod keys;
pub mod mercure;
pub mod sse_token;
pub mod verified;

use herald_core::{Principal, SessionKey};

/// Why a credential was refused. Rendered as `401` with
/// `WWW-Authenticate: Bearer error="invalid_token", error_description=...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct AuthError {
    /// Stable code: `missing_credential`, `invalid_token`, `token_expired`,
    /// `credential_revoked`, ...
    pub code: &'static str,
    /// Human explanation, safe to show (never contains the credential).
    pub description: String,
}

impl AuthError {
    /// Builds an error.
    pub fn new(code: &'static str, description: impl Into<String>) -> AuthError {
        AuthError {
            code,
            description: description.into(),
        }
    }
}

/// Where the credential was found.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// `Authorization: Bearer ...`
    Bearer(&'a str),
    /// The `herald_token` cookie.
    Cookie(&'a str),
    /// `?token=` on a subscribe request.
    Query(&'a str),
}

/// All configured ways of verifying credentials.
pub struct Authenticator {
    /// JWT verification keys.
    pub jwt: jwt::JwtVerifier,
    /// Configured API keys.
    pub api_keys: api_key::ApiKeys,
    /// Outstanding SSE tokens.
    pub sse_tokens: sse_token::SseTokens,
    /// Key for session-id hashes.
    pub session_key: SessionKey,
    /// The identity providers' key sets, native and Mercure.
    pub jwks: jwks::JwksPool,
    /// User JWTs that verified, remembered by hash ([`verified`]).
    pub verified: verified::VerifiedTokens,
}

/// How many verified user JWTs are remembered: a backend sends the same
/// one with every publish, mint or revocation, and a few thousand backends
/// cover a busy hub. About 1 KiB each at most.
pub const VERIFIED_KEPT: usize = 8192;

/// Whether a raw header or cookie credential is a user JWT: neither an SSE
/// token nor an API key, which have prefixes of their own.
fn is_user_jwt(raw: &str) -> bool {
    !raw.starts_with(sse_token::PREFIX) && !raw.starts_with(api_key::PREFIX)
}

/// Fingerprint of a raw credential: a short hash, enough to recognise it
/// again (revocation, token bookkeeping) without ever storing it.
pub fn fingerprint(raw: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(raw.as_bytes()).as_bytes()[..16]);
    out
}

impl Authenticator {
    /// Before [`Authenticator::authenticate`], where the request may wait:
    /// a user JWT naming a `kid` no key holds has the identity provider's
    /// key set fetched again (rate-limited, shared; see [`jwks`]).
    pub async fn prefetch(&self, source: Source<'_>) {
        if let Source::Bearer(raw) | Source::Cookie(raw) = source {
            if is_user_jwt(raw) {
                self.jwt.prefetch(raw).await;
            }
        }
    }

    /// Verifies the credential of a request that is not a stream open: a
    /// user JWT is remembered once verified ([`verified`]), since a
    /// backend sends the same one with every publish. Stream opens do not
    /// use the cache: a subscriber presents its JWT once per connection,
    /// and ten thousand of them would only fill it.
    pub fn authenticate_request(&self, source: Source<'_>, now_ms: u64) -> Result<Principal, AuthError> {
        match source {
            Source::Bearer(raw) | Source::Cookie(raw) if is_user_jwt(raw) => self.verify_jwt(raw, now_ms),
            _ => self.authenticate(source, now_ms, false),
        }
    }

    /// Verifies a user JWT, or recalls that it verified. The generation is
    /// read before verifying, so a key set that changes meanwhile leaves
    /// the new entry stale rather than a withdrawn key's token fresh.
    fn verify_jwt(&self, raw: &str, now_ms: u64) -> Result<Principal, AuthError> {
        let generation = self.jwt.key_generation();
        let key = verified::VerifiedTokens::key(raw);
        if let Some(p) = self.verified.get(&key, generation, now_ms) {
            return Ok(p);
        }
        let p = self.jwt.verify(raw, &self.session_key, now_ms)?;
        self.verified.insert(key, &p, generation);
        Ok(p)
    }

    /// Verifies a credential. `consume` redeems single-use SSE tokens (set on
    /// stream opens, not on other requests).
    pub fn authenticate(&self, source: Source<'_>, now_ms: u64, consume: bool) -> Result<Principal, AuthError> {
        match source {
            Source::Query(raw) => {
                if !raw.starts_with(sse_token::PREFIX) {
                    return Err(AuthError::new(
                        "invalid_token",
                        "the token query parameter only accepts SSE tokens from POST /v1/tokens; send JWTs and API keys in the Authorization header",
                    ));
                }
                self.sse_tokens.redeem(raw, now_ms, consume)
            }
            Source::Bearer(raw) | Source::Cookie(raw) => {
                if raw.starts_with(sse_token::PREFIX) {
                    self.sse_tokens.redeem(raw, now_ms, consume)
                } else if raw.starts_with(api_key::PREFIX) {
                    if matches!(source, Source::Cookie(_)) {
                        return Err(AuthError::new("invalid_token", "API keys are not accepted in cookies"));
                    }
                    self.api_keys.verify(raw)
                } else {
                    self.jwt.verify(raw, &self.session_key, now_ms)
                }
            }
        }
    }
}
