//! Key sets published by identity providers (JWK Sets, RFC 7517), fetched
//! over HTTPS and kept fresh so that keys rotate without a restart.
//!
//! * **Only signature keys.** A key is taken only if it is asymmetric (RSA,
//!   EC P-256/P-384, Ed25519), names itself with a `kid`, and is meant for
//!   signatures (`use` absent or `sig`, `key_ops` absent or holding
//!   `verify`). Symmetric (`oct`) keys are refused: an HMAC key published
//!   in a document anyone can read signs anything.
//! * **The algorithm comes from the key.** Each key is pinned to one
//!   algorithm, its own `alg` when it states one (and it must fit its type
//!   and curve), else the one its type implies (RSA → RS256, P-256 →
//!   ES256, P-384 → ES384, Ed25519 → EdDSA). A token's header only chooses
//!   a key by `kid`; its `alg` must then be the key's.
//! * **Fetching is bounded.** One fetch at a time per URL, within
//!   [`FETCH_TIMEOUT`], of at most [`MAX_JWKS_BYTES`], never following a
//!   redirect. A token naming an unknown `kid` causes at most one extra
//!   fetch per [`MIN_ON_DEMAND_INTERVAL`]; requests arriving while a fetch
//!   is under way wait for that one instead of starting their own.
//! * **A failed fetch keeps the last good set.** A document that cannot be
//!   fetched or is not a JWK Set changes nothing (and is logged); a valid
//!   JWK Set replaces the keys, even when it holds none, because the
//!   identity provider's word on which keys are valid is final.

use super::jwt_core::{PinnedKey, MAX_KID_BYTES};
use crate::http_client::{self, Endpoint, TrustError, UrlProblem};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Request, StatusCode};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Least time between two fetches caused by tokens naming an unknown `kid`
/// (per URL). Scheduled refreshes do not count.
pub const MIN_ON_DEMAND_INTERVAL: Duration = Duration::from_secs(10);
/// Longest a whole fetch (connect, TLS, request, body) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest key set document read, bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A `Cache-Control: max-age` shorter than `jwks_refresh_secs` brings the
/// next refresh forward, but never below this: `max-age=0` must not turn
/// into a fetch loop against the identity provider.
const MAX_AGE_FLOOR: Duration = Duration::from_secs(60);
/// After a failed fetch the next one comes this soon, doubling with each
/// further failure up to `jwks_refresh_secs`.
const RETRY_FIRST: Duration = Duration::from_secs(5);
/// The smallest RSA modulus accepted, bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Checks a key set URL at configuration time: `https://`, or `http://`
/// for a loopback host only (development), without a credential in it.
pub fn check_url(url: &str) -> Result<(), String> {
    let endpoint = Endpoint::parse(url).map_err(|p| match p {
        UrlProblem::Invalid(e) => format!("not a URL ({e})"),
        UrlProblem::Scheme => "must be an https:// URL".to_string(),
        UrlProblem::NoHost => "the URL has no host".to_string(),
        UrlProblem::Userinfo => "the URL must not carry a credential (user:password@)".to_string(),
    })?;
    if !endpoint.tls && !endpoint.is_loopback_host() {
        return Err(
            "plain http:// is accepted only for a loopback host (localhost, 127.0.0.1, ::1), for development; use https://"
                .to_string(),
        );
    }
    Ok(())
}

/// What the operator, the console or `/readyz` may want to know about one
/// key set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JwksStatus {
    /// The URL.
    pub url: String,
    /// Whether a fetch has ever succeeded.
    pub loaded: bool,
    /// Keys held now.
    pub keys: usize,
    /// Unix ms of the last successful fetch.
    pub last_success_ms: Option<u64>,
    /// Why the last fetch failed, when it did.
    pub last_error: Option<String>,
    /// Fetches attempted since start.
    pub fetches: u64,
}

#[derive(Default)]
struct Progress {
    last_success_ms: Option<u64>,
    last_error: Option<String>,
    fetches: u64,
}

/// One identity provider's key set, kept fresh.
pub struct Jwks {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
    keys: RwLock<Arc<HashMap<String, PinnedKey>>>,
    /// Held for the duration of a fetch: one at a time, shared by waiters.
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// Fetches finished, successful or not.
    generation: AtomicU64,
    last_on_demand: Mutex<Option<Instant>>,
    progress: Mutex<Progress>,
    refresh: Duration,
    started: AtomicBool,
}

impl Jwks {
    /// A key set at `url` (already checked with [`check_url`]), holding no
    /// keys until its first fetch. `tls` is required for `https://`.
    pub fn new(url: &str, tls: Option<tokio_rustls::TlsConnector>, refresh: Duration) -> Result<Jwks, String> {
        check_url(url)?;
        let endpoint = Endpoint::parse(url).map_err(|_| "not a URL".to_string())?;
        if endpoint.tls && tls.is_none() {
            return Err("https:// needs trusted CA certificates".into());
        }
        Ok(Jwks {
            endpoint,
            tls,
            keys: RwLock::new(Arc::new(HashMap::new())),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            generation: AtomicU64::new(0),
            last_on_demand: Mutex::new(None),
            progress: Mutex::new(Progress::default()),
            refresh: refresh.max(Duration::from_secs(1)),
            started: AtomicBool::new(false),
        })
    }

    /// The URL, as configured.
    pub fn url(&self) -> &str {
        &self.endpoint.shown
    }

    /// How many fetches finished: changes whenever the keys may have.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The key named `kid`, if the set holds it now.
    pub fn key(&self, kid: &str) -> Option<PinnedKey> {
        self.keys.read().get(kid).cloned()
    }

    /// How the set is doing.
    pub fn status(&self) -> JwksStatus {
        let p = self.progress.lock();
        JwksStatus {
            url: self.endpoint.shown.clone(),
            loaded: p.last_success_ms.is_some(),
            keys: self.keys.read().len(),
            last_success_ms: p.last_success_ms,
            last_error: p.last_error.clone(),
            fetches: p.fetches,
        }
    }

    /// Takes the on-demand slot: true at most once per
    /// [`MIN_ON_DEMAND_INTERVAL`].
    fn claim_on_demand(&self) -> bool {
        let mut last = self.last_on_demand.lock();
        if last.is_some_and(|t| t.elapsed() < MIN_ON_DEMAND_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// For a token naming `kid`, which the set does not hold: fetches the
    /// set again, unless a fetch is already under way (then waits for that
    /// one) or an on-demand fetch started less than
    /// [`MIN_ON_DEMAND_INTERVAL`] ago. Never fails: the caller looks the
    /// key up again afterwards.
    pub async fn refresh_for(&self, kid: &str) {
        if self.key(kid).is_some() {
            return;
        }
        let seen = self.generation.load(Ordering::Acquire);
        let Ok(guard) = self.fetching.clone().try_lock_owned() else {
            // A fetch is under way: its result is this request's too.
            let _ = self.fetching.lock().await;
            return;
        };
        if self.generation.load(Ordering::Acquire) != seen || !self.claim_on_demand() {
            return;
        }
        let _ = self.fetch_and_apply().await;
        drop(guard);
    }

    /// The same as [`Jwks::refresh_for`] for a caller that cannot wait: the
    /// fetch, when one is due, runs in the background and this request is
    /// refused; the client's retry finds the key.
    pub fn kick(self: &Arc<Self>, kid: &str) {
        if self.key(kid).is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(guard) = self.fetching.clone().try_lock_owned() else {
            return;
        };
        if !self.claim_on_demand() {
            return;
        }
        let set = self.clone();
        runtime.spawn(async move {
            let _ = set.fetch_and_apply().await;
            drop(guard);
        });
    }

    /// Starts the scheduled refresh (once): a first fetch now, then one
    /// every `jwks_refresh_secs` (sooner when the answer's `max-age` says
    /// so, or after a failure). It ends with `stop`, or when the set is
    /// dropped.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.started.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut failures = 0u32;
            loop {
                let delay = {
                    let Some(set) = weak.upgrade() else { return };
                    let guard = tokio::select! {
                        _ = stop.cancelled() => return,
                        g = set.fetching.clone().lock_owned() => g,
                    };
                    let outcome = set.fetch_and_apply().await;
                    drop(guard);
                    failures = if outcome.is_ok() { 0 } else { failures.saturating_add(1) };
                    next_delay(set.refresh, outcome.ok().flatten(), failures)
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        });
    }

    /// Fetches the set and, when it is a JWK Set, replaces the keys.
    /// Returns the answer's `max-age`, if any. The caller holds `fetching`.
    async fn fetch_and_apply(&self) -> Result<Option<u64>, String> {
        let outcome = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no complete answer within {} s", FETCH_TIMEOUT.as_secs())));
        let now = crate::clock::now_ms();
        let result = match outcome {
            Ok((body, max_age)) => match parse_set(&body) {
                Ok(parsed) => {
                    for why in &parsed.skipped {
                        tracing::debug!(url = %self.endpoint.shown, "JWKS: a key was left out: {why}");
                    }
                    let kids: Vec<&String> = parsed.keys.keys().collect();
                    let changed = {
                        let old = self.keys.read();
                        old.len() != kids.len() || kids.iter().any(|k| !old.contains_key(*k))
                    };
                    if changed {
                        let mut listed: Vec<&str> = kids.iter().map(|k| k.as_str()).collect();
                        listed.sort_unstable();
                        tracing::info!(
                            url = %self.endpoint.shown,
                            keys = listed.len(),
                            skipped = parsed.skipped.len(),
                            "JWKS: key set now holds {}",
                            if listed.is_empty() { "no usable key".to_string() } else { listed.join(", ") }
                        );
                    }
                    if parsed.keys.is_empty() {
                        tracing::warn!(url = %self.endpoint.shown, "JWKS: the key set holds no usable signature key; its tokens are refused");
                    }
                    *self.keys.write() = Arc::new(parsed.keys);
                    Ok(max_age)
                }
                Err(why) => Err(why),
            },
            Err(why) => Err(why),
        };
        {
            let mut p = self.progress.lock();
            p.fetches += 1;
            match &result {
                Ok(_) => {
                    p.last_success_ms = Some(now);
                    p.last_error = None;
                }
                Err(why) => p.last_error = Some(why.clone()),
            }
        }
        match &result {
            Ok(_) => metrics::counter!("herald_jwks_fetches_total", "result" => "ok").increment(1),
            Err(why) => {
                metrics::counter!("herald_jwks_fetches_total", "result" => "error").increment(1);
                tracing::warn!(
                    url = %self.endpoint.shown,
                    keys_kept = self.keys.read().len(),
                    "JWKS: fetch failed, keeping the last good key set: {why}"
                );
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// One GET of the document: its body and `max-age`.
    async fn fetch(&self) -> Result<(Bytes, Option<u64>), String> {
        let conn = http_client::connect(&self.endpoint, self.tls.as_ref(), CONNECT_TIMEOUT)
            .await
            .map_err(|e| match e {
                http_client::ConnectError::BadHost(e) => format!("bad host: {e}"),
                http_client::ConnectError::Failed(e) => format!("cannot connect: {e}"),
                http_client::ConnectError::Handshake(e) => format!("HTTP handshake: {e}"),
            })?;
        // `localhost` is whatever the resolver says: plain HTTP goes to
        // this machine only.
        if !self.endpoint.tls && !conn.peer.ip().is_loopback() {
            return Err(format!(
                "plain http:// is for loopback hosts only, and {} resolved to {}",
                self.endpoint.host,
                conn.peer.ip()
            ));
        }
        let req = Request::get(self.endpoint.target())
            .header(header::HOST, &self.endpoint.authority)
            .header(header::USER_AGENT, concat!("herald/", env!("CARGO_PKG_VERSION")))
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let mut sender = conn.sender;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if resp.status() != StatusCode::OK {
            // Redirects are not followed: the configured URL is the key set.
            return Err(format!("answered {} instead of 200", resp.status().as_u16()));
        }
        let max_age = resp
            .headers()
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        let body = http_client::read_body(resp.into_body(), MAX_JWKS_BYTES)
            .await
            .map_err(|e| format!("reading the answer (at most {MAX_JWKS_BYTES} bytes): {e}"))?;
        drop(conn.task);
        Ok((body, max_age))
    }
}

/// When the next scheduled fetch is due.
fn next_delay(refresh: Duration, max_age: Option<u64>, failures: u32) -> Duration {
    if failures > 0 {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        return RETRY_FIRST.saturating_mul(factor).min(refresh);
    }
    match max_age {
        Some(s) => refresh.min(Duration::from_secs(s).max(MAX_AGE_FLOOR)),
        None => refresh,
    }
}

/// `max-age` of one `Cache-Control` value (`no-cache` and `no-store`
/// count as 0).
fn max_age(value: &str) -> Option<u64> {
    value.split(',').map(str::trim).find_map(|d| {
        let lower = d.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(0);
        }
        lower.strip_prefix("max-age=")?.trim_matches('"').parse().ok()
    })
}

/// A parsed key set: the usable keys by `kid`, and why others were left out.
#[derive(Default)]
pub struct ParsedSet {
    /// Usable keys.
    pub keys: HashMap<String, PinnedKey>,
    /// One line per key left out.
    pub skipped: Vec<String>,
}

/// Parses a JWK Set document. Fails only when it is not one (not JSON, no
/// `keys` array); a key that cannot be used is left out with its reason.
/// Two keys with the same `kid` are both left out: which one a token means
/// cannot be told.
pub fn parse_set(body: &[u8]) -> Result<ParsedSet, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "the answer is not a JWK Set (no `keys` array)".to_string())?;
    let mut out = ParsedSet::default();
    let mut duplicated = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        match key_from_jwk(raw) {
            Ok((kid, key)) => {
                if out.keys.insert(kid.clone(), key).is_some() {
                    duplicated.push(kid);
                }
            }
            Err(why) => out.skipped.push(format!("key {i}: {why}")),
        }
    }
    for kid in duplicated {
        if out.keys.remove(&kid).is_some() {
            out.skipped.push(format!("kid {kid:?} appears more than once"));
        }
    }
    Ok(out)
}

/// One JWK as a pinned key and its `kid`, or why it cannot be used.
fn key_from_jwk(raw: &Value) -> Result<(String, PinnedKey), String> {
    let obj = raw.as_object().ok_or("not a JSON object")?;
    let kid = match obj.get("kid") {
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_BYTES => k.clone(),
        Some(_) => return Err(format!("kid must be a string of 1 to {MAX_KID_BYTES} bytes")),
        None => return Err("no kid (keys are chosen by kid)".into()),
    };
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(format!("kid {kid:?}: not a signature key (use is not \"sig\")")),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Err(format!("kid {kid:?}: key_ops does not include \"verify\""));
        }
    }
    if obj.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(format!(
            "kid {kid:?}: symmetric (oct) keys are never taken from a key set"
        ));
    }
    let stated = match obj.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(Algorithm::from_str(a).map_err(|_| format!("kid {kid:?}: unsupported alg"))?),
        Some(_) => return Err(format!("kid {kid:?}: alg is not a string")),
    };
    let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|_| format!("kid {kid:?}: malformed key"))?;
    let decoded = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .unwrap_or_default()
    };
    let b64_len = |s: &str| decoded(s).len();
    let (implied, allowed): (Algorithm, &[Algorithm]) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            // Leading zero bytes do not count towards the size.
            let n = decoded(&p.n);
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!("kid {kid:?}: RSA keys must have at least 2048 bits"));
            }
            (
                Algorithm::RS256,
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            )
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (alg, size) = match p.curve {
                EllipticCurve::P256 => (Algorithm::ES256, 32),
                EllipticCurve::P384 => (Algorithm::ES384, 48),
                _ => return Err(format!("kid {kid:?}: unsupported curve")),
            };
            if b64_len(&p.x) != size || b64_len(&p.y) != size {
                return Err(format!("kid {kid:?}: EC coordinates do not fit the curve"));
            }
            (
                alg,
                if alg == Algorithm::ES256 {
                    &[Algorithm::ES256]
                } else {
                    &[Algorithm::ES384]
                },
            )
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(format!("kid {kid:?}: unsupported curve"));
            }
            if b64_len(&p.x) != 32 {
                return Err(format!("kid {kid:?}: an Ed25519 key is 32 bytes"));
            }
            (Algorithm::EdDSA, &[Algorithm::EdDSA])
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(format!(
                "kid {kid:?}: symmetric (oct) keys are never taken from a key set"
            ))
        }
        _ => return Err(format!("kid {kid:?}: unsupported key type")),
    };
    let alg = stated.unwrap_or(implied);
    if !allowed.contains(&alg) {
        return Err(format!("kid {kid:?}: alg {alg:?} does not fit the key's type"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| format!("kid {kid:?}: unusable key material"))?;
    if key.family() == AlgorithmFamily::Hmac {
        return Err(format!("kid {kid:?}: symmetric keys are never taken from a key set"));
    }
    let pinned = PinnedKey::public(alg, key).map_err(|why| format!("kid {kid:?}: {why}"))?;
    Ok((kid, pinned))
}

/// The key sets of one hub, one per distinct URL, sharing the TLS trust
/// and the refresh period.
pub struct JwksPool {
    ca_file: Option<PathBuf>,
    refresh: Duration,
    tls: Mutex<Option<tokio_rustls::TlsConnector>>,
    sets: Mutex<Vec<Arc<Jwks>>>,
}

impl JwksPool {
    /// A pool trusting `ca_file` (else the system's CA bundle) and
    /// refreshing every `refresh`.
    pub fn new(ca_file: Option<PathBuf>, refresh: Duration) -> JwksPool {
        JwksPool {
            ca_file,
            refresh,
            tls: Mutex::new(None),
            sets: Mutex::new(Vec::new()),
        }
    }

    /// The pool the configuration describes (`jwks_ca_file`,
    /// `jwks_refresh_secs`).
    pub fn from_config(config: &crate::config::Config) -> JwksPool {
        JwksPool::new(
            config.jwks_ca_file.clone(),
            Duration::from_secs(config.jwks_refresh_secs),
        )
    }

    /// The key set at `url`: the same one for the same URL, so a native
    /// and a Mercure setting naming one identity provider share its
    /// fetches and its rate limit.
    pub fn get(&self, url: &str) -> Result<Arc<Jwks>, String> {
        let mut sets = self.sets.lock();
        if let Some(s) = sets.iter().find(|s| s.endpoint.shown == url.trim_end_matches('/')) {
            return Ok(s.clone());
        }
        check_url(url)?;
        let needs_tls = Endpoint::parse(url).is_ok_and(|e| e.tls);
        let tls = if needs_tls { Some(self.tls()?) } else { None };
        let set = Arc::new(Jwks::new(url, tls, self.refresh)?);
        sets.push(set.clone());
        Ok(set)
    }

    fn tls(&self) -> Result<tokio_rustls::TlsConnector, String> {
        let mut tls = self.tls.lock();
        if let Some(t) = tls.as_ref() {
            return Ok(t.clone());
        }
        let connector = http_client::tls_connector(self.ca_file.as_deref()).map_err(|e| match e {
            TrustError::NoSystemBundle => "no system CA bundle found at the usual paths: set jwks_ca_file (or SSL_CERT_FILE) to a PEM file of the CA certificates to trust".to_string(),
            TrustError::Read { file, reason } => format!("jwks_ca_file: cannot read {}: {reason}", file.display()),
            TrustError::Empty { file } => format!("jwks_ca_file: no usable CA certificate in {}", file.display()),
            TrustError::Tls(e) => format!("TLS: {e}"),
        })?;
        *tls = Some(connector.clone());
        Ok(connector)
    }

    /// Starts every set's scheduled refresh (see [`Jwks::start`]).
    pub fn start(&self, stop: &CancellationToken) {
        for set in self.sets.lock().iter() {
            set.start(stop.clone());
        }
    }

    /// Every set's status, in the order they were configured.
    pub fn status(&self) -> Vec<JwksStatus> {
        self.sets.lock().iter().map(|s| s.status()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": b64(&[0xc5; 256]), "e": "AQAB"})
    }

    fn ec(kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&[1; 32]), "y": b64(&[2; 32])})
    }

    fn parse(keys: Value) -> ParsedSet {
        parse_set(json!({ "keys": keys }).to_string().as_bytes()).expect("a JWK Set")
    }

    #[test]
    fn only_asymmetric_signature_keys_with_a_kid_are_taken() {
        let set = parse(json!([
            rsa("r"),
            ec("e"),
            {"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": b64(&[3; 32])},
            {"kty": "oct", "kid": "h", "k": b64(b"a-secret-of-more-than-thirty-two-bytes")},
            {"kty": "oct", "kid": "h2", "k": b64(b"a-secret-of-more-than-thirty-two-bytes"), "alg": "HS256"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "RSA", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": b64(&[0xc5; 128]), "e": "AQAB"},
            {"kty": "EC", "crv": "P-521", "kid": "p521", "x": b64(&[1; 66]), "y": b64(&[2; 66])},
            {"kty": "EC", "crv": "P-256", "kid": "short", "x": b64(&[1; 31]), "y": b64(&[2; 32])},
            {"kty": "XYZ", "kid": "other"},
            "not an object",
            {"kty": "RSA", "kid": 7, "n": b64(&[0xc5; 256]), "e": "AQAB"},
        ]));
        let mut kids: Vec<&str> = set.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["d", "e", "r"]);
        assert_eq!(set.skipped.len(), 11, "{:?}", set.skipped);
        assert_eq!(set.keys["r"].alg(), Algorithm::RS256);
        assert_eq!(set.keys["e"].alg(), Algorithm::ES256);
        assert_eq!(set.keys["d"].alg(), Algorithm::EdDSA);
    }

    #[test]
    fn the_algorithm_is_the_keys_and_must_fit_its_type() {
        let mut ps = rsa("ps");
        ps["alg"] = json!("PS256");
        let mut wrong = rsa("wrong");
        wrong["alg"] = json!("ES256");
        let mut hs = rsa("hs");
        hs["alg"] = json!("HS256");
        let mut ec384 = ec("ec384");
        ec384["alg"] = json!("ES384");
        let mut unknown = rsa("unknown");
        unknown["alg"] = json!("RSA-OAEP");
        let set = parse(json!([ps, wrong, hs, ec384, unknown]));
        assert_eq!(set.keys.len(), 1, "{:?}", set.skipped);
        assert_eq!(set.keys["ps"].alg(), Algorithm::PS256);
    }

    #[test]
    fn duplicated_kids_are_both_left_out() {
        let set = parse(json!([rsa("a"), ec("a"), rsa("b")]));
        assert_eq!(set.keys.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn a_document_that_is_not_a_key_set_is_an_error_never_a_panic() {
        for body in [&b"<html>"[..], b"{}", b"{\"keys\": 5}", b"[]", b"", &[0xff, 0xfe]] {
            assert!(parse_set(body).is_err(), "{body:?}");
        }
        assert!(parse_set(b"{\"keys\": []}").expect("empty set").keys.is_empty());
    }

    #[test]
    fn urls_must_be_https_or_loopback_http() {
        assert!(check_url("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]/jwks").is_ok());
        for bad in [
            "http://idp.example.com/jwks",
            "http://10.0.0.1/jwks",
            "file:///etc/jwks.json",
            "https://user:pw@idp.example.com/jwks",
            "idp.example.com/jwks",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_control_and_failures_set_the_next_refresh() {
        let refresh = Duration::from_secs(300);
        assert_eq!(max_age("public, max-age=120"), Some(120));
        assert_eq!(max_age("no-store"), Some(0));
        assert_eq!(max_age("private"), None);
        assert_eq!(next_delay(refresh, None, 0), refresh);
        assert_eq!(next_delay(refresh, Some(120), 0), Duration::from_secs(120));
        assert_eq!(next_delay(refresh, Some(0), 0), MAX_AGE_FLOOR);
        assert_eq!(next_delay(refresh, Some(86_400), 0), refresh);
        assert_eq!(next_delay(refresh, None, 1), RETRY_FIRST);
        assert_eq!(next_delay(refresh, None, 2), RETRY_FIRST * 2);
        assert_eq!(next_delay(refresh, None, 40), refresh);
    }

    #[test]
    fn the_on_demand_slot_is_taken_once_per_interval() {
        let set = Jwks::new("http://127.0.0.1:1/jwks", None, Duration::from_secs(300)).expect("set");
        assert!(set.claim_on_demand());
        assert!(!set.claim_on_demand());
    }
}
