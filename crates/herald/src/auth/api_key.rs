//! Backend API keys (`hk_...`), configured by the hash of their secret.
//!
//! The hub never sees a key in its configuration, only `sha256:<hex>` or
//! `blake3:<hex>`, so a leaked config file grants nothing. `herald apikey`
//! generates a key and prints the line to paste.

use super::{fingerprint, AuthError};
use crate::config::ApiKeyConfig;
use herald_core::{CredentialKind, Principal, Scopes, SelectorSet};
use std::collections::HashMap;

/// Every API key starts with this, so it is told apart from a JWT at a glance.
pub const PREFIX: &str = "hk_";

/// Which hash function a configured key hash uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashKind {
    /// SHA-256 (handy with `sha256sum`).
    Sha256,
    /// BLAKE3.
    Blake3,
}

/// Parses `sha256:<hex>` / `blake3:<hex>`.
pub fn parse_hash(s: &str) -> Option<(HashKind, [u8; 32])> {
    let (kind, hex_part) = s.split_once(':')?;
    let kind = match kind {
        "sha256" => HashKind::Sha256,
        "blake3" => HashKind::Blake3,
        _ => return None,
    };
    let bytes = hex::decode(hex_part).ok()?;
    Some((kind, bytes.try_into().ok()?))
}

fn digest(kind: HashKind, secret: &str) -> [u8; 32] {
    match kind {
        HashKind::Blake3 => *blake3::hash(secret.as_bytes()).as_bytes(),
        HashKind::Sha256 => {
            // aws-lc-rs is already linked for TLS and JWT signatures.
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
            let mut out = [0u8; 32];
            out.copy_from_slice(d.as_ref());
            out
        }
    }
}

struct KeyEntry {
    id: String,
    scopes: Scopes,
    tenant: Option<String>,
    publish: SelectorSet,
}

/// The configured API keys, indexed by the hash of their secret.
#[derive(Default)]
pub struct ApiKeys {
    by_hash: HashMap<(HashKind, [u8; 32]), KeyEntry>,
    kinds: Vec<HashKind>,
}

impl ApiKeys {
    /// Builds the index. Configuration was checked by `Config::check`.
    pub fn new(keys: &[ApiKeyConfig]) -> ApiKeys {
        let mut out = ApiKeys::default();
        for key in keys {
            let Some((kind, hash)) = parse_hash(&key.hash) else {
                continue;
            };
            let scopes = key
                .scopes
                .iter()
                .fold(Scopes::default(), |s, name| s.with(name).unwrap_or(s));
            let publish = match &key.publish {
                Some(p) => SelectorSet::parse(p).unwrap_or_default(),
                None => SelectorSet::all(),
            };
            if !out.kinds.contains(&kind) {
                out.kinds.push(kind);
            }
            out.by_hash.insert(
                (kind, hash),
                KeyEntry {
                    id: key.id.clone(),
                    scopes,
                    tenant: key.tenant.clone(),
                    publish,
                },
            );
        }
        out
    }

    /// Verifies a presented key. Lookup is by hash, so timing reveals nothing
    /// about how much of a guess was right.
    pub fn verify(&self, raw: &str) -> Result<Principal, AuthError> {
        let entry = self
            .kinds
            .iter()
            .find_map(|kind| self.by_hash.get(&(*kind, digest(*kind, raw))))
            .ok_or_else(|| AuthError::new("invalid_token", "unknown API key"))?;
        let mut p = Principal::new(format!("apikey:{}", entry.id));
        p.tenant = entry.tenant.clone();
        p.scopes = entry.scopes;
        p.publish = if entry.scopes.publish {
            entry.publish.clone()
        } else {
            SelectorSet::default()
        };
        // A key subscribes to everything its tenant may see; streams are a
        // user's business, but an operator debugging with a key should see
        // what the hub sends.
        p.subscribe = SelectorSet::all();
        p.fingerprint = fingerprint(raw);
        p.kind = CredentialKind::ApiKey {
            key_id: entry.id.clone(),
        };
        Ok(p)
    }
}

/// Generates a new key and the `blake3:` hash to configure for it.
pub fn generate() -> (String, String) {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let key = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = format!("blake3:{}", hex::encode(blake3::hash(key.as_bytes()).as_bytes()));
    (key, hash)
}

/// The `sha256:` form of a key's hash (for operators who prefer sha256sum).
pub fn sha256_hash(key: &str) -> String {
    format!("sha256:{}", hex::encode(digest(HashKind::Sha256, key)))
}
