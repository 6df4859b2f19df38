//! The server as an operator meets it: zero-config start, configuration
//! errors, the CLI, TLS with HTTP/2, CORS, and public-key JWTs.
mod support;

use serde_json::json;
use std::process::Command;
use std::time::Duration;
use support::*;

fn herald() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
    c.env("HERALD_LOG", "warn");
    c
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs")
        .success();
    assert!(ok, "openssl {args:?}");
}

#[tokio::test]
async fn zero_config_start_generates_a_private_secret_and_the_cli_tokens_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf8").to_string();
    let hub = start_args(&["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_s], dir);
    let secret = data.join("jwt_secret");
    let meta = std::fs::metadata(&secret).expect("secret generated");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "secret is private");

    let out = herald()
        .args([
            "token",
            "--data-dir",
            &data_s,
            "--sub",
            "alice",
            "--subscribe",
            "demo",
            "--publish",
            "demo",
        ])
        .output()
        .expect("herald token");
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).expect("utf8").trim().to_string();
    let mut s = hub.stream("/v1/events?topic=demo", &token).await;

    let out = herald()
        .args([
            "publish",
            "--data-dir",
            &data_s,
            "--url",
            &hub.base,
            "--topic",
            "demo",
            "--data",
            "from the cli",
        ])
        .output()
        .expect("herald publish");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let e = s.next_event(Duration::from_secs(5)).await.expect("event from the CLI");
    assert_eq!(e.data, "from the cli");
}

#[test]
fn invalid_configuration_is_one_line_naming_the_key_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["serve", "--listen", "nonsense"], vec![], "listen"),
        (
            vec!["serve"],
            vec![("HERALD_LIMITS__PER_SESSION", "many")],
            "per_session",
        ),
        (
            vec!["serve"],
            vec![("HERALD_LIMITS__PER_SESSION", "0")],
            "limits.per_session",
        ),
        (vec!["serve"], vec![("HERALD_JWT_SECRET", "short")], "jwt_secret"),
        (vec!["serve"], vec![("HERALD_BOGUS_KEY", "1")], "bogus_key"),
        (
            vec!["serve"],
            vec![("HERALD_STORE_CACHE_BYTES", "4096")],
            "store_cache_bytes",
        ),
    ];
    for (args, env, key) in cases {
        let out = herald()
            .args(&args)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .output()
            .expect("run herald");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.to_lowercase().contains(key), "names `{key}`: {err}");
        assert!(!err.contains("short\""), "never echoes a secret: {err}");
    }
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "[limits]\nper_sesion = 3\n").expect("write");
    let out = herald()
        .args(["serve", "--config", toml.to_str().expect("utf8")])
        .output()
        .expect("run herald");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("per_sesion"));
}

#[tokio::test]
async fn flags_win_over_env_and_env_over_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("h.toml");
    std::fs::write(&toml, format!("listen = \"127.0.0.1:1\"\njwt_secret = \"{SECRET}\"\n[limits]\nper_session = 1\nsession_policy = \"reject\"\n")).expect("write");
    let path = toml.to_str().expect("utf8").to_string();
    // The flag's port 0 wins over the file's port 1; env per_session=2 wins over the file's 1.
    let mut child = herald()
        .args(["serve", "--config", &path, "--listen", "127.0.0.1:0"])
        .env("HERALD_LIMITS__PER_SESSION", "2")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout");
    let line = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .expect("line")
        .expect("read");
    let base = line
        .strip_prefix("herald listening on ")
        .expect("listening line")
        .to_string();
    let c = client();
    let tok = user("u", json!({"sid": "s"}));
    let mut open = Vec::new();
    for _ in 0..2 {
        let r = c
            .get(format!("{base}/v1/events?topic=a"))
            .bearer_auth(&tok)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let r = c
        .get(format!("{base}/v1/events?topic=a"))
        .bearer_auth(&tok)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 429, "env per_session=2 applies");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn tls_serves_http2_and_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    support::self_signed_cert(dir.path());
    let cert = dir.path().join("cert.pem").to_str().expect("utf8").to_string();
    let key = dir.path().join("key.pem").to_str().expect("utf8").to_string();
    let hub = start_with(&format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\""));
    assert!(hub.base.starts_with("https://"), "{}", hub.base);
    let out = Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            &format!("{}/healthz", hub.base),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "ALPN negotiates HTTP/2");
    let tok = user("alice", json!({}));
    let out = Command::new("curl")
        .args([
            "-skN",
            "--http2",
            "--max-time",
            "2",
            "-H",
            &format!("Authorization: Bearer {tok}"),
            &format!("{}/v1/events?topic=demo", hub.base),
        ])
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(": connected"),
        "stream over h2"
    );
}

#[tokio::test]
async fn cors_allows_only_listed_origins_with_credentials() {
    let hub = start_with("cors_origins = [\"https://app.example\"]");
    let c = client();
    let pre = |origin: &'static str| {
        c.request(reqwest::Method::OPTIONS, format!("{}/v1/events", hub.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization,last-event-id")
            .send()
    };
    let ok = pre("https://app.example").await.expect("preflight");
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let other = pre("https://evil.example").await.expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn public_key_jwts_are_pinned_to_their_algorithm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.key"]);
    openssl(d, &["pkey", "-in", "ed.key", "-pubout", "-out", "ed.pub"]);
    openssl(
        d,
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.sec1"],
    );
    openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", "ec.sec1", "-out", "ec.key"]);
    openssl(d, &["ec", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ],
    );
    openssl(d, &["rsa", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"]);
    let p = |f: &str| d.join(f).to_str().expect("utf8").to_string();
    let hub = start_with(&format!(
        "jwt_eddsa_public_key = \"{}\"\njwt_es256_public_key = \"{}\"\njwt_rs256_public_key = \"{}\"\njwt_audience = \"herald-test\"",
        p("ed.pub"), p("ec.pub"), p("rsa.pub")
    ));
    let now = now();
    let claims =
        json!({"sub": "k", "exp": now + 300, "iat": now, "aud": "herald-test", "herald": {"subscribe": ["*"]}});
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let read = |f: &str| std::fs::read(d.join(f)).expect("read key");
    let signed = [
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&read("ed.key")).expect("ed key"),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&read("ec.key")).expect("ec key"),
        ),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&read("rsa.key")).expect("rsa key"),
        ),
    ];
    for (alg, key) in signed {
        let t = encode(&Header::new(alg), &claims, &key).expect("sign");
        let r = hub.get("/v1/events?topic=x", Some(&t)).await;
        assert_eq!(r.status(), 200, "{alg:?} accepted");
    }
    // Algorithm switching: an HS256 token "signed" with the public key.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&read("rsa.pub")),
    )
    .expect("sign");
    let code = error_code(
        hub.get("/v1/events?topic=x", Some(&forged)).await,
        reqwest::StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(code, "invalid_token");
    // Wrong audience.
    let mut wrong = claims.clone();
    wrong["aud"] = json!("someone-else");
    let t = encode(
        &Header::new(Algorithm::EdDSA),
        &wrong,
        &EncodingKey::from_ed_pem(&read("ed.key")).expect("ed"),
    )
    .expect("sign");
    let r = hub.get("/v1/events?topic=x", Some(&t)).await;
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("audience"));
    assert_eq!(r.status(), 401);
}
