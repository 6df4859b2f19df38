//! Test support: a real `herald` process on an ephemeral port, real HTTP,
//! and a small SSE reader.
#![allow(dead_code)]

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The HS256 secret every test hub uses.
pub const SECRET: &str = "test-secret-that-is-long-enough-0123456789";

/// A running hub.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// API key with publish, tokens, revoke and admin scopes (hub-wide).
    pub admin_key: String,
    /// API key with publish + tokens scopes bound to tenant `acme`.
    pub acme_key: String,
    /// The hub's working directory (also its data dir in the default config).
    pub dir: tempfile::TempDir,
}

/// Extra TOML appended to the test configuration.
pub fn start_with(extra: &str) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin_key, admin_hash) = herald::auth::api_key::generate();
    let (acme_key, acme_hash) = herald::auth::api_key::generate();
    let config = format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{data}"
jwt_secret = "{SECRET}"
{extra}

[[api_keys]]
id = "admin"
hash = "{admin_hash}"
scopes = ["publish", "tokens", "revoke", "admin"]

[[api_keys]]
id = "acme-backend"
hash = "{acme_hash}"
scopes = ["publish", "tokens"]
tenant = "acme"
"#,
        data = dir.path().display()
    );
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, config).expect("write config");
    start_process(
        &["serve", "--config", path.to_str().expect("utf8 path")],
        admin_key,
        acme_key,
        dir,
    )
}

/// A hub with the default test configuration.
pub fn start() -> Server {
    start_with("")
}

/// Starts `herald` with arbitrary arguments in `dir` (no API keys).
pub fn start_args(args: &[&str], dir: tempfile::TempDir) -> Server {
    start_process(args, String::new(), String::new(), dir)
}

fn start_process(args: &[&str], admin_key: String, acme_key: String, dir: tempfile::TempDir) -> Server {
    let (child, base) = spawn(args, dir.path());
    Server {
        child,
        base,
        admin_key,
        acme_key,
        dir,
    }
}

/// Spawns `herald args` in `dir` and waits for its listening line.
fn spawn(args: &[&str], dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .current_dir(dir)
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn herald");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("herald exited before listening")
            .expect("read stdout");
        if let Some(rest) = line.strip_prefix("herald listening on ") {
            break rest.trim().to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shared HTTP client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Signs an HS256 JWT with the test secret. `exp` and `iat` are filled in
/// when absent.
pub fn jwt(mut claims: Value) -> String {
    let now = now();
    if claims.get("exp").is_none() {
        claims["exp"] = json!(now + 600);
    }
    if claims.get("iat").is_none() {
        claims["iat"] = json!(now);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// A user token allowed to subscribe to `*` and publish to `*`.
pub fn user(sub: &str, extra: Value) -> String {
    let mut c = json!({"sub": sub, "herald": {"subscribe": ["*"], "publish": ["*"]}});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    jwt(c)
}

impl Server {
    /// `POST /v1/publish` with `credential`.
    pub async fn publish(&self, credential: &str, body: Value) -> (StatusCode, Value) {
        let r = client()
            .post(format!("{}/v1/publish", self.base))
            .bearer_auth(credential)
            .json(&body)
            .send()
            .await
            .expect("publish");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs JSON to `path`.
    pub async fn post(&self, path: &str, credential: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = client().post(format!("{}{path}", self.base)).json(&body);
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        let r = req.send().await.expect("post");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str, credential: Option<&str>) -> reqwest::Response {
        let mut req = client().get(format!("{}{path}", self.base));
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        req.send().await.expect("get")
    }

    /// Opens `GET path` as a stream with a bearer credential; panics unless 200.
    pub async fn stream(&self, path: &str, credential: &str) -> SseStream {
        self.stream_with(path, Some(credential), None)
            .await
            .expect("stream opens")
    }

    /// Opens a stream; returns the error response when not 200.
    pub async fn stream_with(
        &self,
        path: &str,
        credential: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<SseStream, reqwest::Response> {
        let mut req = client().get(format!("{}{path}", self.base));
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("subscribe");
        if resp.status() != StatusCode::OK {
            return Err(resp);
        }
        let mut s = SseStream::new(resp);
        // Every stream starts with the `: connected` comment.
        let first = s.next_item(Duration::from_secs(10)).await.expect("connected comment");
        assert_eq!(first, Item::Comment("connected".into()));
        Ok(s)
    }

    /// Starts a hub of [`start_with`] again, after it exited, with the same
    /// configuration, data and address.
    pub fn restart(mut self) -> Server {
        let _ = self.child.wait();
        let config = self.dir.path().join("herald.toml");
        let listen = self.base.trim_start_matches("http://").to_string();
        let (child, base) = spawn(
            &[
                "serve",
                "--config",
                config.to_str().expect("utf8 path"),
                "--listen",
                &listen,
            ],
            self.dir.path(),
        );
        assert_eq!(base, self.base, "restarted on its address");
        self.child = child;
        self
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit (bounded).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `id:` of this event, if it had one.
    pub id: Option<String>,
    /// `event:` (default `message`).
    pub event: String,
    /// Data lines joined with `\n`.
    pub data: String,
}

/// A parsed item: an event or a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event.
    Event(Event),
    /// A `: comment` line.
    Comment(String),
}

/// Reads SSE from a response body, per the WHATWG parsing rules.
pub struct SseStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    pending: std::collections::VecDeque<Item>,
    id: Option<String>,
    event: String,
    data: Vec<String>,
    ended: bool,
    /// Raw bytes received, for framing assertions.
    pub raw: String,
}

impl SseStream {
    pub fn new(resp: reqwest::Response) -> SseStream {
        SseStream {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
            pending: Default::default(),
            id: None,
            event: String::new(),
            data: Vec::new(),
            ended: false,
            raw: String::new(),
        }
    }

    fn parse_line(&mut self, line: &str) {
        if line.is_empty() {
            if !self.data.is_empty() {
                self.pending.push_back(Item::Event(Event {
                    id: self.id.clone(),
                    event: if self.event.is_empty() {
                        "message".into()
                    } else {
                        self.event.clone()
                    },
                    data: self.data.join("\n"),
                }));
            }
            self.event.clear();
            self.data.clear();
            return;
        }
        if let Some(c) = line.strip_prefix(':') {
            self.pending.push_back(Item::Comment(c.trim_start().to_string()));
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => (&line[..i], line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..])),
            None => (line, ""),
        };
        match field {
            "id" => self.id = Some(value.to_string()),
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
    }

    /// The next item, or `None` when the stream ended or `within` passed.
    pub async fn next_item(&mut self, within: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => {
                    self.ended = true;
                }
                Ok(Some(Ok(chunk))) => {
                    let text = String::from_utf8_lossy(&chunk).into_owned();
                    self.raw.push_str(&text);
                    self.buf.push_str(&text);
                    while let Some(i) = self.buf.find('\n') {
                        let line: String = self.buf.drain(..=i).collect();
                        let line = line.trim_end_matches('\n').trim_end_matches('\r').to_string();
                        self.parse_line(&line);
                    }
                }
            }
        }
    }

    /// The next event, skipping comments.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item(left).await? {
                Item::Event(e) => return Some(e),
                Item::Comment(_) => {}
            }
        }
    }

    /// Collects events until `n` arrived or `within` passed.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }

    /// Collects events for `window` (to check that nothing more arrives).
    pub async fn drain_for(&mut self, window: Duration) -> Vec<Event> {
        self.take(usize::MAX, window).await
    }

    /// Whether the server ended the stream within `within` (consuming events).
    pub async fn ended_within(&mut self, within: Duration) -> (bool, Vec<Event>) {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return (self.ended, seen);
            }
            match self.next_item(left).await {
                Some(Item::Event(e)) => seen.push(e),
                Some(Item::Comment(_)) => {}
                None => return (self.ended, seen),
            }
        }
    }
}

/// Asserts the JSON error shape and returns the code.
pub async fn error_code(resp: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(resp.status(), status, "status");
    let v: Value = resp.json().await.expect("JSON error body");
    check_error_shape(&v)
}

/// Checks `{"error": {"code", "message"}}` and returns the code.
pub fn check_error_shape(v: &Value) -> String {
    let code = v["error"]["code"].as_str().expect("error.code").to_string();
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message in {v}"
    );
    assert!(
        code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "snake_case code {code}"
    );
    code
}

/// Writes a throwaway self-signed certificate for `127.0.0.1` and
/// `localhost` to `dir/cert.pem` (its key to `dir/key.pem`), made by
/// openssl; returns both paths.
pub fn self_signed_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            // webpki refuses a CA certificate as a server's own.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
        ])
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// A hub whose audit log holds two records of tenant `acme` (account
/// `rare` opened a stream and closed it), then 11,200 `auth_failed`
/// records without a tenant: more than one page looks at (10,000), in the
/// store, past the newest that memory holds.
pub async fn hub_with_rare_audit_records() -> Server {
    let hub = start_with("[limits]\nauth_failures_per_minute = 100000000");
    let s = hub
        .stream("/v1/events?topic=t", &user("rare", json!({"tenant": "acme"})))
        .await;
    drop(s);
    let mut tasks = Vec::new();
    for k in 0..16 {
        let base = hub.base.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in (k..11_200).step_by(16) {
                let r = c
                    .get(format!("{base}/v1/events?topic=t"))
                    .bearer_auth("not.a.token")
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status(), 401);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // The stream's close is recorded as the hub notices it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub
}
