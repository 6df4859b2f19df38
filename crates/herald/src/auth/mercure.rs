//! Mercure credentials: JWTs carrying a `mercure` claim, verified with the
//! publisher or subscriber key, and turned into Herald principals so that
//! every Herald guarantee (visibility, caps, revocation, expiry, audit)
//! applies to Mercure clients unchanged.
//!
//! The token is checked by the same core as native tokens
//! ([`crate::auth::jwt_core`]) with the same time rules; the Mercure policy
//! differs only in what it requires: the `mercure` claim instead of `sub`,
//! and either `exp` or an `iat` to count the hub's maximum lifetime from.
//!
//! Each role (publisher, subscriber) has either one key, or, as in
//! Mercure, an identity provider's key set (`publisher_jwks_url`,
//! `subscriber_jwks_url`), which then takes precedence over the role's
//! key: its tokens are chosen a key by `kid` ([`crate::auth::keys`]).

use crate::auth::jwks::JwksPool;
use crate::auth::jwt_core::{Expiry, PinnedKey, Policy};
use crate::auth::keys::KeyRing;
use crate::auth::AuthError;
use crate::config::Config;
use herald_core::{CredentialKind, Principal, Scopes, SelectorSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use std::str::FromStr;

/// The `mercure` claim.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct MercureClaim {
    /// Topic selectors the token may publish to.
    #[serde(default)]
    pub publish: Option<Vec<String>>,
    /// Topic selectors whose private updates the token may receive.
    #[serde(default)]
    pub subscribe: Option<Vec<String>>,
    /// Arbitrary data exposed in subscription events.
    #[serde(default)]
    pub payload: Option<Value>,
}

/// The claims read from a verified Mercure token (the time claims were
/// checked by the core).
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    mercure: Option<MercureClaim>,
}

/// A verified Mercure token.
pub struct MercureToken {
    /// The principal it stands for.
    pub principal: Principal,
    /// Its `mercure` claim.
    pub claim: MercureClaim,
}

/// Publisher and subscriber keys.
pub struct MercureAuth {
    publisher: Option<KeyRing>,
    subscriber: Option<KeyRing>,
    policy: Policy,
    max_lifetime_ms: u64,
}

/// A key configuration problem.
#[derive(Debug, thiserror::Error)]
#[error("`{0}`: {1}")]
pub struct KeyError(pub &'static str, pub String);

fn load(name: &'static str, key: &str, alg: Option<&str>) -> Result<PinnedKey, KeyError> {
    let alg = Algorithm::from_str(alg.unwrap_or("HS256"))
        .map_err(|_| KeyError(name, format!("unknown algorithm {:?}", alg.unwrap_or_default())))?;
    let pem = || -> Result<Vec<u8>, KeyError> {
        if key.trim_start().starts_with("-----BEGIN") {
            Ok(key.as_bytes().to_vec())
        } else {
            std::fs::read(key).map_err(|e| KeyError(name, format!("cannot read the PEM file {key}: {e}")))
        }
    };
    let decoding = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            return PinnedKey::hmac(name, alg, key.as_bytes()).map_err(|why| KeyError(name, why));
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem()?).map_err(|e| KeyError(name, e.to_string()))?,
        Algorithm::ES256 | Algorithm::ES384 => {
            DecodingKey::from_ec_pem(&pem()?).map_err(|e| KeyError(name, e.to_string()))?
        }
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem()?).map_err(|e| KeyError(name, e.to_string()))?,
        other => return Err(KeyError(name, format!("algorithm {other:?} is not supported"))),
    };
    PinnedKey::public(alg, decoding).map_err(|why| KeyError(name, why))
}

impl MercureAuth {
    /// Builds the keys: `publisher_jwks_url`, else `publisher_jwt_key`,
    /// else `jwt_key`, else the hub's HS256 `jwt_secret` (same for
    /// subscribers). A key set is refreshed on schedule when this is called
    /// inside a Tokio runtime (a hub shares one [`JwksPool`] instead, see
    /// [`MercureAuth::from_config_in`]).
    pub fn from_config(config: &Config, hub_secret: Option<&str>) -> Result<MercureAuth, KeyError> {
        let pool = JwksPool::from_config(config);
        let auth = MercureAuth::from_config_in(config, hub_secret, &pool)?;
        pool.start(&tokio_util::sync::CancellationToken::new());
        Ok(auth)
    }

    /// [`MercureAuth::from_config`], taking the key sets from `pool`
    /// (whose owner starts their refreshes).
    pub fn from_config_in(config: &Config, hub_secret: Option<&str>, pool: &JwksPool) -> Result<MercureAuth, KeyError> {
        let m = &config.mercure;
        let pick = |name: &'static str,
                    jwks: (&'static str, &Option<String>),
                    specific: &Option<String>,
                    alg: &Option<String>|
         -> Result<Option<KeyRing>, KeyError> {
            let mut ring = KeyRing::default();
            if let (set_name, Some(url)) = jwks {
                ring.add_set(pool.get(url).map_err(|why| KeyError(set_name, why))?);
                return Ok(Some(ring));
            }
            let key = match (specific, &m.jwt_key, hub_secret) {
                (Some(k), _, _) => load(name, k, alg.as_deref().or(m.jwt_alg.as_deref()))?,
                (None, Some(k), _) => load("mercure.jwt_key", k, m.jwt_alg.as_deref())?,
                (None, None, Some(secret)) => load("jwt_secret", secret, Some("HS256"))?,
                (None, None, None) => return Ok(None),
            };
            ring.add_unnamed(key);
            Ok(Some(ring))
        };
        Ok(MercureAuth {
            publisher: pick(
                "mercure.publisher_jwt_key",
                ("mercure.publisher_jwks_url", &m.publisher_jwks_url),
                &m.publisher_jwt_key,
                &m.publisher_jwt_alg,
            )?,
            subscriber: pick(
                "mercure.subscriber_jwt_key",
                ("mercure.subscriber_jwks_url", &m.subscriber_jwks_url),
                &m.subscriber_jwt_key,
                &m.subscriber_jwt_alg,
            )?,
            policy: Policy {
                protocol: "Mercure",
                required: &["mercure"],
                // Mercure 0.x accepts tokens without `exp`. Herald does too
                // when they carry `iat`, but they expire at `iat` plus the
                // hub's maximum lifetime: a fixed instant, so a revoked token
                // stays dead once its deny rule is forgotten.
                expiry: Expiry::IatPlusMaxLifetime,
                issuer: None,
                audience: None,
                leeway_secs: config.jwt_leeway_secs,
                max_lifetime_secs: config.max_token_lifetime_secs,
            },
            max_lifetime_ms: config.max_token_lifetime_secs.saturating_mul(1000),
        })
    }

    fn verify(&self, keys: Option<&KeyRing>, raw: &str, now_ms: u64) -> Result<MercureToken, AuthError> {
        let keys = keys.ok_or_else(|| AuthError::new("invalid_token", "no Mercure key is configured"))?;
        let v = keys.verify(raw, &self.policy, now_ms)?;
        let c: Claims = serde_json::from_value(Value::Object(v.claims))
            .map_err(|_| AuthError::new("invalid_token", "malformed claims (check sub, jti, mercure)"))?;
        // A token without the `mercure` claim is some other application's
        // token signed with the same key: it grants nothing here. (The
        // policy already requires the claim; this also covers its type.)
        let claim = c
            .mercure
            .ok_or_else(|| AuthError::new("invalid_token", "the token has no `mercure` claim"))?;
        let fp = v.fingerprint;
        let mut p = Principal::new(
            c.sub
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("mercure:{}", hex::encode(&fp[..6]))),
        );
        let selectors = |list: &Option<Vec<String>>, what: &str| {
            SelectorSet::parse(list.as_deref().unwrap_or_default())
                .map_err(|e| AuthError::new("invalid_token", format!("mercure.{what}: {}", e.message)))
        };
        p.publish = selectors(&claim.publish, "publish")?;
        p.private_updates = Some(selectors(&claim.subscribe, "subscribe")?);
        p.subscribe = SelectorSet::all();
        p.scopes = Scopes {
            publish: !p.publish.is_empty(),
            ..Scopes::default()
        };
        // `exp`, or `iat` + the maximum lifetime: never counted from now,
        // so presenting the token again does not extend it.
        p.expires_at_ms = Some(v.expires_at_secs.saturating_mul(1000));
        p.issued_at_ms = v.issued_at_secs.map(|s| s.saturating_mul(1000));
        p.issued_at_resolution_ms = 1000;
        p.jti = c.jti;
        p.fingerprint = fp;
        p.kind = CredentialKind::Jwt;
        Ok(MercureToken { principal: p, claim })
    }

    /// Verifies a subscriber token.
    pub fn subscriber(&self, raw: &str, now_ms: u64) -> Result<MercureToken, AuthError> {
        self.verify(self.subscriber.as_ref(), raw, now_ms)
    }

    /// Verifies a publisher token.
    pub fn publisher(&self, raw: &str, now_ms: u64) -> Result<MercureToken, AuthError> {
        self.verify(self.publisher.as_ref(), raw, now_ms)
    }

    /// Before [`MercureAuth::subscriber`], where the request may wait:
    /// fetches `subscriber_jwks_url` again when the token names a `kid` it
    /// does not hold (rate-limited; see [`crate::auth::jwks`]).
    pub async fn prefetch_subscriber(&self, raw: &str) {
        if let Some(keys) = &self.subscriber {
            keys.prefetch(raw).await;
        }
    }

    /// Before [`MercureAuth::publisher`]: the same for `publisher_jwks_url`.
    pub async fn prefetch_publisher(&self, raw: &str) {
        if let Some(keys) = &self.publisher {
            keys.prefetch(raw).await;
        }
    }

    /// An anonymous subscriber: public updates only, each stream its own
    /// account (so account caps do not lump strangers together; the IP cap
    /// still applies).
    pub fn anonymous(&self, now_ms: u64) -> Principal {
        let id: [u8; 8] = rand::random();
        let mut p = Principal::new(format!("anonymous:{}", hex::encode(id)));
        p.subscribe = SelectorSet::all();
        p.private_updates = Some(SelectorSet::default());
        p.expires_at_ms = Some(now_ms.saturating_add(self.max_lifetime_ms));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
    const MAX: u64 = 3600;

    fn config() -> Config {
        let mut c = Config {
            max_token_lifetime_secs: MAX,
            ..Config::default()
        };
        c.mercure.jwt_key = Some(KEY.into());
        c
    }

    fn auth() -> MercureAuth {
        MercureAuth::from_config(&config(), None).expect("keys")
    }

    fn sign(claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(KEY.as_bytes()),
        )
        .expect("sign")
    }

    fn now_ms() -> u64 {
        crate::clock::now_ms()
    }

    fn code(claims: Value) -> &'static str {
        match auth().subscriber(&sign(claims), now_ms()) {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn without_exp_a_token_expires_max_lifetime_after_its_iat() {
        let now = now_ms();
        let iat = now / 1000 - 100;
        let t = sign(json!({"sub": "a", "iat": iat, "mercure": {"subscribe": ["*"]}}));
        let first = auth().subscriber(&t, now).expect("valid").principal;
        assert_eq!(first.expires_at_ms, Some((iat + MAX) * 1000));
        // Presented again later, it does not live any longer.
        let again = auth().subscriber(&t, now + 60_000).expect("valid").principal;
        assert_eq!(again.expires_at_ms, first.expires_at_ms);
        // Once iat + max has passed, it is expired for good.
        let e = auth().subscriber(&t, (iat + MAX + 10) * 1000).err().expect("expired");
        assert_eq!(e.code, "token_expired");
    }

    #[test]
    fn a_token_with_neither_exp_nor_iat_is_refused() {
        let e = auth()
            .publisher(&sign(json!({"mercure": {"publish": ["*"]}})), now_ms())
            .err()
            .expect("refused");
        assert_eq!(e.code, "invalid_token");
        assert!(e.description.contains("add `exp`"), "{}", e.description);
    }

    #[test]
    fn nbf_and_iat_in_the_future_are_refused() {
        let now = now_ms() / 1000;
        assert_eq!(
            code(json!({"nbf": now + 60, "exp": now + 120, "mercure": {}})),
            "invalid_token"
        );
        assert_eq!(
            code(json!({"nbf": "later", "exp": now + 120, "mercure": {}})),
            "invalid_token"
        );
        assert_eq!(
            code(json!({"iat": now + 60, "exp": now + 120, "mercure": {}})),
            "invalid_token"
        );
        assert_eq!(code(json!({"iat": now + 60, "mercure": {}})), "invalid_token");
        assert_eq!(
            code(json!({"iat": now, "nbf": now, "exp": now + 120, "mercure": {}})),
            "ok"
        );
    }

    #[test]
    fn exp_gets_the_native_lifetime_caps() {
        let now = now_ms() / 1000;
        assert_eq!(
            code(json!({"iat": now, "exp": now + MAX + 1, "mercure": {}})),
            "invalid_token"
        );
        assert_eq!(code(json!({"exp": now + MAX * 10, "mercure": {}})), "invalid_token");
        assert_eq!(code(json!({"exp": now + 60, "mercure": {}})), "ok");
        assert_eq!(code(json!({"exp": now - 60, "mercure": {}})), "token_expired");
    }

    #[test]
    fn the_mercure_claim_and_crit_rules_hold() {
        let now = now_ms() / 1000;
        assert_eq!(code(json!({"sub": "x", "exp": now + 60})), "invalid_token");
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let t = jsonwebtoken::encode(
            &header,
            &json!({"exp": now + 60, "mercure": {}}),
            &EncodingKey::from_secret(KEY.as_bytes()),
        )
        .expect("sign");
        let e = auth().subscriber(&t, now_ms()).err().expect("crit");
        assert!(e.description.contains("crit"), "{}", e.description);
    }

    #[test]
    fn anonymous_subscribers_are_unchanged() {
        let now = now_ms();
        let p = auth().anonymous(now);
        assert_eq!(p.expires_at_ms, Some(now + MAX * 1000));
        assert!(p.sub.starts_with("anonymous:"));
    }

    #[test]
    fn short_hmac_keys_are_refused_at_build() {
        let mut c = config();
        c.mercure.jwt_key = Some("0123456789abcdef".into());
        let e = MercureAuth::from_config(&c, None).err().expect("short");
        assert_eq!(e.0, "mercure.jwt_key");
        c.mercure.jwt_key = None;
        c.mercure.publisher_jwt_key = Some("x".repeat(31));
        let e = MercureAuth::from_config(&c, None).err().expect("short");
        assert_eq!(e.0, "mercure.publisher_jwt_key");
        c.store = crate::config::StoreKind::Memory;
        match crate::hub::Hub::builder(c).build() {
            Err(crate::hub::BuildError::Config(msg)) => {
                assert!(msg.contains("mercure.publisher_jwt_key"), "{msg}")
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a 31-byte Mercure key was accepted"),
        }
    }
}
