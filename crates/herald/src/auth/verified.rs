//! A bounded cache of verified user JWTs.
//!
//! A backend publishing thousands of events a second sends the same JWT
//! with each request, and checking its signature again each time is most of
//! what a publish costs beyond HTTP: a few microseconds for HS256, tens for
//! RS256 or ES256. So a JWT that verified is remembered, keyed by a hash of
//! the whole token (never the token itself), with the principal it gave.
//!
//! A remembered principal is only as good as the check it came from, so an
//! entry is used only while
//! * the token has not expired (its `exp` is in the principal), and
//! * no key set has changed since ([`super::keys::KeyRing::generation`]):
//!   a withdrawn key must stop verifying at once, so every fetch of an
//!   identity provider's key set empties the cache.
//!
//! Deny rules are not the cache's business: [`crate::hub::HubInner::verify`]
//! judges every principal against them, cached or not, so a revoked token
//! is refused on its next request.

use herald_core::Principal;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Shards, so concurrent publishers rarely wait for one another's lock.
const SHARDS: usize = 16;

struct Entry {
    principal: Principal,
    generation: u64,
}

/// Verified JWTs by the hash of the token.
pub struct VerifiedTokens {
    shards: [Mutex<HashMap<[u8; 32], Entry>>; SHARDS],
    per_shard: usize,
}

impl VerifiedTokens {
    /// A cache holding about `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> VerifiedTokens {
        VerifiedTokens {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    /// The token's hash, the cache key.
    pub fn key(raw: &str) -> [u8; 32] {
        *blake3::hash(raw.as_bytes()).as_bytes()
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<HashMap<[u8; 32], Entry>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The principal a token verified to, if it did under the key sets of
    /// `generation` and has not expired at `now_ms`.
    pub fn get(&self, key: &[u8; 32], generation: u64, now_ms: u64) -> Option<Principal> {
        if self.per_shard == 0 {
            return None;
        }
        let mut shard = self.shard(key).lock();
        let entry = shard.get(key)?;
        if entry.generation != generation || entry.principal.is_expired(now_ms) {
            shard.remove(key);
            return None;
        }
        Some(entry.principal.clone())
    }

    /// Remembers that a token verified to `principal` under the key sets of
    /// `generation`. A full shard is emptied first: a simple bound that
    /// costs one re-verification per token, instead of bookkeeping an
    /// eviction order on every request.
    pub fn insert(&self, key: [u8; 32], principal: &Principal, generation: u64) {
        if self.per_shard == 0 || principal.expires_at_ms.is_none() {
            return;
        }
        let mut shard = self.shard(&key).lock();
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.clear();
        }
        shard.insert(
            key,
            Entry {
                principal: principal.clone(),
                generation,
            },
        );
    }

    /// Tokens remembered now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(exp_ms: u64) -> Principal {
        let mut p = Principal::new("alice");
        p.expires_at_ms = Some(exp_ms);
        p
    }

    #[test]
    fn an_entry_holds_until_its_token_expires_or_a_key_set_changes() {
        let cache = VerifiedTokens::new(100);
        let k = VerifiedTokens::key("a.b.c");
        cache.insert(k, &principal(2_000), 7);
        assert!(cache.get(&k, 7, 1_999).is_some());
        assert!(cache.get(&k, 8, 1_000).is_none(), "a key set changed");
        assert!(cache.get(&k, 7, 1_000).is_none(), "dropped on the mismatch");
        cache.insert(k, &principal(2_000), 7);
        assert!(cache.get(&k, 7, 2_000).is_none(), "expired");
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_bounded_and_zero_disables_it() {
        let cache = VerifiedTokens::new(64);
        for i in 0..10_000u32 {
            cache.insert(VerifiedTokens::key(&i.to_string()), &principal(u64::MAX), 1);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
        let off = VerifiedTokens::new(0);
        let k = VerifiedTokens::key("x");
        off.insert(k, &principal(u64::MAX), 1);
        assert!(off.get(&k, 1, 0).is_none());
    }

    #[test]
    fn a_token_without_expiry_is_never_remembered() {
        let cache = VerifiedTokens::new(10);
        let k = VerifiedTokens::key("x");
        cache.insert(k, &Principal::new("alice"), 1);
        assert!(cache.get(&k, 1, 0).is_none());
    }
}
