//! The one JWT verification core every protocol uses.
//!
//! Native tokens ([`super::jwt`]) and Mercure tokens
//! ([`super::mercure`]) differ in which claims they require and which
//! issuer, audience and lifetime they accept, never in how a token is taken
//! apart. This module does that once:
//!
//! * it decodes the header itself, so a header field the signature library
//!   would silently ignore cannot slip through: a `crit` header names
//!   extensions whose semantics Herald does not implement, and RFC 7515
//!   says such a token must be refused;
//! * it pins the algorithm to the configured keys: the header only selects
//!   among them, an HMAC secret is never tried on a public-key token and a
//!   public key is never used as an HMAC secret;
//! * it applies every time rule with the caller's clock (`exp`, `nbf`,
//!   `iat`, leeway, maximum lifetime), so a credential cannot claim to be
//!   issued in the future to survive deny rules that refuse credentials
//!   issued *before* a revocation.
//!
//! A [`Policy`] says what differs per protocol.

use super::{fingerprint, AuthError};
use crate::config::Config;
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::str::FromStr;

/// The shortest HMAC key Herald accepts, in bytes. A shorter shared secret
/// can be brute-forced offline from a single token.
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// A verification key pinned to the one algorithm it verifies.
#[derive(Clone)]
pub struct PinnedKey {
    alg: Algorithm,
    key: DecodingKey,
}

impl PinnedKey {
    /// An HMAC secret for `alg` (HS256/384/512). Refused when shorter than
    /// [`MIN_HMAC_KEY_BYTES`]; `name` is the configuration key, used in the
    /// warning and the error (never the secret itself).
    pub fn hmac(name: &str, alg: Algorithm, secret: &[u8]) -> Result<PinnedKey, String> {
        if alg.family() != AlgorithmFamily::Hmac {
            return Err(format!("{alg:?} is not an HMAC algorithm"));
        }
        if secret.len() < MIN_HMAC_KEY_BYTES {
            tracing::warn!(
                key = name,
                "refusing an HMAC key shorter than {MIN_HMAC_KEY_BYTES} bytes"
            );
            return Err(format!("an HMAC key must be at least {MIN_HMAC_KEY_BYTES} bytes long"));
        }
        Ok(PinnedKey {
            alg,
            key: DecodingKey::from_secret(secret),
        })
    }

    /// A public key for `alg` (RS*, PS*, ES*, EdDSA). Refused when `alg` is
    /// an HMAC algorithm or does not match the key's type: a public key is
    /// never an HMAC secret.
    pub fn public(alg: Algorithm, key: DecodingKey) -> Result<PinnedKey, String> {
        if alg.family() == AlgorithmFamily::Hmac || key.family() != alg.family() {
            return Err(format!("this key cannot verify {alg:?} tokens"));
        }
        Ok(PinnedKey { alg, key })
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
}

/// What a token without `exp` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `exp` is required.
    Required,
    /// Without `exp` the token expires `max_lifetime_secs` after its `iat`
    /// (a fixed instant, so a revoked token stays dead once its deny rule
    /// is forgotten); with neither, it is refused.
    IatPlusMaxLifetime,
}

/// The rules of one protocol.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Protocol name used in messages (`"Herald"`, `"Mercure"`).
    pub protocol: &'static str,
    /// Claims that must be present (and not `null`).
    pub required: &'static [&'static str],
    /// What a missing `exp` means.
    pub expiry: Expiry,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required member of `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
    pub leeway_secs: u64,
    /// Longest lifetime accepted (`exp - iat`, and `exp - now` minus the
    /// leeway), seconds.
    pub max_lifetime_secs: u64,
}

/// A token whose signature and time rules were checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Every claim, for the protocol to read its own.
    pub claims: Map<String, Value>,
    /// When it expires (seconds since the epoch): `exp`, or the expiry the
    /// policy derived from `iat`.
    pub expires_at_secs: u64,
    /// `iat`, if present (seconds since the epoch).
    pub issued_at_secs: Option<u64>,
    /// Fingerprint of the raw token.
    pub fingerprint: [u8; 16],
}

fn invalid(description: impl Into<String>) -> AuthError {
    AuthError::new("invalid_token", description)
}

/// Decodes the header segment: base64url (no padding) of a JSON object.
fn header(segment: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| invalid("malformed token: the header is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid("malformed token: the header is not a JSON object")),
    }
}

/// Reads a NumericDate claim. Fractions are rounded towards refusal: down
/// for `exp` and `iat` (earlier expiry, older issue), up for `nbf`.
fn numeric_date(claims: &Map<String, Value>, name: &'static str, round_up: bool) -> Result<Option<u64>, AuthError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    if let Some(n) = v.as_u64() {
        return Ok(Some(n));
    }
    match v.as_f64() {
        Some(f) if f.is_finite() && (0.0..1e18).contains(&f) => {
            Ok(Some(if round_up { f.ceil() } else { f.floor() } as u64))
        }
        _ => Err(invalid(format!(
            "claim `{name}` must be a number of seconds since the epoch"
        ))),
    }
}

/// The longest `kid` header accepted, in bytes. Key ids are short labels
/// (a date, a thumbprint); a longer one is not looked up at all.
pub const MAX_KID_BYTES: usize = 256;

/// What Herald reads from a token's header before choosing a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// The algorithm the token claims (never `none`). It only selects among
    /// configured keys, each pinned to its own algorithm.
    pub alg: Algorithm,
    /// The key id, when the token names one.
    pub kid: Option<String>,
}

/// Reads and checks a token's header: three dot-separated parts, no
/// `crit`, a known algorithm other than `none`, a string `kid` of at most
/// [`MAX_KID_BYTES`].
pub fn read_header(raw: &str) -> Result<TokenHeader, AuthError> {
    let mut segments = raw.split('.');
    let (Some(head), Some(_), Some(_), None) = (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return Err(invalid("malformed token: a JWT has three dot-separated parts"));
    };
    let head = header(head)?;
    if head.contains_key("crit") {
        return Err(invalid(
            "the token's crit header names extensions Herald does not implement",
        ));
    }
    let alg_name = head
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("malformed token: the header has no alg"))?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(invalid("unsigned tokens (alg none) are never accepted"));
    }
    // The token's own string is never echoed: it is attacker-controlled.
    let alg = Algorithm::from_str(alg_name).map_err(|_| invalid("unknown or unsupported algorithm"))?;
    let kid = match head.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_BYTES => Some(k.clone()),
        Some(_) => {
            return Err(invalid(format!(
                "malformed token: kid must be a string of 1 to {MAX_KID_BYTES} bytes"
            )))
        }
    };
    Ok(TokenHeader { alg, kid })
}

/// The message for a token whose algorithm no configured key verifies.
pub fn no_key_for(alg: Algorithm, protocol: &str, keys: &[PinnedKey]) -> AuthError {
    let accepted: Vec<String> = keys.iter().map(|k| format!("{:?}", k.alg)).collect();
    invalid(format!(
        "no {protocol} key is configured for algorithm {alg:?} (this hub accepts {})",
        if accepted.is_empty() {
            "none".to_string()
        } else {
            accepted.join(", ")
        }
    ))
}

/// Verifies `raw` against `keys` under `policy` at `now_ms`: the key is the
/// one configured for the token's algorithm (its `kid` is not looked at).
pub fn verify(raw: &str, keys: &[PinnedKey], policy: &Policy, now_ms: u64) -> Result<Verified, AuthError> {
    let head = read_header(raw)?;
    let key = keys
        .iter()
        .find(|k| k.alg == head.alg)
        .ok_or_else(|| no_key_for(head.alg, policy.protocol, keys))?;
    verify_with(raw, &head, key, policy, now_ms)
}

/// Verifies `raw`, whose header was read as `head`, with `key` only, under
/// `policy` at `now_ms`. The token's algorithm must be the key's own: a
/// key chosen by `kid` is never used with another algorithm.
pub fn verify_with(
    raw: &str,
    head: &TokenHeader,
    key: &PinnedKey,
    policy: &Policy,
    now_ms: u64,
) -> Result<Verified, AuthError> {
    if head.alg != key.alg {
        return Err(invalid(format!(
            "the token's algorithm {:?} does not match its key's ({:?})",
            head.alg, key.alg
        )));
    }

    // The library checks the signature only; every claim rule is below,
    // with the caller's clock.
    let mut validation = Validation::new(key.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(raw, &key.key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid("bad signature"),
        jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => invalid("algorithm does not match the key"),
        _ => invalid("malformed token"),
    })?;
    let Value::Object(claims) = data.claims else {
        return Err(invalid("the token's claims are not a JSON object"));
    };

    for name in policy.required {
        if claims.get(*name).is_none_or(Value::is_null) {
            return Err(invalid(format!("missing required claim `{name}`")));
        }
    }
    let exp = numeric_date(&claims, "exp", false)?;
    let nbf = numeric_date(&claims, "nbf", true)?;
    let iat = numeric_date(&claims, "iat", false)?;
    let now = now_ms / 1000;
    let leeway = policy.leeway_secs;
    let max = policy.max_lifetime_secs;

    let (exp, derived) = match (exp, policy.expiry, iat) {
        (Some(exp), _, _) => (exp, false),
        (None, Expiry::Required, _) => return Err(invalid("missing required claim `exp`")),
        (None, Expiry::IatPlusMaxLifetime, Some(iat)) => (iat.saturating_add(max), true),
        (None, Expiry::IatPlusMaxLifetime, None) => {
            return Err(invalid(format!(
                "the token has neither `exp` nor `iat`, so it would never expire; add `exp` (at most {max} s from now)"
            )))
        }
    };
    if exp.saturating_add(leeway) < now {
        return Err(AuthError::new(
            "token_expired",
            if derived {
                format!("the token has expired (it has no exp, so it expired {max} s after its iat)")
            } else {
                "the token has expired".to_string()
            },
        ));
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(invalid("the token is not valid yet (nbf)"));
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(invalid(
            "the token claims to be issued in the future (iat); check the issuer's clock",
        ));
    }
    if iat.is_some_and(|iat| exp.saturating_sub(iat) > max) {
        return Err(invalid(format!("token lifetime exceeds the hub's maximum of {max} s")));
    }
    if exp.saturating_sub(now) > max.saturating_add(leeway) {
        return Err(invalid(format!("token expires more than {max} s from now")));
    }

    if let Some(want) = &policy.issuer {
        match claims.get("iss") {
            Some(Value::String(iss)) if iss == want => {}
            None => return Err(invalid("missing required claim `iss`")),
            Some(_) => return Err(invalid("wrong issuer (iss)")),
        }
    }
    if let Some(want) = &policy.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == want,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want.as_str())),
            None => return Err(invalid("missing required claim `aud` (wrong audience)")),
            Some(_) => false,
        };
        if !ok {
            return Err(invalid("wrong audience (aud)"));
        }
    }

    Ok(Verified {
        claims,
        expires_at_secs: exp,
        issued_at_secs: iat,
        fingerprint: fingerprint(raw),
    })
}

/// Whether `alg` (default HS256, as Mercure assumes) names an HMAC
/// algorithm. An unknown name is not: loading the key refuses it later
/// with its own message.
fn is_hmac(alg: Option<&str>) -> bool {
    Algorithm::from_str(alg.unwrap_or("HS256")).is_ok_and(|a| a.family() == AlgorithmFamily::Hmac)
}

/// The first configured HMAC key shorter than [`MIN_HMAC_KEY_BYTES`], as
/// (configuration key, reason). Every configured HMAC key is checked, even
/// one another setting overrides: a short secret in a configuration is a
/// mistake either way.
pub fn short_hmac_key(config: &Config) -> Option<(&'static str, String)> {
    let m = &config.mercure;
    let keys = [
        ("jwt_secret", config.jwt_secret.as_deref(), true),
        ("mercure.jwt_key", m.jwt_key.as_deref(), is_hmac(m.jwt_alg.as_deref())),
        (
            "mercure.publisher_jwt_key",
            m.publisher_jwt_key.as_deref(),
            is_hmac(m.publisher_jwt_alg.as_deref().or(m.jwt_alg.as_deref())),
        ),
        (
            "mercure.subscriber_jwt_key",
            m.subscriber_jwt_key.as_deref(),
            is_hmac(m.subscriber_jwt_alg.as_deref().or(m.jwt_alg.as_deref())),
        ),
    ];
    keys.into_iter().find_map(|(name, key, hmac)| {
        let short = hmac && key.is_some_and(|k| k.len() < MIN_HMAC_KEY_BYTES);
        short.then(|| {
            tracing::warn!(
                key = name,
                "refusing an HMAC key shorter than {MIN_HMAC_KEY_BYTES} bytes"
            );
            (
                name,
                format!("an HMAC key must be at least {MIN_HMAC_KEY_BYTES} bytes long (try `openssl rand -hex 32`)"),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes";
    const NOW: u64 = 1_700_000_000;

    fn keys() -> Vec<PinnedKey> {
        vec![PinnedKey::hmac("test", Algorithm::HS256, SECRET.as_bytes()).expect("key")]
    }

    fn policy(expiry: Expiry) -> Policy {
        Policy {
            protocol: "Herald",
            required: &["sub"],
            expiry,
            issuer: None,
            audience: None,
            leeway_secs: 5,
            max_lifetime_secs: 3600,
        }
    }

    fn sign(claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    }

    fn check(claims: Value, expiry: Expiry) -> Result<Verified, AuthError> {
        verify(&sign(claims), &keys(), &policy(expiry), NOW * 1000)
    }

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn a_good_token_passes() {
        let v = check(json!({"sub": "u", "iat": NOW, "exp": NOW + 60}), Expiry::Required).expect("valid");
        assert_eq!(v.expires_at_secs, NOW + 60);
        assert_eq!(v.issued_at_secs, Some(NOW));
    }

    #[test]
    fn crit_header_is_refused() {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let t = jsonwebtoken::encode(
            &header,
            &json!({"sub": "u", "iat": NOW, "exp": NOW + 60}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        let e = verify(&t, &keys(), &policy(Expiry::Required), NOW * 1000).expect_err("crit");
        assert_eq!(e.code, "invalid_token");
        assert!(e.description.contains("crit"), "{}", e.description);
    }

    #[test]
    fn future_iat_is_refused_beyond_the_leeway() {
        let e = check(json!({"sub": "u", "iat": NOW + 60, "exp": NOW + 120}), Expiry::Required).expect_err("future");
        assert_eq!(e.code, "invalid_token");
        assert!(e.description.contains("iat"), "{}", e.description);
        check(json!({"sub": "u", "iat": NOW + 5, "exp": NOW + 120}), Expiry::Required).expect("within leeway");
    }

    #[test]
    fn future_or_malformed_nbf_is_refused() {
        let e = check(json!({"sub": "u", "nbf": NOW + 60, "exp": NOW + 120}), Expiry::Required).expect_err("nbf");
        assert_eq!(e.code, "invalid_token");
        let e = check(json!({"sub": "u", "nbf": "soon", "exp": NOW + 120}), Expiry::Required).expect_err("nbf");
        assert_eq!(e.code, "invalid_token");
        let e = check(json!({"sub": "u", "nbf": -1, "exp": NOW + 120}), Expiry::Required).expect_err("nbf");
        assert_eq!(e.code, "invalid_token");
        check(json!({"sub": "u", "nbf": NOW, "exp": NOW + 120}), Expiry::Required).expect("nbf now");
    }

    #[test]
    fn malformed_exp_and_iat_are_refused() {
        for claims in [
            json!({"sub": "u", "exp": "tomorrow"}),
            json!({"sub": "u", "exp": null}),
            json!({"sub": "u", "exp": NOW + 60, "iat": "now"}),
        ] {
            assert_eq!(
                check(claims, Expiry::Required).expect_err("malformed").code,
                "invalid_token"
            );
        }
    }

    #[test]
    fn expired_is_token_expired() {
        let e = check(json!({"sub": "u", "exp": NOW - 10}), Expiry::Required).expect_err("expired");
        assert_eq!(e.code, "token_expired");
        check(json!({"sub": "u", "exp": NOW - 5}), Expiry::Required).expect("within leeway");
    }

    #[test]
    fn required_claims_and_exp() {
        let e = check(json!({"exp": NOW + 60}), Expiry::Required).expect_err("no sub");
        assert!(e.description.contains("sub"), "{}", e.description);
        let e = check(json!({"sub": "u", "iat": NOW}), Expiry::Required).expect_err("no exp");
        assert!(e.description.contains("exp"), "{}", e.description);
    }

    #[test]
    fn without_exp_the_token_expires_max_lifetime_after_iat() {
        let v = check(json!({"sub": "u", "iat": NOW - 100}), Expiry::IatPlusMaxLifetime).expect("iat only");
        assert_eq!(v.expires_at_secs, NOW - 100 + 3600);
        // The same token presented later expires at the same instant.
        let later = verify(
            &sign(json!({"sub": "u", "iat": NOW - 100})),
            &keys(),
            &policy(Expiry::IatPlusMaxLifetime),
            (NOW + 1000) * 1000,
        )
        .expect("still valid");
        assert_eq!(later.expires_at_secs, v.expires_at_secs);
        let e = check(json!({"sub": "u", "iat": NOW - 4000}), Expiry::IatPlusMaxLifetime).expect_err("old");
        assert_eq!(e.code, "token_expired");
    }

    #[test]
    fn neither_exp_nor_iat_is_refused() {
        let e = check(json!({"sub": "u"}), Expiry::IatPlusMaxLifetime).expect_err("neither");
        assert_eq!(e.code, "invalid_token");
        assert!(e.description.contains("add `exp`"), "{}", e.description);
    }

    #[test]
    fn lifetime_caps_apply() {
        let e = check(json!({"sub": "u", "iat": NOW, "exp": NOW + 3601}), Expiry::Required).expect_err("long");
        assert!(e.description.contains("lifetime"), "{}", e.description);
        let e = check(json!({"sub": "u", "exp": NOW + 4000}), Expiry::Required).expect_err("far");
        assert!(e.description.contains("from now"), "{}", e.description);
        check(json!({"sub": "u", "exp": NOW + 3605}), Expiry::Required).expect("max + leeway");
    }

    #[test]
    fn fractional_dates_round_towards_refusal() {
        let v = check(
            json!({"sub": "u", "iat": NOW as f64 + 0.7, "exp": NOW as f64 + 60.9}),
            Expiry::Required,
        )
        .expect("fractions");
        assert_eq!((v.issued_at_secs, v.expires_at_secs), (Some(NOW), NOW + 60));
        let e = check(
            json!({"sub": "u", "nbf": (NOW + 5) as f64 + 0.1, "exp": NOW + 60}),
            Expiry::Required,
        )
        .expect_err("nbf rounds up");
        assert_eq!(e.code, "invalid_token");
    }

    #[test]
    fn algorithm_is_pinned_and_none_refused() {
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none"})),
            b64(&json!({"sub": "u", "exp": NOW + 60}))
        );
        let e = verify(&none, &keys(), &policy(Expiry::Required), NOW * 1000).expect_err("none");
        assert!(e.description.contains("none"), "{}", e.description);
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &json!({"sub": "u", "exp": NOW + 60}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        let e = verify(&hs384, &keys(), &policy(Expiry::Required), NOW * 1000).expect_err("alg");
        assert!(e.description.contains("HS256"), "{}", e.description);
        let mut forged = sign(json!({"sub": "u", "exp": NOW + 60}));
        forged.push('A');
        assert_eq!(
            verify(&forged, &keys(), &policy(Expiry::Required), NOW * 1000)
                .expect_err("sig")
                .code,
            "invalid_token"
        );
        let header_not_object = format!("{}.{}.sig", b64(&json!(["HS256"])), b64(&json!({})));
        assert!(verify(&header_not_object, &keys(), &policy(Expiry::Required), NOW * 1000).is_err());
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let mut p = policy(Expiry::Required);
        p.issuer = Some("me".into());
        p.audience = Some("herald".into());
        let run = |c: Value| verify(&sign(c), &keys(), &p, NOW * 1000);
        run(json!({"sub": "u", "exp": NOW + 60, "iss": "me", "aud": ["x", "herald"]})).expect("ok");
        assert!(run(json!({"sub": "u", "exp": NOW + 60, "aud": "herald"})).is_err());
        assert!(run(json!({"sub": "u", "exp": NOW + 60, "iss": "me"})).is_err());
        let e = run(json!({"sub": "u", "exp": NOW + 60, "iss": "me", "aud": "other"})).expect_err("aud");
        assert!(e.description.contains("audience"), "{}", e.description);
    }

    #[test]
    fn short_hmac_keys_are_refused() {
        assert!(PinnedKey::hmac("k", Algorithm::HS256, &[7; 31]).is_err());
        assert!(PinnedKey::hmac("k", Algorithm::HS256, &[7; 32]).is_ok());
        let mut c = Config::default();
        assert!(short_hmac_key(&c).is_none());
        c.mercure.jwt_key = Some("sixteen-byte-key".into());
        assert_eq!(short_hmac_key(&c).map(|(k, _)| k), Some("mercure.jwt_key"));
        c.mercure.jwt_alg = Some("RS256".into());
        assert!(short_hmac_key(&c).is_none(), "a PEM path is not an HMAC key");
        c.mercure.subscriber_jwt_key = Some("short".into());
        c.mercure.subscriber_jwt_alg = Some("HS512".into());
        assert_eq!(short_hmac_key(&c).map(|(k, _)| k), Some("mercure.subscriber_jwt_key"));
        c.jwt_secret = Some("x".repeat(31));
        assert_eq!(short_hmac_key(&c).map(|(k, _)| k), Some("jwt_secret"));
    }
}
