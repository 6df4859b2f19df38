//! User JWTs.
//!
//! The algorithm is pinned by the key: the token's header only selects among
//! the keys the operator configured, each of which verifies exactly one
//! algorithm. An HS256 secret is never tried against an RS256 token and a
//! public key is never used as an HMAC secret (the classic algorithm-switch
//! attack); `alg: none` does not even parse.

use super::{fingerprint, AuthError};
use crate::config::Config;
use herald_core::{CredentialKind, Principal, Scopes, SelectorSet, SessionKey};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims Herald reads from a user JWT.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Claims {
    /// Account id.
    pub sub: String,
    /// Tenant the user belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Session id (hashed on arrival, never stored raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Roles held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id, for `token_revoke`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Herald permissions.
    #[serde(default)]
    pub herald: HeraldClaims,
}

/// The `herald` claim: what the token may do on this hub.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HeraldClaims {
    /// Selectors the user may subscribe to (default: none).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Selectors the user may publish to (default: none).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Hub admin (or tenant admin when `tenant` is set).
    #[serde(default)]
    pub admin: bool,
}

/// The configured verification keys, one per algorithm.
pub struct JwtVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    max_lifetime_secs: u64,
}

/// A key problem found at start-up.
#[derive(Debug, thiserror::Error)]
#[error("`{key}`: {why}")]
pub struct KeyError {
    /// Config key at fault.
    pub key: &'static str,
    /// What is wrong.
    pub why: String,
}

impl JwtVerifier {
    /// Loads the keys named in `config`; `secret` is the HS256 secret
    /// (configured or generated).
    pub fn from_config(config: &Config, secret: Option<&str>) -> Result<JwtVerifier, KeyError> {
        let mut keys = Vec::new();
        if let Some(s) = secret {
            keys.push((Algorithm::HS256, DecodingKey::from_secret(s.as_bytes())));
        }
        type Loader = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
        let files: [(&'static str, &Option<std::path::PathBuf>, Algorithm, Loader); 3] = [
            (
                "jwt_rs256_public_key",
                &config.jwt_rs256_public_key,
                Algorithm::RS256,
                DecodingKey::from_rsa_pem,
            ),
            (
                "jwt_es256_public_key",
                &config.jwt_es256_public_key,
                Algorithm::ES256,
                DecodingKey::from_ec_pem,
            ),
            (
                "jwt_eddsa_public_key",
                &config.jwt_eddsa_public_key,
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem,
            ),
        ];
        for (name, path, alg, load) in files {
            let Some(path) = path else { continue };
            let pem = std::fs::read(path).map_err(|e| KeyError {
                key: name,
                why: format!("cannot read {}: {e}", path.display()),
            })?;
            let key = load(&pem).map_err(|e| KeyError {
                key: name,
                why: format!("{} is not a valid {alg:?} public key: {e}", path.display()),
            })?;
            keys.push((alg, key));
        }
        Ok(JwtVerifier {
            keys,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            leeway: config.jwt_leeway_secs,
            max_lifetime_secs: config.max_token_lifetime_secs,
        })
    }

    /// Verifies a JWT and builds its principal.
    pub fn verify(&self, raw: &str, session_key: &SessionKey, now_ms: u64) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(raw).map_err(|_| {
            AuthError::new(
                "invalid_token",
                "malformed token, or an algorithm Herald never accepts (such as none)",
            )
        })?;
        let (alg, key) = self.keys.iter().find(|(alg, _)| *alg == header.alg).ok_or_else(|| {
            AuthError::new(
                "invalid_token",
                format!("no key is configured for algorithm {:?}", header.alg),
            )
        })?;
        let mut validation = Validation::new(*alg);
        validation.leeway = self.leeway;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<Claims>(raw, key, &validation).map_err(|e| describe(e.kind()))?;
        let c = data.claims;
        if let Some(iat) = c.iat {
            if c.exp.saturating_sub(iat) > self.max_lifetime_secs {
                return Err(AuthError::new(
                    "invalid_token",
                    format!(
                        "token lifetime exceeds the hub's maximum of {} s",
                        self.max_lifetime_secs
                    ),
                ));
            }
        }
        if c.exp.saturating_sub(now_ms / 1000) > self.max_lifetime_secs + self.leeway {
            return Err(AuthError::new(
                "invalid_token",
                format!("token expires more than {} s from now", self.max_lifetime_secs),
            ));
        }
        let subscribe = SelectorSet::parse(&c.herald.subscribe)
            .map_err(|e| AuthError::new("invalid_token", format!("herald.subscribe: {}", e.message)))?;
        let publish = SelectorSet::parse(&c.herald.publish)
            .map_err(|e| AuthError::new("invalid_token", format!("herald.publish: {}", e.message)))?;
        if c.sub.is_empty() {
            return Err(AuthError::new("invalid_token", "the sub claim must not be empty"));
        }
        let mut p = Principal::new(c.sub);
        p.tenant = c.tenant;
        p.session = c.sid.as_deref().map(|s| session_key.hash(s));
        p.roles = c.roles;
        p.groups = c.groups;
        p.subscribe = subscribe;
        p.scopes = Scopes {
            publish: !publish.is_empty(),
            admin: c.herald.admin,
            ..Scopes::default()
        };
        p.publish = publish;
        p.expires_at_ms = Some(c.exp.saturating_mul(1000));
        p.issued_at_ms = c.iat.map(|s| s.saturating_mul(1000));
        p.issued_at_resolution_ms = 1000;
        p.jti = c.jti;
        p.fingerprint = fingerprint(raw);
        p.kind = CredentialKind::Jwt;
        Ok(p)
    }
}

/// Turns a jsonwebtoken error into a reason a developer can act on.
fn describe(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::new("token_expired", "the token has expired"),
        ErrorKind::ImmatureSignature => AuthError::new("invalid_token", "the token is not valid yet (nbf)"),
        ErrorKind::InvalidSignature => AuthError::new("invalid_token", "bad signature"),
        ErrorKind::InvalidAudience => AuthError::new("invalid_token", "wrong audience (aud)"),
        ErrorKind::InvalidIssuer => AuthError::new("invalid_token", "wrong issuer (iss)"),
        ErrorKind::InvalidAlgorithm => AuthError::new("invalid_token", "algorithm does not match the key"),
        ErrorKind::MissingRequiredClaim(c) => AuthError::new("invalid_token", format!("missing required claim `{c}`")),
        ErrorKind::InvalidClaimFormat(c) => {
            AuthError::new("invalid_token", format!("claim `{c}` has the wrong format"))
        }
        ErrorKind::Json(_) => AuthError::new("invalid_token", "claims are not valid (check sub, exp, roles, herald)"),
        _ => AuthError::new("invalid_token", "malformed token"),
    }
}

/// Signs an HS256 token (for `herald token` and tests).
pub fn sign_hs256(claims: &Claims, secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}
