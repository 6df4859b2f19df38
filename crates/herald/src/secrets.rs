//! Secrets the hub needs at start: the HS256 secret and the session-hash key.
//!
//! With nothing configured the hub still starts securely: it generates a
//! random secret into the data dir, readable by its owner only, and reuses
//! it on the next start so tokens minted with `herald token` keep working.

use crate::auth::jwt_core::MIN_HMAC_KEY_BYTES;
use crate::config::Config;
use herald_core::SessionKey;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The resolved secrets.
pub struct Secrets {
    /// HS256 secret, if HS256 is in use.
    pub jwt_secret: Option<String>,
    /// Key for session-id hashes.
    pub session_key: SessionKey,
    /// Where a generated JWT secret lives, when one was generated or reused.
    pub generated_secret_file: Option<PathBuf>,
}

/// A secret file problem, reported as a configuration error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

fn read_or_create(path: &Path) -> Result<String, SecretError> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_string();
        if s.len() >= MIN_HMAC_KEY_BYTES {
            return Ok(s);
        }
        tracing::warn!(file = %path.display(), "refusing a secret file shorter than {MIN_HMAC_KEY_BYTES} bytes");
        return Err(SecretError(format!(
            "{} is shorter than {MIN_HMAC_KEY_BYTES} bytes; delete it to have a new one generated",
            path.display()
        )));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| SecretError(format!("`data_dir`: cannot create {}: {e}", dir.display())))?;
    }
    let bytes: [u8; 32] = rand::random();
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| SecretError(format!("`data_dir`: cannot write {}: {e}", path.display())))?;
    f.write_all(secret.as_bytes())
        .map_err(|e| SecretError(format!("`data_dir`: cannot write {}: {e}", path.display())))?;
    Ok(secret)
}

/// Resolves the secrets from configuration, generating what is missing.
pub fn resolve(config: &Config) -> Result<Secrets, SecretError> {
    // Any other native key means the operator chose how user tokens are
    // signed: no HS256 secret is generated behind their back.
    let public_keys = config.jwt_rs256_public_key.is_some()
        || config.jwt_es256_public_key.is_some()
        || config.jwt_eddsa_public_key.is_some()
        || !config.jwt_keys.is_empty()
        || config.jwks_url.is_some();
    let (jwt_secret, generated_secret_file) = match (&config.jwt_secret, public_keys) {
        (Some(s), _) => (Some(s.clone()), None),
        (None, true) => (None, None),
        (None, false) => {
            let path = config.data_dir.join("jwt_secret");
            (Some(read_or_create(&path)?), Some(path))
        }
    };
    let session_key = match (&config.session_hash_key, &jwt_secret) {
        (Some(k), _) => SessionKey::derive(k.as_bytes()),
        (None, Some(s)) => SessionKey::derive(s.as_bytes()),
        (None, None) => SessionKey::derive(read_or_create(&config.data_dir.join("session_hash_key"))?.as_bytes()),
    };
    Ok(Secrets {
        jwt_secret,
        session_key,
        generated_secret_file,
    })
}
