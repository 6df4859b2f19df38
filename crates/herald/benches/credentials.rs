//! What verifying a publisher's credential costs per request, with and
//! without the cache of verified JWTs (`auth::verified`), for each
//! algorithm a user JWT may use. A backend sends the same token with every
//! publish, so after the first request the cached column is what it pays.
//! `cargo bench -p herald --bench credentials` (needs `openssl` to make the
//! throwaway RSA, P-256 and Ed25519 keys).

use herald::auth::{api_key::ApiKeys, jwks::JwksPool, jwt::JwtVerifier, sse_token::SseTokens};
use herald::auth::{verified::VerifiedTokens, Authenticator, Source};
use herald::config::Config;
use herald_core::SessionKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

fn main() {
    divan::main();
}

struct Keys {
    _dir: tempfile::TempDir,
    rs256: (PathBuf, Vec<u8>),
    es256: (PathBuf, Vec<u8>),
    eddsa: (PathBuf, Vec<u8>),
}

/// A private key (PEM, PKCS#8) and its public key's file, made by openssl.
fn pair(dir: &Path, name: &str, genpkey: &[&str]) -> (PathBuf, Vec<u8>) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let ok = Command::new("openssl")
        .args(["genpkey", "-out"])
        .arg(&private)
        .args(genpkey)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "openssl makes the {name} key");
    (public, std::fs::read(&private).expect("private key"))
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        Keys {
            rs256: pair(
                dir.path(),
                "rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
            es256: pair(
                dir.path(),
                "ec",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ),
            eddsa: pair(dir.path(), "ed", &["-algorithm", "ED25519"]),
            _dir: dir,
        }
    })
}

/// An authenticator knowing every key, remembering `cached` verified JWTs.
fn authenticator(cached: usize) -> Authenticator {
    let k = keys();
    let config = Config {
        jwt_secret: Some(SECRET.into()),
        jwt_rs256_public_key: Some(k.rs256.0.clone()),
        jwt_es256_public_key: Some(k.es256.0.clone()),
        jwt_eddsa_public_key: Some(k.eddsa.0.clone()),
        ..Config::default()
    };
    let jwks = JwksPool::from_config(&config);
    Authenticator {
        jwt: JwtVerifier::from_config_in(&config, Some(SECRET), &jwks).expect("keys"),
        api_keys: ApiKeys::new(&[]),
        sse_tokens: SseTokens::new(10),
        session_key: SessionKey::derive(SECRET.as_bytes()),
        jwks,
        verified: VerifiedTokens::new(cached),
    }
}

/// A publisher's JWT signed with `alg`.
fn token(alg: Algorithm) -> String {
    let k = keys();
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&k.rs256.1).expect("rsa"),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&k.es256.1).expect("ec"),
        _ => EncodingKey::from_ed_pem(&k.eddsa.1).expect("ed"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"sub": "backend", "exp": now + 3600, "iat": now, "herald": {"publish": ["orders.>"]}});
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("sign")
}

const ALGS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

fn alg(name: &str) -> Algorithm {
    match name {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        _ => Algorithm::EdDSA,
    }
}

fn now_ms() -> u64 {
    herald::clock::now_ms()
}

#[divan::bench(args = ALGS)]
fn verify_every_time(bencher: divan::Bencher, name: &str) {
    let auth = authenticator(0);
    let raw = token(alg(name));
    assert!(auth.authenticate_request(Source::Bearer(&raw), now_ms()).is_ok());
    bencher.bench(|| auth.authenticate_request(Source::Bearer(divan::black_box(&raw)), now_ms()));
}

#[divan::bench(args = ALGS)]
fn verified_once_then_cached(bencher: divan::Bencher, name: &str) {
    let auth = authenticator(herald::auth::VERIFIED_KEPT);
    let raw = token(alg(name));
    assert!(auth.authenticate_request(Source::Bearer(&raw), now_ms()).is_ok());
    bencher.bench(|| auth.authenticate_request(Source::Bearer(divan::black_box(&raw)), now_ms()));
}
