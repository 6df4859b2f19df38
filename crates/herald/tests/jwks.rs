//! Identity providers' key sets (JWKS) and keys named by `kid`, against a
//! real hub: a JWK Set served over HTTPS by this test process (a
//! self-signed certificate trusted through `jwks_ca_file`), tokens signed
//! with freshly generated RSA and P-256 keys, rotation without a restart,
//! the refresh rate limit, algorithm confusion, `[[jwt_keys]]` and
//! Mercure's `subscriber_jwks_url`.
mod support;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(10);
/// Long enough for anything a busy machine delays; never an assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ascii"))
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A signing key and its public half, as a JWK and as PEM.
struct Key {
    alg: Algorithm,
    signing: EncodingKey,
    /// The JWK's key members (`kty`, `n`/`e` or `crv`/`x`/`y`), no `kid`.
    jwk: Value,
    /// The public key as `-----BEGIN PUBLIC KEY-----`.
    public_pem: String,
}

impl Key {
    fn rsa() -> Key {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("PKCS#8");
        let public = pair.public_key();
        let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(public).expect("SPKI");
        Key {
            alg: Algorithm::RS256,
            signing: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).expect("RSA PEM"),
            jwk: json!({
                "kty": "RSA",
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
            }),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    fn p256() -> Key {
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(alg).expect("P-256 key");
        let pkcs8 = pair.to_pkcs8v1().expect("PKCS#8");
        let point = pair.public_key().as_ref().to_vec();
        assert_eq!((point.len(), point[0]), (65, 4), "an uncompressed point");
        let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key()).expect("SPKI");
        Key {
            alg: Algorithm::ES256,
            signing: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    /// The key as a JWK Set member named `kid`, with `extra` members.
    fn jwk(&self, kid: &str, extra: Value) -> Value {
        let mut v = self.jwk.clone();
        v["kid"] = json!(kid);
        v["use"] = json!("sig");
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                v.insert(k.clone(), x.clone());
            }
        }
        v
    }

    /// A token signed with this key, naming `kid` when given.
    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, &self.signing).expect("sign")
    }
}

/// A user allowed to subscribe to everything.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iat": now(), "exp": now() + 600, "herald": {"subscribe": ["*"]}})
}

/// A token signed with an HMAC `secret` whose header says `alg` and `kid`.
fn hmac_token(alg: Algorithm, kid: Option<&str>, secret: &[u8], claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

/// What the test identity provider answers.
#[derive(Clone)]
enum Answer {
    Set(Value),
    Status(u16),
    Body(&'static str),
}

/// A JWK Set served by this process on 127.0.0.1, counting its fetches.
struct Idp {
    url: String,
    /// The certificate (its own trust anchor), for `jwks_ca_file`.
    ca: PathBuf,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Idp {
    /// Serves over HTTPS with a fresh self-signed certificate, or over
    /// plain HTTP (accepted for loopback hosts).
    async fn start(tls: bool, keys: Vec<Value>) -> Idp {
        let dir = tempfile::tempdir().expect("tempdir");
        let acceptor = if tls { Some(acceptor(dir.path())) } else { None };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let answer = Arc::new(Mutex::new(Answer::Set(json!({ "keys": keys }))));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (a, f) = (answer.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (a, f, acceptor) = (a.clone(), f.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (a, f) = (a.clone(), f.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer_for(&req, &a, &f)) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        let scheme = if tls { "https" } else { "http" };
        Idp {
            url: format!("{scheme}://127.0.0.1:{port}/realms/herald/protocol/openid-connect/certs"),
            ca: dir.path().join("cert.pem"),
            answer,
            fetches,
            _dir: dir,
        }
    }

    fn set(&self, keys: Vec<Value>) {
        *self.answer.lock().expect("lock") = Answer::Set(json!({ "keys": keys }));
    }

    fn answer(&self, a: Answer) {
        *self.answer.lock().expect("lock") = a;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Waits until the hub has fetched at least `n` times in all.
    async fn until_fetches(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.fetches() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the hub fetched {} times, expected {n}",
                self.fetches()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until two more fetches started: the first of them has then
    /// been applied (the hub fetches one at a time per URL).
    async fn until_applied(&self) {
        let n = self.fetches();
        self.until_fetches(n + 2).await;
    }

    /// The hub's configuration for this key set.
    fn config(&self, extra: &str) -> String {
        format!(
            "jwks_url = \"{}\"\njwks_ca_file = \"{}\"\n{extra}\n[limits]\nauth_failures_per_minute = 10000\n",
            self.url,
            self.ca.display()
        )
    }
}

fn answer_for(
    req: &hyper::Request<hyper::body::Incoming>,
    a: &Mutex<Answer>,
    f: &AtomicUsize,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    if req.uri().path() != "/realms/herald/protocol/openid-connect/certs" {
        return reply(404, "{}".into());
    }
    f.fetch_add(1, Ordering::SeqCst);
    match a.lock().expect("lock").clone() {
        Answer::Set(v) => reply(200, v.to_string()),
        Answer::Status(s) => reply(s, "{\"error\":\"unavailable\"}".into()),
        Answer::Body(b) => reply(200, b.into()),
    }
}

/// A TLS acceptor with a self-signed certificate for 127.0.0.1, written to
/// `dir/cert.pem`.
fn acceptor(dir: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    support::self_signed_cert(dir);
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .expect("cert")
        .map(|c| c.expect("cert"))
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("key.pem")).expect("key");
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Opens a native stream with `token`: the stream, or the refusal's
/// status, code and message.
async fn open(hub: &Server, token: &str) -> Result<SseStream, (StatusCode, String, String)> {
    match hub.stream_with("/v1/events?topic=news", Some(token), None).await {
        Ok(s) => Ok(s),
        Err(resp) => {
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let code = check_error_shape(&v);
            Err((
                status,
                code,
                v["error"]["message"].as_str().unwrap_or_default().to_string(),
            ))
        }
    }
}

/// Asserts that `token` is refused with `401 invalid_token`; returns the message.
async fn refused(hub: &Server, token: &str, what: &str) -> String {
    match open(hub, token).await {
        Ok(_) => panic!("{what}: the stream opened"),
        Err((status, code, message)) => {
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::UNAUTHORIZED, "invalid_token"),
                "{what}: {message}"
            );
            message
        }
    }
}

async fn publish_news(hub: &Server, data: &str) {
    let (status, body) = hub
        .publish(
            &hub.admin_key,
            json!({"topic": "news", "data": data, "audience": "public"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_with_a_kid_open_streams_and_confused_ones_are_refused() {
    let (rsa, ec, enc) = (Key::rsa(), Key::p256(), Key::rsa());
    let secret = b"a-shared-secret-published-by-mistake-in-the-set";
    let idp = Idp::start(
        true,
        vec![
            rsa.jwk("rsa-1", json!({"alg": "RS256"})),
            ec.jwk("ec-1", json!({})),
            enc.jwk("enc-1", json!({"use": "enc"})),
            json!({"kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": b64(secret)}),
        ],
    )
    .await;
    let hub = start_with(&idp.config(""));

    let mut alice = open(&hub, &rsa.sign(Some("rsa-1"), &claims("alice")))
        .await
        .expect("RS256 with kid");
    let mut bob = open(&hub, &ec.sign(Some("ec-1"), &claims("bob")))
        .await
        .expect("ES256 with kid");
    publish_news(&hub, "hello").await;
    for s in [&mut alice, &mut bob] {
        assert_eq!(s.next_event(T).await.expect("event").data, "hello");
    }
    // The hub's own HS256 secret still verifies tokens without a kid.
    open(&hub, &user("carol", json!({}))).await.expect("legacy HS256 token");

    let m = refused(&hub, &rsa.sign(Some("nobody"), &claims("eve")), "unknown kid").await;
    assert!(m.contains("kid"), "{m}");
    let m = refused(&hub, &rsa.sign(None, &claims("eve")), "JWKS key without kid").await;
    assert!(m.contains("kid") && m.contains("RS256"), "{m}");
    // The classic confusion: the RSA key's public modulus used as an HMAC
    // secret, the header claiming HS256 with the RSA key's kid.
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(rsa.jwk["n"].as_str().expect("n"))
        .expect("n");
    let m = refused(
        &hub,
        &hmac_token(Algorithm::HS256, Some("rsa-1"), &n, &claims("eve")),
        "HS256 with an RSA kid",
    )
    .await;
    assert!(m.contains("does not match"), "{m}");
    let m = refused(
        &hub,
        &hmac_token(
            Algorithm::HS256,
            Some("rsa-1"),
            rsa.public_pem.as_bytes(),
            &claims("eve"),
        ),
        "HS256 keyed with the PEM",
    )
    .await;
    assert!(m.contains("does not match"), "{m}");
    // Another RSA algorithm than the key's own.
    let mut h = Header::new(Algorithm::RS384);
    h.kid = Some("rsa-1".into());
    let rs384 = jsonwebtoken::encode(&h, &claims("eve"), &rsa.signing).expect("sign");
    refused(&hub, &rs384, "RS384 with an RS256 kid").await;
    // The EC key under the RSA key's name.
    refused(&hub, &ec.sign(Some("rsa-1"), &claims("eve")), "ES256 with an RSA kid").await;
    // Keys the set holds but Herald must not use: an encryption key and a
    // symmetric key (whose secret anyone can read in the set).
    refused(&hub, &enc.sign(Some("enc-1"), &claims("eve")), "use=enc key").await;
    refused(
        &hub,
        &hmac_token(Algorithm::HS256, Some("hmac-1"), secret, &claims("eve")),
        "oct key",
    )
    .await;
    // A right key with a wrong signature.
    let mut forged = rsa.sign(Some("rsa-1"), &claims("eve"));
    forged.replace_range(forged.len() - 4.., "AAAA");
    refused(&hub, &forged, "forged signature").await;
    // Every refusal is in the audit log with its reason.
    let audit: Value = hub
        .get("/v1/audit?kind=auth_failed", Some(&hub.admin_key))
        .await
        .json()
        .await
        .expect("audit");
    let text = audit.to_string();
    assert!(text.contains("does not match") && text.contains("kid"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_mid_stream_without_a_restart() {
    let (old, new) = (Key::rsa(), Key::rsa());
    let idp = Idp::start(true, vec![old.jwk("2026-10", json!({}))]).await;
    // The schedule is far away: only a token's unknown kid fetches again.
    let hub = start_with(&idp.config("jwks_refresh_secs = 3600"));
    idp.until_fetches(1).await;
    let mut s = open(&hub, &old.sign(Some("2026-10"), &claims("alice")))
        .await
        .expect("old key");
    let fetched = idp.fetches();

    // The provider publishes the new key next to the old one; a token
    // signed with it works at once.
    idp.set(vec![old.jwk("2026-10", json!({})), new.jwk("2026-11", json!({}))]);
    let mut t = open(&hub, &new.sign(Some("2026-11"), &claims("bob")))
        .await
        .expect("new key");
    assert_eq!(idp.fetches(), fetched + 1, "one fetch for the unknown kid");

    // The old key is withdrawn. Known keys are not fetched for, so the
    // hub learns it at its next fetch: a token naming a kid nobody holds
    // causes one once the rate limit allows (polled, never timed).
    idp.set(vec![new.jwk("2026-11", json!({}))]);
    let before = idp.fetches();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while idp.fetches() == before {
        assert!(tokio::time::Instant::now() < deadline, "no fetch for an unknown kid");
        refused(&hub, &new.sign(Some("2026-12"), &claims("probe")), "unknown kid").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The fetch is applied before the refused request is answered.
    refused(&hub, &new.sign(Some("2026-12"), &claims("probe")), "unknown kid").await;
    let m = refused(&hub, &old.sign(Some("2026-10"), &claims("carol")), "withdrawn key").await;
    assert!(m.contains("kid"), "{m}");
    open(&hub, &new.sign(Some("2026-11"), &claims("dave")))
        .await
        .expect("new key still");

    // Streams opened with the withdrawn key stay open until their token
    // expires (a key rotation is not a revocation) and keep receiving.
    publish_news(&hub, "after rotation").await;
    assert_eq!(s.next_event(T).await.expect("old stream").data, "after rotation");
    assert_eq!(t.next_event(T).await.expect("new stream").data, "after rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_drops_withdrawn_keys_and_failed_refreshes_keep_the_last_good_set() {
    let (old, new) = (Key::p256(), Key::p256());
    let idp = Idp::start(true, vec![old.jwk("a", json!({"alg": "ES256"}))]).await;
    let hub = start_with(&idp.config("jwks_refresh_secs = 1"));
    idp.until_fetches(1).await;
    open(&hub, &old.sign(Some("a"), &claims("alice"))).await.expect("key a");

    for (what, answer) in [
        ("an error status", Answer::Status(503)),
        ("HTML", Answer::Body("<html>maintenance</html>")),
        ("JSON that is no key set", Answer::Body("{\"keys\": 5}")),
    ] {
        idp.answer(answer);
        idp.until_applied().await;
        open(&hub, &old.sign(Some("a"), &claims("alice")))
            .await
            .unwrap_or_else(|e| panic!("after {what}, the last good set is kept: {e:?}"));
    }

    idp.set(vec![new.jwk("b", json!({}))]);
    idp.until_applied().await;
    refused(&hub, &old.sign(Some("a"), &claims("alice")), "key a withdrawn").await;
    open(&hub, &new.sign(Some("b"), &claims("bob"))).await.expect("key b");
    // The hub is alive and well after every bad answer.
    assert_eq!(hub.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_unknown_kids_causes_at_most_one_or_two_fetches() {
    let key = Key::rsa();
    let idp = Idp::start(true, vec![key.jwk("k", json!({}))]).await;
    let hub = start_with(&idp.config(""));
    idp.until_fetches(1).await;
    open(&hub, &key.sign(Some("k"), &claims("alice")))
        .await
        .expect("known kid");
    let before = idp.fetches();

    let burst: Vec<_> = (0..50)
        .map(|i| {
            let token = key.sign(Some(&format!("bogus-{i}")), &claims("mallory"));
            let url = format!("{}/v1/events?topic=news", hub.base);
            tokio::spawn(async move { client().get(url).bearer_auth(token).send().await.expect("send") })
        })
        .collect();
    for r in burst {
        let resp = r.await.expect("task");
        assert_eq!(error_code(resp, StatusCode::UNAUTHORIZED).await, "invalid_token");
    }
    let caused = idp.fetches() - before;
    assert!((1..=2).contains(&caused), "50 unknown kids caused {caused} fetches");
    // The known key was never in doubt.
    open(&hub, &key.sign(Some("k"), &claims("alice")))
        .await
        .expect("known kid");
    assert_eq!(idp.fetches() - before, caused, "a known kid fetches nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_keys_named_by_kid_roll_without_refusing_anyone() {
    let (oct, nov) = (Key::rsa(), Key::p256());
    let dir = tempfile::tempdir().expect("tempdir");
    let (oct_pem, nov_pem) = (dir.path().join("2026-10.pem"), dir.path().join("2026-11.pem"));
    std::fs::write(&oct_pem, &oct.public_pem).expect("write");
    std::fs::write(&nov_pem, &nov.public_pem).expect("write");
    let service = "a-service-secret-of-more-than-thirty-two-bytes";
    let hub = start_with(&format!(
        r#"
[[jwt_keys]]
kid = "2026-10"
alg = "RS256"
public_key = "{}"

[[jwt_keys]]
kid = "2026-11"
alg = "ES256"
public_key = "{}"

[[jwt_keys]]
kid = "svc"
alg = "HS512"
secret = "{service}"
"#,
        oct_pem.display(),
        nov_pem.display()
    ));
    open(&hub, &oct.sign(Some("2026-10"), &claims("a")))
        .await
        .expect("old key");
    open(&hub, &nov.sign(Some("2026-11"), &claims("b")))
        .await
        .expect("new key");
    open(
        &hub,
        &hmac_token(Algorithm::HS512, Some("svc"), service.as_bytes(), &claims("c")),
    )
    .await
    .expect("HMAC key by kid");
    // Tokens without a kid keep the single keys: the harness's jwt_secret.
    open(&hub, &user("d", json!({}))).await.expect("legacy HS256");

    // A kid names one key: another key's signature, or another algorithm,
    // is refused even though that key is configured too.
    refused(
        &hub,
        &nov.sign(Some("2026-10"), &claims("e")),
        "ES256 under an RS256 kid",
    )
    .await;
    let m = refused(
        &hub,
        &hmac_token(
            Algorithm::HS256,
            Some("2026-10"),
            oct.public_pem.as_bytes(),
            &claims("e"),
        ),
        "HS256 under an RS256 kid",
    )
    .await;
    assert!(m.contains("does not match"), "{m}");
    refused(
        &hub,
        &hmac_token(Algorithm::HS256, Some("svc"), service.as_bytes(), &claims("e")),
        "HS256 under HS512",
    )
    .await;
    // A signed-by-the-right-key token that names no key needs a single key
    // for RS256, and there is none.
    refused(&hub, &oct.sign(None, &claims("e")), "RS256 without kid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mercure_subscribers_are_verified_with_the_subscriber_jwks() {
    let key = Key::rsa();
    // Plain HTTP on a loopback host, as for development.
    let idp = Idp::start(false, vec![key.jwk("m-1", json!({}))]).await;
    let hub = start_with(&format!(
        "[mercure]\nsubscriber_jwks_url = \"{}\"\n[limits]\nauth_failures_per_minute = 10000\n",
        idp.url
    ));
    idp.until_fetches(1).await;
    let sub = key.sign(
        Some("m-1"),
        &json!({"exp": now() + 600, "mercure": {"subscribe": ["https://example.com/private/{id}"]}}),
    );
    // The first fetch may still be in flight: retried until it has landed.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut stream = loop {
        match hub
            .stream_with(
                "/.well-known/mercure?topic=https://example.com/private/1",
                Some(&sub),
                None,
            )
            .await
        {
            Ok(s) => break s,
            Err(resp) => {
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the JWKS token was never accepted"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // Publishers keep the hub's secret (no publisher_jwks_url).
    let publisher = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 600, "mercure": {"publish": ["*"]}}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let r = client()
        .post(format!("{}/.well-known/mercure", hub.base))
        .bearer_auth(&publisher)
        .form(&[
            ("topic", "https://example.com/private/1"),
            ("data", "for m-1"),
            ("private", "on"),
        ])
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(stream.next_event(T).await.expect("private update").data, "for m-1");

    // The key set takes precedence over the hub's secret for subscribers.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 600, "mercure": {"subscribe": ["*"]}}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let resp = hub
        .stream_with("/.well-known/mercure?topic=a", Some(&hs), None)
        .await
        .err()
        .expect("HS256 refused");
    assert_eq!(error_code(resp, StatusCode::UNAUTHORIZED).await, "invalid_token");
    // The subscriber key set is the subscribers' only: no native token.
    refused(
        &hub,
        &key.sign(Some("m-1"), &claims("alice")),
        "native token from the Mercure set",
    )
    .await;
}

#[tokio::test]
async fn key_set_urls_are_checked_and_an_unreachable_provider_does_not_stop_the_hub() {
    // Plain HTTP to anything but this machine is a configuration error.
    for (key, line) in [
        ("`jwks_url`", "jwks_url = \"http://idp.example.com/jwks\""),
        (
            "`mercure.publisher_jwks_url`",
            "[mercure]\npublisher_jwks_url = \"http://10.0.0.1/jwks\"",
        ),
        (
            "`jwt_keys[0].secret`",
            "[[jwt_keys]]\nkid = \"k\"\nalg = \"HS256\"\nsecret = \"short\"",
        ),
        (
            "`jwt_keys[0].public_key`",
            "[[jwt_keys]]\nkid = \"k\"\nalg = \"RS256\"\nsecret = \"x\"",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\nstore = \"memory\"\n{line}\n")).expect("write");
        let out = tokio::time::timeout(
            PATIENCE,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(["serve", "--config", path.to_str().expect("utf8")])
                .current_dir(dir.path())
                .output(),
        )
        .await
        .expect("exits")
        .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {stderr}");
        assert!(stderr.contains(key), "{line}: {stderr}");
        assert!(!stderr.contains("short"), "a secret is never printed: {stderr}");
    }

    // Nothing listens on port 1: the hub starts anyway, refuses the
    // provider's tokens and keeps every other credential working.
    let hub = start_with("jwks_url = \"http://127.0.0.1:1/jwks\"\n");
    let key = Key::p256();
    refused(&hub, &key.sign(Some("k"), &claims("alice")), "provider unreachable").await;
    publish_news(&hub, "still serving").await;
    let (status, body) = hub
        .post(
            "/v1/tokens",
            Some(&hub.admin_key),
            json!({"sub": "bob", "subscribe": ["news"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
