//! Session identifiers are never kept raw: they are hashed at the edge.
//!
//! A session id is as good as a password for the time it lives. Herald keys a
//! BLAKE3 hash with a server secret, so a leaked hash (in a log, a metric or a
//! store dump) can neither be replayed nor tested against guessed ids.

use std::fmt;

/// A keyed BLAKE3 hash of a session id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHash(pub [u8; 32]);

impl SessionHash {
    /// The first 8 hex characters: enough to correlate audit lines, too short
    /// to be useful to an attacker.
    pub fn prefix(&self) -> String {
        self.to_hex()[..8].to_string()
    }

    /// Full lowercase hex form (used by the store and the revocation index).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses the full hex form produced by [`SessionHash::to_hex`].
    pub fn from_hex(s: &str) -> Option<SessionHash> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
        }
        Some(SessionHash(out))
    }
}

impl fmt::Debug for SessionHash {
    // Debug output only shows the prefix so that a stray `{:?}` in a log line
    // never prints the whole hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHash({}…)", self.prefix())
    }
}

/// The server secret that keys session hashes.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// Wraps 32 secret bytes.
    pub fn new(key: [u8; 32]) -> Self {
        SessionKey(key)
    }

    /// Derives a key from arbitrary secret material (e.g. the JWT secret),
    /// with a fixed context string so the derived key is used for nothing else.
    pub fn derive(material: &[u8]) -> Self {
        SessionKey(blake3::derive_key("herald 2026 session-id hashing", material))
    }

    /// Hashes a raw session id.
    pub fn hash(&self, session_id: &str) -> SessionHash {
        SessionHash(*blake3::keyed_hash(&self.0, session_id.as_bytes()).as_bytes())
    }

    /// A key for another purpose, derived from this one under `context`
    /// (a fixed, globally unique string). Every node of a cluster shares
    /// the session key, so each derived key is shared too, and no value
    /// computed under one purpose can be replayed under another.
    pub fn subkey(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_differs_per_key_and_round_trips_hex() {
        let a = SessionKey::new([1; 32]).hash("s1");
        let b = SessionKey::new([2; 32]).hash("s1");
        assert_ne!(a, b);
        assert_eq!(SessionHash::from_hex(&a.to_hex()), Some(a));
        assert_eq!(a.prefix().len(), 8);
        assert!(!format!("{a:?}").contains(&a.to_hex()));
    }

    #[test]
    fn subkeys_differ_per_context_and_per_key() {
        let k = SessionKey::new([1; 32]);
        assert_ne!(k.subkey("herald test a"), k.subkey("herald test b"));
        assert_ne!(
            k.subkey("herald test a"),
            SessionKey::new([2; 32]).subkey("herald test a")
        );
        assert_eq!(k.subkey("herald test a"), k.subkey("herald test a"));
    }
}
