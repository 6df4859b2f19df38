//! User JWTs.
//!
//! The algorithm is pinned by the key: the token's header only selects among
//! the keys the operator configured, each of which verifies exactly one
//! algorithm. An HS256 secret is never tried against an RS256 token and a
//! public key is never used as an HMAC secret (the classic algorithm-switch
//! attack); `alg: none` is refused. Keys are the single keys per algorithm
//! (`jwt_secret`, `jwt_rs256_public_key`…), keys named by `kid`
//! (`[[jwt_keys]]`) and an identity provider's key set (`jwks_url`); which
//! one a token gets is [`super::keys`]' rule. The checks themselves are the
//! shared [`super::jwt_core`]; this module holds the native policy (`sub` and
//! `exp` required, `iss`/`aud` when configured) and the `herald` claim.

use super::jwks::JwksPool;
use super::jwt_core::{Expiry, PinnedKey, Policy};
use super::keys::{self, KeyRing};
use super::AuthError;
use crate::config::Config;
use herald_core::{CredentialKind, Principal, Scopes, SelectorSet, SessionKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

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

/// The claims read from a verified native token: everything but the
/// registered time claims, which [`super::jwt_core`] has already checked (and may
/// carry fractions, which these fields need not understand).
#[derive(Deserialize)]
struct NativeClaims {
    sub: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    herald: HeraldClaims,
}

/// The configured verification keys and the native policy.
pub struct JwtVerifier {
    keys: KeyRing,
    policy: Policy,
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
    /// (configured or generated). A `jwks_url` gets a key set of its own,
    /// refreshed on schedule when this is called inside a Tokio runtime
    /// (a hub shares one [`JwksPool`] instead, see
    /// [`JwtVerifier::from_config_in`]).
    pub fn from_config(config: &Config, secret: Option<&str>) -> Result<JwtVerifier, KeyError> {
        let pool = JwksPool::from_config(config);
        let verifier = JwtVerifier::from_config_in(config, secret, &pool)?;
        pool.start(&tokio_util::sync::CancellationToken::new());
        Ok(verifier)
    }

    /// [`JwtVerifier::from_config`], taking the key set of `jwks_url` from
    /// `pool` (whose owner starts its refreshes).
    pub fn from_config_in(config: &Config, secret: Option<&str>, pool: &JwksPool) -> Result<JwtVerifier, KeyError> {
        let mut keys = KeyRing::default();
        if let Some(s) = secret {
            // Checked here too, not only in `Config::check`: an embedder may
            // hand the builder its own secrets.
            let key = PinnedKey::hmac("jwt_secret", Algorithm::HS256, s.as_bytes())
                .map_err(|why| KeyError { key: "jwt_secret", why })?;
            keys.add_unnamed(key);
        }
        let files: [(&'static str, &Option<std::path::PathBuf>, Algorithm); 3] = [
            ("jwt_rs256_public_key", &config.jwt_rs256_public_key, Algorithm::RS256),
            ("jwt_es256_public_key", &config.jwt_es256_public_key, Algorithm::ES256),
            ("jwt_eddsa_public_key", &config.jwt_eddsa_public_key, Algorithm::EdDSA),
        ];
        for (name, path, alg) in files {
            let Some(path) = path else { continue };
            let pem = std::fs::read(path).map_err(|e| KeyError {
                key: name,
                why: format!("cannot read {}: {e}", path.display()),
            })?;
            let key = keys::public_key_from_pem(alg, &pem).map_err(|why| KeyError {
                key: name,
                why: format!("{}: {why}", path.display()),
            })?;
            keys.add_unnamed(key);
        }
        for (i, k) in config.jwt_keys.iter().enumerate() {
            let fail = |why: String| KeyError {
                key: "jwt_keys",
                why: format!("entry {} (kid {:?}): {why}", i + 1, k.kid),
            };
            let alg = Algorithm::from_str(&k.alg).map_err(|_| fail(format!("unknown algorithm {:?}", k.alg)))?;
            let key = match (&k.secret, &k.public_key) {
                (Some(secret), None) => PinnedKey::hmac("jwt_keys", alg, secret.as_bytes()).map_err(fail)?,
                (None, Some(path)) => {
                    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
                    keys::public_key_from_pem(alg, &pem).map_err(|why| fail(format!("{}: {why}", path.display())))?
                }
                _ => return Err(fail("give either `secret` (HS256/384/512) or `public_key`".into())),
            };
            if !keys.add_named(k.kid.clone(), key) {
                return Err(fail("duplicate kid".into()));
            }
        }
        if let Some(url) = &config.jwks_url {
            keys.add_set(pool.get(url).map_err(|why| KeyError { key: "jwks_url", why })?);
        }
        Ok(JwtVerifier {
            keys,
            policy: Policy {
                protocol: "Herald",
                required: &["sub"],
                expiry: Expiry::Required,
                issuer: config.jwt_issuer.clone(),
                audience: config.jwt_audience.clone(),
                leeway_secs: config.jwt_leeway_secs,
                max_lifetime_secs: config.max_token_lifetime_secs,
            },
        })
    }

    /// Before [`JwtVerifier::verify`], where the request may wait: fetches
    /// the identity provider's key set again when the token names a `kid`
    /// no key holds (rate-limited; see [`super::jwks`]).
    pub async fn prefetch(&self, raw: &str) {
        self.keys.prefetch(raw).await;
    }

    /// Changes whenever the keys may have ([`KeyRing::generation`]).
    pub fn key_generation(&self) -> u64 {
        self.keys.generation()
    }

    /// Verifies a JWT and builds its principal.
    pub fn verify(&self, raw: &str, session_key: &SessionKey, now_ms: u64) -> Result<Principal, AuthError> {
        let v = self.keys.verify(raw, &self.policy, now_ms)?;
        let c: NativeClaims = serde_json::from_value(serde_json::Value::Object(v.claims)).map_err(|_| {
            AuthError::new(
                "invalid_token",
                "claims are not valid (check sub, tenant, sid, roles, groups, jti, herald)",
            )
        })?;
        let subscribe = SelectorSet::parse(&c.herald.subscribe)
            .map_err(|e| AuthError::new("invalid_token", format!("herald.subscribe: {}", e.message)))?;
        let publish = SelectorSet::parse(&c.herald.publish)
            .map_err(|e| AuthError::new("invalid_token", format!("herald.publish: {}", e.message)))?;
        if c.sub.is_empty() {
            return Err(AuthError::new("invalid_token", "the sub claim must not be empty"));
        }
        // The tenant is half of the account's identity and is compared with
        // audience labels, which are never empty nor hold control
        // characters: a tenant claim that no audience could name is refused
        // rather than given a tenant of its own.
        if c.tenant.as_deref().is_some_and(|t| {
            t.is_empty() || t.len() > herald_core::audience::MAX_LABEL_LEN || t.chars().any(char::is_control)
        }) {
            return Err(AuthError::new(
                "invalid_token",
                "the tenant claim must be 1 to 256 bytes without control characters",
            ));
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
        p.expires_at_ms = Some(v.expires_at_secs.saturating_mul(1000));
        p.issued_at_ms = v.issued_at_secs.map(|s| s.saturating_mul(1000));
        p.issued_at_resolution_ms = 1000;
        p.jti = c.jti;
        p.fingerprint = v.fingerprint;
        p.kind = CredentialKind::Jwt;
        Ok(p)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "native-test-secret-at-least-32-bytes!";

    fn now_s() -> u64 {
        crate::clock::now_ms() / 1000
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::from_config(&Config::default(), Some(SECRET)).expect("verifier")
    }

    fn sign(header: Header, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("sign")
    }

    fn verify(token: &str) -> Result<Principal, AuthError> {
        verifier().verify(token, &SessionKey::derive(b"k"), crate::clock::now_ms())
    }

    #[test]
    fn a_native_token_with_a_future_iat_is_refused() {
        let now = now_s();
        let t = sign(
            Header::new(Algorithm::HS256),
            json!({"sub": "u", "iat": now + 3600, "exp": now + 7200}),
        );
        let e = verify(&t).expect_err("future iat");
        assert_eq!(e.code, "invalid_token");
        assert!(e.description.contains("iat"), "{}", e.description);
    }

    #[test]
    fn a_native_token_with_crit_is_refused() {
        let now = now_s();
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["b64".into()]);
        let e = verify(&sign(header, json!({"sub": "u", "iat": now, "exp": now + 60}))).expect_err("crit");
        assert_eq!(e.code, "invalid_token");
        assert!(e.description.contains("crit"), "{}", e.description);
    }

    #[test]
    fn a_native_token_with_a_future_nbf_is_refused() {
        let now = now_s();
        let t = sign(
            Header::new(Algorithm::HS256),
            json!({"sub": "u", "nbf": now + 60, "exp": now + 120}),
        );
        assert_eq!(verify(&t).expect_err("nbf").code, "invalid_token");
    }

    #[test]
    fn a_native_token_needs_exp_and_sub() {
        let now = now_s();
        let no_exp = sign(Header::new(Algorithm::HS256), json!({"sub": "u", "iat": now}));
        assert_eq!(verify(&no_exp).expect_err("exp").code, "invalid_token");
        let no_sub = sign(Header::new(Algorithm::HS256), json!({"iat": now, "exp": now + 60}));
        assert_eq!(verify(&no_sub).expect_err("sub").code, "invalid_token");
    }

    #[test]
    fn a_valid_native_token_keeps_its_claims() {
        let now = now_s();
        let t = sign(
            Header::new(Algorithm::HS256),
            json!({"sub": "u", "tenant": "acme", "iat": now, "exp": now + 60, "jti": "j",
                   "herald": {"subscribe": ["a.>"], "admin": true}}),
        );
        let p = verify(&t).expect("valid");
        assert_eq!((p.sub.as_str(), p.tenant.as_deref()), ("u", Some("acme")));
        assert_eq!(p.expires_at_ms, Some((now + 60) * 1000));
        assert_eq!(p.issued_at_ms, Some(now * 1000));
        assert_eq!(p.jti.as_deref(), Some("j"));
        assert!(p.scopes.admin);
    }

    #[test]
    fn a_short_jwt_secret_is_refused_at_build() {
        let e = JwtVerifier::from_config(&Config::default(), Some("sixteen-byte-key"))
            .err()
            .expect("short");
        assert_eq!(e.key, "jwt_secret");
        let config = Config {
            jwt_secret: Some("x".repeat(31)),
            store: crate::config::StoreKind::Memory,
            ..Config::default()
        };
        match crate::hub::Hub::builder(config).build() {
            Err(crate::hub::BuildError::Config(msg)) => assert!(msg.contains("jwt_secret"), "{msg}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a 31-byte secret was accepted"),
        }
        // Secrets handed to the builder directly are checked too.
        let config = Config {
            store: crate::config::StoreKind::Memory,
            ..Config::default()
        };
        let secrets = crate::secrets::Secrets {
            jwt_secret: Some("short".into()),
            session_key: SessionKey::derive(b"k"),
            generated_secret_file: None,
        };
        assert!(matches!(
            crate::hub::Hub::builder(config).secrets(secrets).build(),
            Err(crate::hub::BuildError::Config(_))
        ));
    }
}
