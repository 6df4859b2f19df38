//! Choosing the key a token is verified with.
//!
//! A [`KeyRing`] holds up to three kinds of key, each pinned to one
//! algorithm:
//!
//! 1. keys named by `kid` in the configuration (`[[jwt_keys]]`), so an
//!    operator rolls keys by listing the old and the new one;
//! 2. keys named by `kid` in identity providers' key sets ([`super::jwks`]);
//! 3. at most one key per algorithm, not named (`jwt_secret`,
//!    `jwt_rs256_public_key`, a Mercure key…), as before key ids existed.
//!
//! A token naming a `kid` held by 1 or 2 is verified with that key only;
//! otherwise with the unnamed key for its algorithm, if there is one. A
//! `kid` found nowhere, with key sets configured, has the sets fetched
//! again (rate-limited, see [`super::jwks`]) before the token is refused.

use super::jwks::Jwks;
use super::jwt_core::{self, PinnedKey, Policy, TokenHeader, Verified};
use super::AuthError;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use std::collections::HashMap;
use std::sync::Arc;

/// The keys one protocol role accepts.
#[derive(Default)]
pub struct KeyRing {
    /// Unnamed keys, chosen by the token's algorithm.
    by_alg: Vec<PinnedKey>,
    /// Configured keys, chosen by `kid`.
    by_kid: HashMap<String, PinnedKey>,
    /// Identity providers' key sets, chosen by `kid`.
    sets: Vec<Arc<Jwks>>,
}

impl KeyRing {
    /// Adds an unnamed key (the only one for its algorithm: a second one
    /// for the same algorithm would never be tried).
    pub fn add_unnamed(&mut self, key: PinnedKey) {
        if !self.by_alg.iter().any(|k| k.alg() == key.alg()) {
            self.by_alg.push(key);
        }
    }

    /// Adds a key chosen by `kid`; false when the `kid` is taken.
    pub fn add_named(&mut self, kid: String, key: PinnedKey) -> bool {
        if self.by_kid.contains_key(&kid) {
            return false;
        }
        self.by_kid.insert(kid, key);
        true
    }

    /// Adds an identity provider's key set.
    pub fn add_set(&mut self, set: Arc<Jwks>) {
        if !self.sets.iter().any(|s| Arc::ptr_eq(s, &set)) {
            self.sets.push(set);
        }
    }

    /// Whether the ring holds no key at all (key sets count, even empty).
    pub fn is_empty(&self) -> bool {
        self.by_alg.is_empty() && self.by_kid.is_empty() && self.sets.is_empty()
    }

    /// Changes whenever a key set this ring reads may have changed (each
    /// set's fetch count only grows, so their sum does too): what a cached
    /// verification was made under ([`super::verified`]).
    pub fn generation(&self) -> u64 {
        self.sets.iter().map(|s| s.generation()).sum()
    }

    /// The key sets this ring reads.
    pub fn sets(&self) -> &[Arc<Jwks>] {
        &self.sets
    }

    /// The key named `kid`, configured or fetched.
    fn named(&self, kid: &str) -> Option<PinnedKey> {
        if let Some(k) = self.by_kid.get(kid) {
            return Some(k.clone());
        }
        self.sets.iter().find_map(|s| s.key(kid))
    }

    /// Verifies `raw` under `policy` at `now_ms` with the key it names, or
    /// the unnamed key for its algorithm. Never waits: a `kid` nobody
    /// holds asks the key sets for a fetch in the background and is
    /// refused now (call [`KeyRing::prefetch`] first where waiting is
    /// fine).
    pub fn verify(&self, raw: &str, policy: &Policy, now_ms: u64) -> Result<Verified, AuthError> {
        let head = jwt_core::read_header(raw)?;
        if let Some(kid) = &head.kid {
            if let Some(key) = self.named(kid) {
                return jwt_core::verify_with(raw, &head, &key, policy, now_ms);
            }
        }
        if let Some(key) = self.by_alg.iter().find(|k| k.alg() == head.alg) {
            return jwt_core::verify_with(raw, &head, key, policy, now_ms);
        }
        Err(self.refusal(&head, policy.protocol))
    }

    /// Why no key verifies a token with this header.
    fn refusal(&self, head: &TokenHeader, protocol: &str) -> AuthError {
        let named = !self.by_kid.is_empty() || !self.sets.is_empty();
        match &head.kid {
            Some(kid) if !self.sets.is_empty() => {
                for set in &self.sets {
                    set.kick(kid);
                }
                AuthError::new(
                    "invalid_token",
                    format!(
                        "the token's key id (kid) is unknown: no {protocol} key set holds it (a set is fetched again for an unknown kid at most every {} s)",
                        super::jwks::MIN_ON_DEMAND_INTERVAL.as_secs()
                    ),
                )
            }
            Some(_) if named => AuthError::new(
                "invalid_token",
                format!("the token's key id (kid) names no configured {protocol} key"),
            ),
            None if named => AuthError::new(
                "invalid_token",
                format!(
                    "the token names no key (kid), and no {protocol} key is configured for algorithm {:?} alone; keys from a key set or jwt_keys are chosen by kid",
                    head.alg
                ),
            ),
            _ => jwt_core::no_key_for(head.alg, protocol, &self.by_alg),
        }
    }

    /// Before [`KeyRing::verify`], where the request may wait: when the
    /// token names a `kid` no key here holds, fetches the key sets again
    /// (at most once per [`super::jwks::MIN_ON_DEMAND_INTERVAL`], sharing a
    /// fetch already under way).
    pub async fn prefetch(&self, raw: &str) {
        if self.sets.is_empty() {
            return;
        }
        let Ok(head) = jwt_core::read_header(raw) else { return };
        let Some(kid) = head.kid else { return };
        if self.named(&kid).is_some() {
            return;
        }
        for set in &self.sets {
            set.refresh_for(&kid).await;
        }
    }
}

/// A public key for `alg` from PEM (`-----BEGIN PUBLIC KEY-----`, or the
/// RSA/EC forms the signature library reads), pinned to `alg`.
pub fn public_key_from_pem(alg: Algorithm, pem: &[u8]) -> Result<PinnedKey, String> {
    let key = match alg.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => return Err(format!("{alg:?} takes a secret, not a public key")),
    }
    .map_err(|e| format!("not a valid {alg:?} public key: {e}"))?;
    PinnedKey::public(alg, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt_core::Expiry;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const A: &str = "key-a-that-is-at-least-thirty-two-bytes-long";
    const B: &str = "key-b-that-is-at-least-thirty-two-bytes-long";
    const NOW: u64 = 1_700_000_000;

    fn policy() -> Policy {
        Policy {
            protocol: "Herald",
            required: &["sub"],
            expiry: Expiry::Required,
            issuer: None,
            audience: None,
            leeway_secs: 5,
            max_lifetime_secs: 3600,
        }
    }

    fn sign(alg: Algorithm, kid: Option<&str>, secret: &str) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &h,
            &json!({"sub": "u", "exp": NOW + 60}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    }

    fn check(ring: &KeyRing, token: &str) -> Result<Verified, AuthError> {
        ring.verify(token, &policy(), NOW * 1000)
    }

    #[test]
    fn a_named_key_is_the_only_one_tried_for_its_kid() {
        let mut ring = KeyRing::default();
        ring.add_unnamed(PinnedKey::hmac("a", Algorithm::HS256, A.as_bytes()).expect("a"));
        assert!(ring.add_named(
            "b".into(),
            PinnedKey::hmac("b", Algorithm::HS256, B.as_bytes()).expect("b")
        ));
        assert!(!ring.add_named(
            "b".into(),
            PinnedKey::hmac("b", Algorithm::HS256, A.as_bytes()).expect("b")
        ));
        check(&ring, &sign(Algorithm::HS256, Some("b"), B)).expect("named key");
        check(&ring, &sign(Algorithm::HS256, None, A)).expect("unnamed key, no kid");
        // A kid nobody holds falls back to the unnamed key, as before key ids.
        check(&ring, &sign(Algorithm::HS256, Some("zzz"), A)).expect("unnamed key, unknown kid");
        // The kid names B: A's signature does not pass, even though A is configured.
        let e = check(&ring, &sign(Algorithm::HS256, Some("b"), A)).expect_err("wrong key");
        assert!(e.description.contains("signature"), "{}", e.description);
        // The key's algorithm, not the token's.
        let e = check(&ring, &sign(Algorithm::HS384, Some("b"), B)).expect_err("alg");
        assert!(e.description.contains("does not match"), "{}", e.description);
    }

    #[test]
    fn without_unnamed_keys_a_token_must_name_its_key() {
        let mut ring = KeyRing::default();
        ring.add_named(
            "b".into(),
            PinnedKey::hmac("b", Algorithm::HS256, B.as_bytes()).expect("b"),
        );
        let e = check(&ring, &sign(Algorithm::HS256, None, B)).expect_err("no kid");
        assert!(e.description.contains("kid"), "{}", e.description);
        let e = check(&ring, &sign(Algorithm::HS256, Some("c"), B)).expect_err("unknown kid");
        assert!(e.description.contains("kid"), "{}", e.description);
        let e = check(&KeyRing::default(), &sign(Algorithm::HS256, None, B)).expect_err("no keys");
        assert!(e.description.contains("none"), "{}", e.description);
    }
}
