//! Adversarial tests over real HTTP and SSE against a real `herald`
//! process: each test plays an attacker (or a careless client) against one
//! of Herald's promises — who sees what, where control events come from,
//! cookie-borne writes, what an account is, tenant isolation of retained
//! events and ids, credential time claims, scopes, authenticating before
//! doing work, bounded state, resume correctness and small protocol points.
//!
//! "Nothing arrives" is always proven with a fence: a later event the stream
//! must receive, checked to come without the forbidden one before it.
mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Mercure key of the hubs that speak Mercure here.
const KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
/// Generous deadline for anything that must arrive.
const ARRIVE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

/// A Mercure token signed with [`KEY`]; `exp` and `iat` are filled in
/// unless the claims say `"exp": null` / `"iat": null` (then left out).
fn mercure_jwt(mut claims: Value) -> String {
    let now = now();
    for (k, v) in [("exp", now + 600), ("iat", now)] {
        match claims.get(k) {
            None => claims[k] = json!(v),
            Some(Value::Null) => {
                claims.as_object_mut().expect("claims object").remove(k);
            }
            Some(_) => {}
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .expect("sign")
}

/// A Mercure token allowed to publish anywhere.
fn mercure_publisher() -> String {
    mercure_jwt(json!({"sub": "publisher", "mercure": {"publish": ["*"]}}))
}

/// A JWT with an arbitrary header, HS256-signed with `secret`.
fn hand_signed_jwt(header: Value, claims: Value, secret: &str) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(tag.as_ref()))
}

/// `POST /.well-known/mercure` with a form.
async fn mercure_publish(hub: &Server, token: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().post(format!("{}/.well-known/mercure", hub.base)).form(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("mercure publish")
}

/// A hub-wide public event published with the admin key; returns its seq.
async fn fence(hub: &Server, topic: &str, data: &str) -> u64 {
    let (status, v) = hub
        .publish(
            &hub.admin_key,
            json!({"topics": [topic], "data": data, "audience": "public"}),
        )
        .await;
    assert_eq!(status, 200, "the fence is published: {v}");
    v["seq"].as_u64().expect("seq")
}

/// Events before the one whose data is `fence` (which must arrive).
async fn before_fence(s: &mut SseStream, fence: &str) -> Vec<Event> {
    let deadline = Instant::now() + ARRIVE;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = s
            .next_event(left)
            .await
            .unwrap_or_else(|| panic!("the fence {fence:?} never arrived; before it: {out:?}"));
        if e.data == fence {
            return out;
        }
        out.push(e);
    }
}

fn datas(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// A `[[api_keys]]` entry for a fresh key: (key, TOML).
fn api_key_toml(id: &str, scopes: &[&str], tenant: Option<&str>) -> (String, String) {
    let (key, hash) = herald::auth::api_key::generate();
    let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    let tenant = tenant.map(|t| format!("tenant = \"{t}\"\n")).unwrap_or_default();
    (
        key,
        format!(
            "\n[[api_keys]]\nid = \"{id}\"\nhash = \"{hash}\"\nscopes = [{}]\n{tenant}",
            scopes.join(", ")
        ),
    )
}

/// Writes `request` on a fresh connection (the hub may answer before taking
/// all of it) and reads until the peer closes or the answer's chunked body
/// ended.
async fn raw_exchange(hub: &Server, request: &[u8]) -> String {
    let addr = hub.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let _ = tcp.write_all(request).await;
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(ARRIVE, async {
        let mut buf = [0u8; 8192];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// The status code of a raw HTTP answer.
fn raw_status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// The JSON object in a raw HTTP answer's body.
fn raw_json(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let (start, end) = (body.find('{'), body.rfind('}'));
    match (start, end) {
        (Some(s), Some(e)) if e > s => {
            serde_json::from_str(&body[s..=e]).unwrap_or_else(|err| panic!("body is not JSON ({err}): {body:?}"))
        }
        _ => panic!("no JSON body in {answer:?}"),
    }
}

/// Opens a stream on a raw socket, waits for `: connected`, and then reads
/// nothing more (so the hub's writes back up). Returns the socket and what
/// was read so far.
async fn unread_stream(hub: &Server, query: &str, token: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let addr = hub.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    tcp.write_all(
        format!(
            "GET /v1/events?{query} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + ARRIVE;
    while !String::from_utf8_lossy(&seen).contains(": connected") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("the stream opens")
            .expect("read");
        assert!(
            n > 0,
            "closed before `: connected`: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    (tcp, seen)
}

/// Reads a raw stream to its end (close, or the last chunk).
async fn read_stream_to_end(tcp: &mut tokio::net::TcpStream, seen: &mut Vec<u8>) {
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            if seen.ends_with(b"\r\n0\r\n\r\n") {
                break;
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(done.is_ok(), "the stream ends");
}

/// The SSE events of a raw chunked HTTP/1.1 stream answer.
fn raw_sse_events(raw: &[u8]) -> Vec<Event> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head") + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let mut body = Vec::new();
    let mut rest = &raw[head_end..];
    if head.contains("transfer-encoding: chunked") {
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&rest[..eol]).to_string();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("chunk size line {line:?}"));
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                body.extend_from_slice(&rest[..size.min(rest.len())]);
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
    } else {
        body.extend_from_slice(rest);
    }
    sse_frames(&String::from_utf8_lossy(&body))
}

/// The SSE events of a stream body, each frame on its own: unlike an
/// `EventSource` (which carries the last id over), an event has an `id`
/// here only when its own frame has an `id:` line.
fn sse_frames(text: &str) -> Vec<Event> {
    let text = text.replace("\r\n", "\n");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, String::new(), Vec::new());
        for line in block.split('\n') {
            if line.is_empty() || line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(i) => (&line[..i], line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..])),
                None => (line, ""),
            };
            match field {
                "id" => id = Some(value.to_string()),
                "event" => event = value.to_string(),
                "data" => data.push(value.to_string()),
                _ => {}
            }
        }
        if !data.is_empty() {
            events.push(Event {
                id,
                event: if event.is_empty() { "message".into() } else { event },
                data: data.join("\n"),
            });
        }
    }
    events
}

// ------------------------------------------- 1. Mercure private updates

fn mercure_hub(extra: &str) -> Server {
    start_with(&format!("[mercure]\njwt_key = \"{KEY}\"\n{extra}"))
}

/// A native user allowed `*` tries to read Mercure private updates, live
/// and by resuming from just before one.
#[tokio::test]
async fn mercure_private_updates_never_reach_native_streams() {
    let hub = mercure_hub("");
    let acme = user("native", json!({"tenant": "acme"}));
    let hub_wide = user("native-hw", json!({}));
    let mut acme_live = hub.stream("/v1/events?topic=*", &acme).await;
    let mut hw_live = hub.stream("/v1/events?topic=*", &hub_wide).await;
    let entitled = mercure_jwt(json!({"sub": "m", "mercure": {"subscribe": ["https://example.com/secret/{id}"]}}));
    let mut mercure_sub = hub
        .stream_with(
            "/.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Fsecret%2F%7Bid%7D",
            Some(&entitled),
            None,
        )
        .await
        .expect("Mercure subscriber opens");

    let r = mercure_publish(
        &hub,
        Some(&mercure_publisher()),
        &[("topic", "https://example.com/public"), ("data", "before")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let before_id = r.text().await.expect("id");
    let r = mercure_publish(
        &hub,
        Some(&mercure_publisher()),
        &[
            ("topic", "https://example.com/secret/1"),
            ("data", "private-update"),
            ("private", "on"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    fence(&hub, "fence", "fence-1").await;

    // Positive control: the matching Mercure subscriber gets it.
    let e = mercure_sub.next_event(ARRIVE).await.expect("private update");
    assert_eq!(e.data, "private-update");

    for (who, s) in [("acme", &mut acme_live), ("hub-wide", &mut hw_live)] {
        let got = before_fence(s, "fence-1").await;
        assert!(
            !datas(&got).contains(&"private-update"),
            "a live native {who} stream received a Mercure private update: {got:?}"
        );
    }
    for (who, cred) in [("acme", &acme), ("hub-wide", &hub_wide)] {
        for from in [before_id.as_str(), "0"] {
            let mut s = hub
                .stream_with("/v1/events?topic=*", Some(cred), Some(from))
                .await
                .expect("resume opens");
            let got = before_fence(&mut s, "fence-1").await;
            assert!(
                !datas(&got).contains(&"private-update"),
                "a native {who} stream resuming from {from} replayed a Mercure private update: {got:?}"
            );
        }
    }
}

/// Native streams and Mercure subscribers without the right claim try to
/// watch who subscribes to what (and their `mercure.payload`).
#[tokio::test]
async fn mercure_subscription_events_reach_only_subscribers_entitled_to_them() {
    let hub = mercure_hub("anonymous = true\nsubscriptions = true\n");
    let acme = user("native", json!({"tenant": "acme"}));
    let hub_wide = user("native-hw", json!({}));
    let mut acme_live = hub.stream("/v1/events?topic=*", &acme).await;
    let mut hw_live = hub.stream("/v1/events?topic=*", &hub_wide).await;
    let template = "%2F.well-known%2Fmercure%2Fsubscriptions%7B%2Ftopic%7D%7B%2Fsubscriber%7D";
    let watcher = mercure_jwt(
        json!({"sub": "w", "mercure": {"subscribe": ["/.well-known/mercure/subscriptions{/topic}{/subscriber}"]}}),
    );
    let mut watching = hub
        .stream_with(&format!("/.well-known/mercure?topic={template}"), Some(&watcher), None)
        .await
        .expect("watcher opens");
    let outsider = mercure_jwt(json!({"sub": "e", "mercure": {"subscribe": ["https://example.com/other"]}}));
    let mut nosy = Vec::new();
    // The fence update is also on topic `fence`, so every one of them gets it.
    for q in ["topic=*", &format!("topic={template}&topic=fence")] {
        nosy.push(
            hub.stream_with(&format!("/.well-known/mercure?{q}"), Some(&outsider), None)
                .await
                .expect("outsider opens"),
        );
        nosy.push(
            hub.stream_with(&format!("/.well-known/mercure?{q}"), None, None)
                .await
                .expect("anonymous opens"),
        );
    }

    let bob = mercure_jwt(
        json!({"sub": "bob", "mercure": {"subscribe": ["https://example.com/books/{id}"], "payload": {"secret": "bob-payload-xyz"}}}),
    );
    let _bob = hub
        .stream_with(
            "/.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Fwatched",
            Some(&bob),
            None,
        )
        .await
        .expect("bob opens");
    // Positive control: the entitled watcher sees bob's subscription.
    let deadline = Instant::now() + ARRIVE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = watching.next_event(left).await.expect("bob's subscription event");
        if e.data.contains("bob-payload-xyz") {
            break;
        }
    }
    let r = mercure_publish(
        &hub,
        Some(&mercure_publisher()),
        &[
            ("topic", "https://example.com/other"),
            ("topic", "fence"),
            ("data", "m-fence"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    fence(&hub, "fence", "n-fence").await;

    for s in nosy.iter_mut() {
        let got = before_fence(s, "m-fence").await;
        assert!(
            got.iter().all(|e| !e.data.contains("bob-payload-xyz")),
            "a Mercure subscriber without a matching claim saw another's payload: {got:?}"
        );
    }
    for (who, s) in [("acme", &mut acme_live), ("hub-wide", &mut hw_live)] {
        let got = before_fence(s, "n-fence").await;
        assert!(
            got.iter()
                .all(|e| !e.data.contains("Subscription") && !e.data.contains("bob-payload-xyz")),
            "a native {who} stream received a Mercure subscription event: {got:?}"
        );
    }
    for (who, cred) in [("acme", &acme), ("hub-wide", &hub_wide)] {
        let mut s = hub
            .stream_with("/v1/events?topic=*", Some(cred), Some("0"))
            .await
            .expect("resume opens");
        let got = before_fence(&mut s, "n-fence").await;
        assert!(
            got.iter()
                .all(|e| !e.data.contains("Subscription") && !e.data.contains("bob-payload-xyz")),
            "a native {who} stream replayed a Mercure subscription event: {got:?}"
        );
    }
}

// ----------------------------------------------- 2. reserved event types

const CONTROL_TYPES: [&str; 8] = [
    "revoked",
    "reset",
    "expired",
    "evicted",
    "kicked",
    "overflow",
    "shutdown",
    "invalidate",
];

/// A publisher forges a control event (`event: revoked`, `reset`, …) to make
/// clients drop their state or stop listening.
#[tokio::test]
async fn control_event_types_come_only_from_the_hub() {
    let hub = mercure_hub("");
    let publisher = user("pub", json!({"tenant": "acme"}));
    for t in CONTROL_TYPES {
        for cred in [&hub.admin_key, &publisher] {
            let r = client()
                .post(format!("{}/v1/publish", hub.base))
                .bearer_auth(cred)
                .json(&json!({"topics": ["t"], "type": t, "data": "{}", "audience": "public"}))
                .send()
                .await
                .expect("publish");
            assert_eq!(
                error_code(r, StatusCode::BAD_REQUEST).await,
                "reserved_type",
                "native publish with type {t}"
            );
        }
        let r = mercure_publish(
            &hub,
            Some(&mercure_publisher()),
            &[("topic", "https://example.com/t"), ("type", t), ("data", "{}")],
        )
        .await;
        assert_eq!(
            error_code(r, StatusCode::BAD_REQUEST).await,
            "reserved_type",
            "Mercure publish with type {t}"
        );
    }
    // Ordinary types still publish.
    let (status, v) = hub
        .publish(
            &hub.admin_key,
            json!({"topics": ["t"], "type": "order.updated", "data": "x", "audience": "public"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

// ------------------------------------------------------ 3. cookie CSRF

/// A page on another site makes the victim's browser post with its
/// `herald_token` cookie (a "simple" `text/plain` request, no preflight).
#[tokio::test]
async fn cookie_writes_from_foreign_sites_are_refused() {
    let hub = start_with("cors_origins = [\"https://app.example\"]\n");
    let admin = jwt(json!({"sub": "root", "herald": {"admin": true, "publish": ["*"], "subscribe": ["*"]}}));
    let writes = [
        (
            "/v1/publish",
            json!({"topics": ["csrf"], "data": "x", "audience": "public"}),
        ),
        ("/v1/revocations", json!({"type": "logout", "account": "nobody"})),
        ("/v1/invalidate", json!({"tags": [["x"]], "audience": "public"})),
        ("/v1/invalidation/pause", json!({})),
    ];
    let send = |path: &str, body: &Value, headers: &[(&str, &str)], cookie: bool| {
        let mut req = client()
            .post(format!("{}{path}", hub.base))
            .header("content-type", "text/plain")
            .body(body.to_string());
        if cookie {
            req = req.header("cookie", format!("herald_token={admin}"));
        } else {
            req = req.bearer_auth(&admin);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    for (path, body) in &writes {
        let r = send(path, body, &[("origin", "https://evil.example")], true)
            .await
            .expect("post");
        assert_eq!(
            error_code(r, StatusCode::FORBIDDEN).await,
            "origin_forbidden",
            "{path} with the cookie from a foreign Origin"
        );
        let r = send(path, body, &[("sec-fetch-site", "cross-site")], true)
            .await
            .expect("post");
        assert_eq!(
            error_code(r, StatusCode::FORBIDDEN).await,
            "origin_forbidden",
            "{path} with the cookie and Sec-Fetch-Site: cross-site"
        );
        let r = send(path, body, &[("origin", "https://app.example")], true)
            .await
            .expect("post");
        assert_ne!(r.status(), 403, "{path} with the cookie from the allowed origin");
        let r = send(path, body, &[("origin", "https://evil.example")], false)
            .await
            .expect("post");
        assert_ne!(
            r.status(),
            403,
            "{path} with a bearer credential is not a browser's ambient credential"
        );
    }
}

/// A page on another site makes the browser open an `EventSource` with the
/// user's `herald_token` cookie: it cannot read the stream, but the open
/// would take the account's slots and evict the session's oldest stream.
#[tokio::test]
async fn cookie_streams_from_foreign_sites_are_refused() {
    let hub = start_with("cors_origins = [\"https://app.example\"]\n");
    let user = jwt(json!({"sub": "alice", "sid": "s1", "herald": {"subscribe": ["*"]}}));
    let open = |headers: &[(&str, &str)]| {
        let mut req = client()
            .get(format!("{}/v1/events?topic=x", hub.base))
            .header("cookie", format!("herald_token={user}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[
            ("origin", "https://app.example.evil.net"),
            ("sec-fetch-site", "cross-site"),
        ][..],
    ] {
        let r = open(headers).await.expect("get");
        assert_eq!(
            error_code(r, StatusCode::FORBIDDEN).await,
            "origin_forbidden",
            "a cookie stream opened with {headers:?}"
        );
    }
    for headers in [
        &[][..],
        &[("sec-fetch-site", "same-origin")][..],
        &[("origin", "https://app.example"), ("sec-fetch-site", "cross-site")][..],
    ] {
        let r = open(headers).await.expect("get");
        assert_eq!(r.status(), 200, "a cookie stream opened with {headers:?}");
    }
}

/// A look-alike origin (`https://app.example.evil.net`) posts a Mercure
/// update with the victim's `mercureAuthorization` cookie.
#[tokio::test]
async fn mercure_cookie_publish_from_a_lookalike_origin_is_refused() {
    let hub = mercure_hub("publish_origins = [\"https://app.example\"]\n");
    let token = mercure_publisher();
    let post = |origin: &'static str| {
        client()
            .post(format!("{}/.well-known/mercure", hub.base))
            .header("cookie", format!("mercureAuthorization={token}"))
            .header("origin", origin)
            .form(&[("topic", "https://example.com/t"), ("data", "x")])
            .send()
    };
    let r = post("https://app.example.evil.net").await.expect("post");
    assert_eq!(error_code(r, StatusCode::FORBIDDEN).await, "origin_forbidden");
    let r = post("https://evil.example").await.expect("post");
    assert_eq!(error_code(r, StatusCode::FORBIDDEN).await, "origin_forbidden");
    let r = post("https://app.example").await.expect("post");
    assert_eq!(r.status(), 200, "the listed origin publishes with the cookie");
}

// ------------------------------------------- 4. an account is (tenant, sub)

/// One tenant's user fills the per-account cap to lock out the user with
/// the same name in another tenant.
#[tokio::test]
async fn account_stream_cap_counts_each_tenant_separately() {
    let hub = start_with("[limits]\nper_account = 2\n");
    let globex = |sid: &str| user("capx", json!({"tenant": "globex", "sid": sid}));
    let _g1 = hub.stream("/v1/events?topic=t", &globex("g1")).await;
    let _g2 = hub.stream("/v1/events?topic=t", &globex("g2")).await;
    let r = hub.get("/v1/events?topic=t", Some(&globex("g3"))).await;
    assert_eq!(
        error_code(r, StatusCode::TOO_MANY_REQUESTS).await,
        "account_stream_cap",
        "the cap is real"
    );
    let acme = user("capx", json!({"tenant": "acme", "sid": "a1"}));
    let r = hub.stream_with("/v1/events?topic=t", Some(&acme), None).await;
    assert!(
        r.is_ok(),
        "capx@acme is refused because of capx@globex: {:?}",
        r.err().map(|r| r.status())
    );
}

/// A user in one tenant reuses another tenant's user name and session id to
/// evict that user's stream.
#[tokio::test]
async fn session_eviction_stays_within_the_account() {
    let hub = start_with("[limits]\nper_session = 1\nsession_policy = \"evict\"\n");
    let globex = user("capy", json!({"tenant": "globex", "sid": "same"}));
    let acme = user("capy", json!({"tenant": "acme", "sid": "same"}));
    let mut g = hub.stream("/v1/events?topic=t", &globex).await;
    let mut a1 = hub.stream("/v1/events?topic=t", &acme).await;
    fence(&hub, "t", "fence-1").await;
    let got = before_fence(&mut g, "fence-1").await;
    assert!(
        got.iter().all(|e| e.event != "evicted"),
        "capy@acme evicted capy@globex: {got:?}"
    );
    // Positive control: the same account's second stream does evict.
    let _a2 = hub.stream("/v1/events?topic=t", &acme).await;
    let (ended, seen) = a1.ended_within(ARRIVE).await;
    assert!(ended, "acme's first stream is evicted");
    assert_eq!(seen.last().map(|e| e.event.as_str()), Some("evicted"));
    fence(&hub, "t", "fence-2").await;
    let got = before_fence(&mut g, "fence-2").await;
    assert!(got.iter().all(|e| e.event != "evicted"), "{got:?}");
}

/// A tenant user named `alice` reads hub-wide events addressed to the
/// hub-wide `alice`.
#[tokio::test]
async fn hub_wide_user_audience_reaches_only_the_hub_wide_account() {
    let hub = start();
    let mut hw = hub.stream("/v1/events?topic=t", &user("alice", json!({}))).await;
    let mut acme = hub
        .stream("/v1/events?topic=t", &user("alice", json!({"tenant": "acme"})))
        .await;
    let (status, v) = hub
        .publish(
            &hub.admin_key,
            json!({"topics": ["t"], "data": "for-hub-alice", "audience": {"users": ["alice"]}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    fence(&hub, "t", "fence").await;
    assert_eq!(datas(&before_fence(&mut hw, "fence").await), ["for-hub-alice"]);
    let got = before_fence(&mut acme, "fence").await;
    assert!(got.is_empty(), "alice@acme got the hub-wide alice's event: {got:?}");
}

/// Accounts in other tenants (or hub-wide) reuse a session id to read
/// events addressed to that session.
#[tokio::test]
async fn session_audience_reaches_only_that_accounts_tenant() {
    let hub = start();
    let mut acme = hub
        .stream("/v1/events?topic=t", &user("u", json!({"tenant": "acme", "sid": "s1"})))
        .await;
    let mut globex = hub
        .stream(
            "/v1/events?topic=t",
            &user("u", json!({"tenant": "globex", "sid": "s1"})),
        )
        .await;
    let mut hw = hub.stream("/v1/events?topic=t", &user("u", json!({"sid": "s1"}))).await;
    let mut hw_other = hub.stream("/v1/events?topic=t", &user("v", json!({"sid": "s1"}))).await;
    let (status, v) = hub
        .publish(
            &hub.acme_key,
            json!({"topics": ["t"], "data": "acme-s1", "audience": {"sessions": ["s1"]}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = hub
        .publish(
            &hub.admin_key,
            json!({"topics": ["t"], "data": "hub-s1", "audience": {"sessions": ["s1"]}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    fence(&hub, "t", "fence").await;
    assert_eq!(
        datas(&before_fence(&mut acme, "fence").await),
        ["acme-s1"],
        "acme's s1 gets acme's event and not the hub-wide one"
    );
    let got = before_fence(&mut globex, "fence").await;
    assert!(
        got.is_empty(),
        "globex's s1 got another tenant's session event: {got:?}"
    );
    assert_eq!(datas(&before_fence(&mut hw, "fence").await), ["hub-s1"]);
    assert_eq!(datas(&before_fence(&mut hw_other, "fence").await), ["hub-s1"]);
}

/// A hub-wide revoker logs out `x` in one tenant and must not cut the
/// unrelated `x` of another tenant.
#[tokio::test]
async fn tenant_scoped_logout_closes_only_that_tenants_account() {
    let hub = start();
    let old = now() - 10;
    let mut x_acme = hub
        .stream("/v1/events?topic=t", &user("x", json!({"tenant": "acme", "iat": old})))
        .await;
    let mut x_globex = hub
        .stream(
            "/v1/events?topic=t",
            &user("x", json!({"tenant": "globex", "iat": old})),
        )
        .await;
    let (status, v) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "logout", "account": "x", "tenant": "acme"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["closed"], 1, "{v}");
    let (ended, seen) = x_acme.ended_within(ARRIVE).await;
    assert!(ended, "x@acme is logged out");
    assert_eq!(seen.last().map(|e| e.event.as_str()), Some("revoked"));
    fence(&hub, "t", "fence").await;
    let got = before_fence(&mut x_globex, "fence").await;
    assert!(got.is_empty(), "x@globex was touched: {got:?}");

    // Without a tenant the hub-wide revoker logs out every tenant's `y`.
    let mut y_acme = hub
        .stream("/v1/events?topic=t", &user("y", json!({"tenant": "acme", "iat": old})))
        .await;
    let mut y_globex = hub
        .stream(
            "/v1/events?topic=t",
            &user("y", json!({"tenant": "globex", "iat": old})),
        )
        .await;
    let (status, v) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "logout", "account": "y"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["closed"], 2, "{v}");
    for s in [&mut y_acme, &mut y_globex] {
        let (ended, seen) = s.ended_within(ARRIVE).await;
        assert!(ended);
        assert_eq!(seen.last().map(|e| e.event.as_str()), Some("revoked"));
    }
}

/// One tenant's user hoards SSE tokens to starve the same-named user of
/// another tenant.
#[tokio::test]
async fn sse_token_cap_counts_each_account_separately() {
    let hub = start_with("[limits]\nsse_tokens_outstanding = 2\n");
    let globex = user("capz", json!({"tenant": "globex"}));
    for _ in 0..2 {
        let (s, v) = hub.post("/v1/tokens", Some(&globex), json!({"subscribe": ["*"]})).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = hub.post("/v1/tokens", Some(&globex), json!({"subscribe": ["*"]})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_tokens")),
        "the cap is real"
    );
    let acme = user("capz", json!({"tenant": "acme"}));
    let (s, v) = hub.post("/v1/tokens", Some(&acme), json!({"subscribe": ["*"]})).await;
    assert_eq!(s, 200, "capz@acme refused because of capz@globex: {v}");
}

// -------------------------------- 5. retained snapshots and ids per tenant

/// Another tenant retains on the same topic name to wipe (or replace) this
/// tenant's snapshot.
#[tokio::test]
async fn retained_snapshots_are_kept_per_tenant() {
    let hub = start();
    let acme = user("pub", json!({"tenant": "acme"}));
    let globex = user("pub", json!({"tenant": "globex"}));
    for (cred, data) in [(&acme, "acme-retained"), (&globex, "globex-retained")] {
        let (s, v) = hub
            .publish(
                cred,
                json!({"topics": ["ret1"], "data": data, "audience": "public", "retain": true}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let reader = user("reader", json!({"tenant": "acme"}));
    let mut s = hub.stream("/v1/events?topic=ret1", &reader).await;
    fence(&hub, "ret1", "fence").await;
    assert_eq!(datas(&before_fence(&mut s, "fence").await), ["acme-retained"]);
}

/// A retained event for one user hides the topic's public snapshot from
/// everyone else.
#[tokio::test]
async fn a_user_scoped_retained_event_does_not_hide_the_public_one() {
    let hub = start();
    for (data, audience) in [
        ("public-retained", json!("public")),
        ("alice-retained", json!({"users": ["alice"]})),
    ] {
        let (s, v) = hub
            .publish(
                &hub.admin_key,
                json!({"topics": ["ret2"], "data": data, "audience": audience, "retain": true}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let mut bob = hub.stream("/v1/events?topic=ret2", &user("bob", json!({}))).await;
    let mut alice = hub.stream("/v1/events?topic=ret2", &user("alice", json!({}))).await;
    fence(&hub, "ret2", "fence").await;
    assert_eq!(datas(&before_fence(&mut bob, "fence").await), ["public-retained"]);
    let got = before_fence(&mut alice, "fence").await;
    assert!(datas(&got).contains(&"alice-retained"), "{got:?}");
}

/// One tenant probes (or blocks) another's client ids with `409`.
#[tokio::test]
async fn client_ids_are_unique_per_tenant() {
    let hub = start();
    let acme = user("pub", json!({"tenant": "acme"}));
    let globex = user("pub", json!({"tenant": "globex"}));
    let ev = json!({"topics": ["orders"], "id": "ord-1", "data": "x", "audience": "public"});
    let (s, v) = hub.publish(&acme, ev.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = hub.publish(&globex, ev.clone()).await;
    assert_eq!(s, 200, "globex is refused an id only acme used: {v}");
    let (s, v) = hub.publish(&acme, ev).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate_id")),
        "acme reusing its own id is still refused"
    );
}

/// A tenant resumes from another tenant's event id to learn it exists (or
/// to position itself in that tenant's history).
#[tokio::test]
async fn another_tenants_event_id_resumes_like_an_unknown_id() {
    let hub = start();
    let acme = user("pub", json!({"tenant": "acme"}));
    let globex = user("pub", json!({"tenant": "globex"}));
    let (s, v) = hub
        .publish(
            &acme,
            json!({"topics": ["t5"], "data": "acme-old", "audience": "public", "retain": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = hub
        .publish(
            &globex,
            json!({"topics": ["t5"], "id": "glx-evt-1", "data": "g", "audience": "public"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = hub
        .publish(
            &acme,
            json!({"topics": ["t5"], "data": "acme-new", "audience": "public"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let reader = user("reader", json!({"tenant": "acme"}));
    let mut answers = Vec::new();
    for last in ["glx-evt-1", "never-existed-anywhere"] {
        match hub.stream_with("/v1/events?topic=t5", Some(&reader), Some(last)).await {
            Ok(s) => answers.push((last, 200u16, None, Some(s))),
            Err(r) => {
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                answers.push((last, status, Some(body["error"]["code"].clone()), None));
            }
        }
    }
    fence(&hub, "t5", "fence").await;
    let mut seen = Vec::new();
    for (last, status, code, stream) in answers.iter_mut() {
        let frames = match stream {
            Some(s) => before_fence(s, "fence")
                .await
                .into_iter()
                .map(|e| (e.event, e.data))
                .collect::<Vec<_>>(),
            None => Vec::new(),
        };
        seen.push((*last, *status, code.clone(), frames));
    }
    assert_eq!(
        (&seen[0].1, &seen[0].2, &seen[0].3),
        (&seen[1].1, &seen[1].2, &seen[1].3),
        "another tenant's id answers differently from an unknown id: {seen:?}"
    );
}

// ------------------------------------------------ 6. credential time claims

/// A token claiming to be issued in the future (dodging "issued before the
/// revocation").
#[tokio::test]
async fn a_jwt_issued_in_the_future_is_refused() {
    let hub = start();
    let future = user("u", json!({"iat": now() + 3600, "exp": now() + 7200}));
    let r = hub.get("/v1/events?topic=t", Some(&future)).await;
    assert_eq!(r.status(), 401);
    assert!(hub
        .stream_with("/v1/events?topic=t", Some(&user("u", json!({}))), None)
        .await
        .is_ok());
}

/// A token with a `crit` header naming an extension the hub does not
/// understand (RFC 7515 §4.1.11: it must be refused).
#[tokio::test]
async fn a_jwt_with_a_crit_header_is_refused() {
    let hub = start();
    let claims = json!({"sub": "u", "iat": now(), "exp": now() + 600, "herald": {"subscribe": ["*"]}});
    let plain = hand_signed_jwt(json!({"alg": "HS256", "typ": "JWT"}), claims.clone(), SECRET);
    assert!(
        hub.stream_with("/v1/events?topic=t", Some(&plain), None).await.is_ok(),
        "the hand-signed token without crit is valid"
    );
    let crit = hand_signed_jwt(
        json!({"alg": "HS256", "typ": "JWT", "crit": ["https://example.invalid/ext"], "https://example.invalid/ext": true}),
        claims,
        SECRET,
    );
    assert_eq!(hub.get("/v1/events?topic=t", Some(&crit)).await.status(), 401);
}

/// Mercure tokens that never expire, or are not valid yet.
#[tokio::test]
async fn mercure_tokens_without_time_bounds_or_not_yet_valid_are_refused() {
    let hub = mercure_hub("");
    let get = |tok: String| {
        client()
            .get(format!("{}/.well-known/mercure?topic=a", hub.base))
            .bearer_auth(tok)
            .send()
    };
    let ok = get(mercure_jwt(json!({"sub": "m", "mercure": {"subscribe": ["*"]}})))
        .await
        .expect("get");
    assert_eq!(ok.status(), 200, "a bounded token works");
    drop(ok);
    let timeless = mercure_jwt(json!({"sub": "m", "exp": null, "iat": null, "mercure": {"subscribe": ["*"]}}));
    assert_eq!(get(timeless).await.expect("get").status(), 401, "no exp and no iat");
    let early = mercure_jwt(json!({"sub": "m", "nbf": now() + 3600, "mercure": {"subscribe": ["*"]}}));
    assert_eq!(get(early).await.expect("get").status(), 401, "nbf in the future");
}

/// A nearly expired JWT mints a long-lived SSE token to outlive itself.
#[tokio::test]
async fn an_sse_token_never_outlives_the_jwt_that_minted_it() {
    let hub = start();
    let parent_exp = now() + 3;
    let parent = user("short", json!({"exp": parent_exp, "iat": now()}));
    let (s, v) = hub
        .post("/v1/tokens", Some(&parent), json!({"subscribe": ["*"], "ttl": 300}))
        .await;
    assert_eq!(s, 200, "{v}");
    let expires_in = v["expires_in"].as_u64().expect("expires_in");
    let expires_at = v["expires_at"].as_u64().expect("expires_at");
    assert!(expires_in <= 3, "expires_in {expires_in} outlives the parent");
    assert!(
        expires_at <= parent_exp,
        "expires_at {expires_at} > parent exp {parent_exp}"
    );
    let token = v["token"].as_str().expect("token").to_string();
    while now() <= parent_exp.max(expires_at) + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = hub.get(&format!("/v1/events?topic=a&token={token}"), None).await;
    assert_eq!(r.status(), 401, "a stream opens with a token whose parent expired");
}

/// An operator configures a guessable HMAC secret.
#[tokio::test]
async fn a_short_jwt_secret_stops_the_hub_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\njwt_secret = \"short-secret-31-bytes-long-xxxx\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .current_dir(dir.path())
        .env("HERALD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn herald");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stdout }, &mut s);
        s
    });
    let deadline = Instant::now() + ARRIVE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the hub kept running with a 31-byte secret: {out}"));
    assert!(!status.success(), "exit status {status:?}");
    assert!(!out.contains("herald listening on"), "it served: {out}");
}

// ----------------------------------------------------------- 7. scopes

/// A publisher limited to `orders.>` invalidates everyone's caches.
#[tokio::test]
async fn invalidation_needs_publish_rights_on_tags() {
    let hub = start();
    let body = json!({"tags": [["todos"]], "audience": "public"});
    let narrow = jwt(json!({"sub": "p", "herald": {"publish": ["orders.>"]}}));
    let (s, v) = hub.post("/v1/invalidate", Some(&narrow), body.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    for allowed in [json!(["$tags"]), json!(["*"])] {
        let cred = jwt(json!({"sub": "p", "herald": {"publish": allowed}}));
        let (s, v) = hub.post("/v1/invalidate", Some(&cred), body.clone()).await;
        assert_eq!(s, 200, "publish {allowed}: {v}");
    }
}

/// A key allowed only to mint tokens mints itself an admin one.
#[tokio::test]
async fn a_tokens_only_key_cannot_mint_admin_tokens() {
    let (key, toml) = api_key_toml("minter", &["tokens"], None);
    let hub = start_with(&toml);
    let (s, v) = hub
        .post("/v1/tokens", Some(&key), json!({"sub": "x", "subscribe": ["*"]}))
        .await;
    assert_eq!(s, 200, "the key mints: {v}");
    let (s, v) = hub
        .post(
            "/v1/tokens",
            Some(&key),
            json!({"sub": "x", "subscribe": ["*"], "admin": true}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
}

// ----------------------------------------------- 8. authenticate first

/// An anonymous client sends huge selector lists to make the hub parse and
/// compile them before it even checks a credential.
#[tokio::test]
async fn huge_subscriptions_are_refused_as_unauthenticated_first() {
    let hub = mercure_hub("anonymous = false\n");
    let many: String = (0..150).map(|i| format!("topic=t{i}&")).collect();
    let r = hub.get(&format!("/v1/events?{many}"), None).await;
    assert_eq!(r.status(), 401, "150 selectors without a credential");
    let many: String = (0..1500).map(|i| format!("topic=t{i}&")).collect();
    let r = hub.get(&format!("/.well-known/mercure?{many}"), None).await;
    assert_eq!(r.status(), 401, "1500 Mercure topics without a token");
}

/// A Mercure publisher fans one update out to a huge topic list.
#[tokio::test]
async fn mercure_publish_topic_count_is_bounded() {
    let hub = mercure_hub("");
    let topics: Vec<String> = (0..101).map(|i| format!("https://example.com/t/{i}")).collect();
    let mut form: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", t.as_str())).collect();
    form.push(("data", "x"));
    let r = mercure_publish(&hub, Some(&mercure_publisher()), &form).await;
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "too_many_topics");
    let r = mercure_publish(&hub, Some(&mercure_publisher()), &form[1..]).await;
    assert_eq!(r.status(), 200, "100 topics are fine");
}

// ------------------------------------------------------ 9. bounded state

/// A tenant retains on ever more topics to grow the hub's memory.
#[tokio::test]
async fn retained_snapshots_are_bounded_per_tenant_keeping_the_newest() {
    let hub = start_with("[limits]\nretained_per_tenant = 3\n");
    let acme = user("pub", json!({"tenant": "acme"}));
    for i in 1..=5 {
        let (s, v) = hub
            .publish(
                &acme,
                json!({"topics": [format!("r.{i}")], "data": format!("r{i}"), "audience": "public", "retain": true}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let reader = user("reader", json!({"tenant": "acme"}));
    let mut s = hub
        .stream(
            "/v1/events?topic=r.1&topic=r.2&topic=r.3&topic=r.4&topic=r.5&topic=rfence",
            &reader,
        )
        .await;
    fence(&hub, "rfence", "fence").await;
    let mut got = datas(&before_fence(&mut s, "fence").await)
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, ["r3", "r4", "r5"]);
}

/// A publisher floods a paused hub with distinct tags to grow the held set.
#[tokio::test]
async fn paused_invalidations_stay_bounded_and_still_cover_every_tag() {
    let hub = start();
    let reader = user("reader", json!({}));
    let mut s = hub.stream("/v1/events?topic=%24tags", &reader).await;
    let (st, _) = hub
        .post("/v1/invalidation/pause", Some(&hub.admin_key), json!({}))
        .await;
    assert_eq!(st, 200);
    let mut submitted: Vec<Value> = Vec::new();
    for batch in 0..5 {
        let tags: Vec<Value> = (0..100).map(|i| json!(["items", batch * 100 + i])).collect();
        submitted.extend(tags.iter().cloned());
        let (st, v) = hub
            .post(
                "/v1/invalidate",
                Some(&hub.admin_key),
                json!({"tags": tags, "audience": "public"}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    }
    let state: Value = hub
        .get("/v1/invalidation", Some(&hub.admin_key))
        .await
        .json()
        .await
        .expect("json");
    let held = state["held"].as_u64().expect("held");
    assert!(held <= 100, "one audience holds {held} tags");
    let (st, v) = hub
        .post("/v1/invalidation/resume", Some(&hub.admin_key), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = hub
        .post(
            "/v1/invalidate",
            Some(&hub.admin_key),
            json!({"tags": [["fence-tag"]], "audience": "public"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mut delivered: Vec<Vec<Value>> = Vec::new();
    let deadline = Instant::now() + ARRIVE;
    'read: loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = s.next_event(left).await.expect("invalidations arrive");
        assert_eq!(e.event, "invalidate");
        let v: Value = serde_json::from_str(&e.data).expect("json");
        for tag in v["tags"].as_array().expect("tags") {
            if tag == &json!(["fence-tag"]) {
                break 'read;
            }
            delivered.push(tag.as_array().expect("tag").clone());
        }
    }
    let covers = |prefix: &[Value], tag: &[Value]| prefix.len() <= tag.len() && tag[..prefix.len()] == *prefix;
    for tag in &submitted {
        let tag = tag.as_array().expect("tag");
        assert!(
            delivered.iter().any(|d| covers(d, tag)),
            "{tag:?} was submitted but no delivered tag covers it (delivered {} tags)",
            delivered.len()
        );
    }
}

/// Anonymous Mercure clients open many-topic subscriptions so that every
/// one of them writes subscription events into the durable history.
#[tokio::test]
async fn anonymous_mercure_subscribers_add_nothing_to_history() {
    let hub = mercure_hub("anonymous = true\nsubscriptions = true\n");
    let mut open = Vec::new();
    for c in 0..5 {
        let topics: String = (0..100)
            .map(|i| format!("topic=https%3A%2F%2Fexample.com%2F{c}%2F{i}&"))
            .collect();
        open.push(
            hub.stream_with(&format!("/.well-known/mercure?{topics}"), None, None)
                .await
                .expect("anonymous subscriber opens"),
        );
    }
    let (status, v) = hub
        .publish(
            &hub.admin_key,
            json!({"topics": ["after"], "data": "x", "audience": "public"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["seq"], 1, "anonymous subscriptions were written to history: {v}");
    drop(open);
}

/// A client opens a request body and drips one byte every 2 s to hold a
/// connection and a task for ever.
#[tokio::test]
async fn a_dripping_request_body_is_cut_with_408() {
    let hub = start_with("body_timeout_secs = 2\n");
    let addr = hub.base.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let body = format!("{:<60}", r#"{"topics":["drip"],"data":"x","audience":"public"}"#);
    let head = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        hub.admin_key,
        body.len()
    );
    let started = Instant::now();
    wr.write_all(head.as_bytes()).await.expect("head");
    let drip = tokio::spawn(async move {
        for b in body.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    drip.abort();
    let answer = String::from_utf8_lossy(&seen).into_owned();
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert_eq!(raw_json(&answer)["error"]["code"], "body_timeout", "{answer}");
    assert!(
        elapsed < Duration::from_secs(2 + 18),
        "answered after {elapsed:?}; the body would have taken 120 s"
    );
}

// ------------------------------------------------ 10. resume correctness

/// Events `from..` as `(index, id)` from their data `"{index}:..."`.
fn indexed(events: &[Event], prefix: &str) -> Vec<(usize, String)> {
    events
        .iter()
        .filter_map(|e| {
            let rest = e.data.strip_prefix(prefix)?;
            let (n, _) = rest.split_once(':')?;
            Some((n.parse().ok()?, e.id.clone().unwrap_or_default()))
        })
        .collect()
}

/// Checks the overflow frame and that resuming from it, together with what
/// arrived before it, gives every one of the `n` live events exactly once.
async fn check_overflow_resume(hub: &Server, reader: &str, query: &str, first: &[Event], n: usize, fence_topic: &str) {
    let overflow = first.last().expect("the stream sent something");
    assert_eq!(
        overflow.event, "overflow",
        "the stream was cut with overflow: {first:?}"
    );
    let id = overflow
        .id
        .clone()
        .unwrap_or_else(|| panic!("the overflow frame carries no id: {overflow:?}"));
    let got_before: Vec<usize> = indexed(first, "live").into_iter().map(|(i, _)| i).collect();
    fence(hub, fence_topic, "resume-fence").await;
    let mut s = hub
        .stream_with(&format!("/v1/events?{query}"), Some(reader), Some(&id))
        .await
        .expect("resume opens");
    let resumed = before_fence(&mut s, "resume-fence").await;
    assert!(
        resumed.iter().all(|e| e.event != "reset"),
        "resuming from the overflow id {id} lost history: {resumed:?}"
    );
    let got_after: Vec<usize> = indexed(&resumed, "live").into_iter().map(|(i, _)| i).collect();
    let others: Vec<&str> = resumed
        .iter()
        .filter(|e| !e.data.starts_with("live"))
        .map(|e| e.data.get(..12).unwrap_or(&e.data))
        .collect();
    assert!(
        others.is_empty(),
        "resuming from the overflow id {id} re-sent events from before the stream's position: {others:?}"
    );
    let mut all = got_before.clone();
    all.extend(&got_after);
    assert_eq!(
        all,
        (0..n).collect::<Vec<_>>(),
        "before the overflow (id {id}): {got_before:?}; after resuming: {got_after:?}"
    );
}

/// Publishes `n` public events `live0:…` to `live{n-1}:…` on `topic`, one
/// request each, every payload padded to `bytes`.
async fn publish_live(hub: &Server, topic: &str, n: usize, bytes: usize) {
    let pad = "x".repeat(bytes);
    for i in 0..n {
        let (st, v) = hub
            .publish(
                &hub.admin_key,
                json!({"topics": [topic], "data": format!("live{i}:{pad}"), "audience": "public"}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
}

/// A slow client is cut for overflow; it must be able to resume from the
/// overflow frame's id without losing or repeating an event.
#[tokio::test]
async fn an_overflowed_stream_resumes_from_the_overflow_id_without_gap_or_duplicate() {
    let hub = start_with("[limits]\nqueue_events = 2\n");
    let reader = user("slow", json!({}));
    for i in 0..3 {
        fence(&hub, "ov", &format!("pre{i}")).await;
    }
    let (mut tcp, mut seen) = unread_stream(&hub, "topic=ov", &reader).await;
    publish_live(&hub, "ov", 50, 256 * 1024).await;
    read_stream_to_end(&mut tcp, &mut seen).await;
    let first = raw_sse_events(&seen);
    check_overflow_resume(&hub, &reader, "topic=ov", &first, 50, "ov").await;
}

/// The stream is cut for overflow while its writer is still busy with (or
/// still reading) the retained snapshot, before any live event went out.
#[tokio::test]
async fn an_overflow_before_the_first_live_event_still_resumes_exactly() {
    let hub = start_with("[limits]\nqueue_events = 2\n");
    let reader = user("slow", json!({}));
    let big = "r".repeat(900 * 1024);
    for i in 0..16 {
        let (s, v) = hub
            .publish(
                &hub.admin_key,
                json!({"topics": [format!("snap.{i}")], "data": format!("snap{i}:{big}"), "audience": "public", "retain": true}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (mut tcp, mut seen) = unread_stream(&hub, "topic=snap.*", &reader).await;
    for i in 0..50 {
        let (s, v) = hub
            .publish(
                &hub.admin_key,
                json!({"topics": ["snap.live"], "data": format!("live{i}:x"), "audience": "public"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    read_stream_to_end(&mut tcp, &mut seen).await;
    let first = raw_sse_events(&seen);
    let snapshot = first.iter().filter(|e| e.data.starts_with("snap")).count();
    // The overflow may even win over the snapshot (then nothing but the
    // overflow arrives): either way the stream's position is after it.
    assert!(
        snapshot == 16 || snapshot == 0,
        "the retained snapshot arrives whole or not at all: {snapshot} of 16"
    );
    check_overflow_resume(&hub, &reader, "topic=snap.*", &first, 50, "snap.live").await;
}

/// Events meet a stream whose client stopped reading: the first ones go
/// straight to the connection (the dispatcher writes an idle stream's
/// socket itself), the rest wait in the queue until it overflows. The
/// client must resume right after the last event the socket took, though
/// the stream's own task never wrote it.
#[tokio::test]
async fn an_overflow_after_direct_writes_resumes_after_the_last_one_written() {
    let hub = start_with("[limits]\nqueue_events = 2\n");
    let reader = user("slow", json!({}));
    for i in 0..3 {
        fence(&hub, "burst", &format!("pre{i}")).await;
    }
    let (mut tcp, mut seen) = unread_stream(&hub, "topic=burst", &reader).await;
    // 24 MiB, one event at a time (a dispatcher that keeps up writes
    // directly): far more than a connection's buffers hold while its
    // client does not read.
    publish_live(&hub, "burst", 160, 150 * 1024).await;
    read_stream_to_end(&mut tcp, &mut seen).await;
    let first = raw_sse_events(&seen);
    let written = first.iter().filter(|e| e.data.starts_with("live")).count();
    assert!(written > 0, "the socket took the burst's first events directly");
    check_overflow_resume(&hub, &reader, "topic=burst", &first, 160, "burst").await;
}

/// A crash without fsync leaves a hole in the sequence; the store checker
/// must not call a healthy store damaged because of it.
#[tokio::test]
async fn store_verify_accepts_the_sequence_gap_left_by_a_crash() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let config = root.path().join("herald.toml");
    let (admin_key, admin_hash) = herald::auth::api_key::generate();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\njwt_secret = \"{SECRET}\"\nfsync = \"never\"\n\n[[api_keys]]\nid = \"admin\"\nhash = \"{admin_hash}\"\nscopes = [\"publish\", \"admin\"]\n",
            data.display()
        ),
    )
    .expect("write config");
    let start = || {
        start_args(
            &["serve", "--config", config.to_str().expect("utf8")],
            tempfile::tempdir().expect("cwd"),
        )
    };
    let publish = |hub: &Server, data: &'static str| {
        let key = admin_key.clone();
        let base = hub.base.clone();
        async move {
            let r = client()
                .post(format!("{base}/v1/publish"))
                .bearer_auth(key)
                .json(&json!({"topics": ["gap"], "data": data, "audience": "public"}))
                .send()
                .await
                .expect("publish");
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.expect("json");
            v["seq"].as_u64().expect("seq")
        }
    };
    let hub = start();
    let mut before = 0;
    for d in ["a", "b", "c"] {
        before = publish(&hub, d).await;
    }
    // Past the once-a-second checkpoint, then SIGKILL.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(hub);
    let mut hub = start();
    let after = publish(&hub, "d").await;
    assert!(after > before, "{after} after {before}");
    hub.sigterm();
    let status = hub.wait_exit(ARRIVE).expect("the hub stops");
    assert!(status.success(), "a graceful stop: {status:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["store", "verify", "--data-dir", data.to_str().expect("utf8")])
        .env("HERALD_LOG", "warn")
        .output()
        .expect("run herald store verify");
    assert!(
        out.status.success(),
        "verify refused a store with a crash gap ({before} then {after}): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------- 11. small contract points

/// A link prefetcher (or a probe) sends `HEAD` with a single-use token,
/// burning it before the browser's real `GET`.
#[tokio::test]
async fn head_on_a_stream_is_405_and_does_not_spend_the_sse_token() {
    let hub = start();
    let (s, v) = hub
        .post(
            "/v1/tokens",
            Some(&hub.admin_key),
            json!({"sub": "h", "subscribe": ["x"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let path = format!("/v1/events?token={}&topic=x", v["token"].as_str().expect("token"));
    let r = client().head(format!("{}{path}", hub.base)).send().await.expect("head");
    assert_eq!(r.status(), 405);
    drop(r);
    assert!(
        hub.stream_with(&path, None, None).await.is_ok(),
        "the token still opens its stream after HEAD"
    );
}

/// Oversized request heads get Herald's JSON error, like every other error.
#[tokio::test]
async fn oversized_request_heads_get_431_with_a_json_error() {
    let hub = start();
    let url = format!(
        "GET /v1/events?topic={} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = raw_exchange(&hub, url.as_bytes()).await;
    assert_eq!(
        raw_status(&answer),
        431,
        "a 100 KB URL: {}",
        answer.get(..300).unwrap_or(&answer)
    );
    check_error_shape(&raw_json(&answer));
    let headers: String = (0..200).map(|i| format!("X-Header-{i}: v\r\n")).collect();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: hub\r\n{headers}Connection: close\r\n\r\n");
    let answer = raw_exchange(&hub, req.as_bytes()).await;
    assert_eq!(
        raw_status(&answer),
        431,
        "200 headers: {}",
        answer.get(..300).unwrap_or(&answer)
    );
    check_error_shape(&raw_json(&answer));
}

/// `topic=*` asks for everything, but a credential limited to `a.>` must
/// still see only `a.>`.
#[tokio::test]
async fn a_wildcard_stream_sees_only_what_the_credential_covers() {
    let hub = start();
    let narrow = jwt(json!({"sub": "n", "herald": {"subscribe": ["a.>"]}}));
    let mut s = hub
        .stream_with("/v1/events?topic=*", Some(&narrow), None)
        .await
        .unwrap_or_else(|r| panic!("topic=* refused with {}", r.status()));
    fence(&hub, "b.x", "b-event").await;
    fence(&hub, "a.x", "a-event").await;
    let got = before_fence(&mut s, "a-event").await;
    assert!(got.is_empty(), "a b.x event reached an a.> credential: {got:?}");
}

// ------------------------------------------- revokers, tokens, refused opens

/// A tenant admin tries to revoke accounts of another tenant, or that whole
/// tenant.
#[tokio::test]
async fn a_tenant_bound_revoker_cannot_reach_another_tenant() {
    let hub = start();
    let acme_admin = jwt(json!({"sub": "ops", "tenant": "acme", "herald": {"admin": true}}));
    let victim = jwt(json!({"sub": "x", "tenant": "globex", "herald": {"subscribe": ["*"]}}));
    let mut s = hub.stream("/v1/events?topic=t", &victim).await;
    for body in [
        json!({"type": "logout", "account": "x", "tenant": "globex"}),
        json!({"type": "tenant_revoke", "tenant": "globex"}),
    ] {
        let (status, v) = hub.post("/v1/revocations", Some(&acme_admin), body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {v}");
        assert_eq!(v["error"]["code"], "tenant_forbidden", "{body}");
    }
    // Naming no tenant, it still acts inside its own only.
    let (status, v) = hub
        .post(
            "/v1/revocations",
            Some(&acme_admin),
            json!({"type": "logout", "account": "x"}),
        )
        .await;
    assert_eq!((status, v["closed"].as_u64()), (StatusCode::OK, Some(0)), "{v}");
    fence(&hub, "t", "after").await;
    assert!(before_fence(&mut s, "after").await.is_empty());
}

/// A credential is revoked while an SSE token minted from it is still
/// unused: the token must die with it.
#[tokio::test]
async fn sse_tokens_die_with_the_credential_that_minted_them() {
    let hub = start();
    let alice = jwt(json!({"sub": "alice", "jti": "alice-jwt", "herald": {"subscribe": ["t"]}}));
    let (status, minted) = hub.post("/v1/tokens", Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let token = minted["token"].as_str().expect("token").to_string();
    let (status, v) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "token_revoke", "jti": "alice-jwt"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let r = hub.get(&format!("/v1/events?topic=t&token={token}"), None).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the SSE token outlived its revoked parent"
    );
}

/// A stream open refused by a cap must not burn the single-use SSE token
/// it presented: the client retries with the same token once a slot frees.
#[tokio::test]
async fn a_refused_stream_open_does_not_spend_the_sse_token() {
    let hub = start_with("[limits]\nper_account = 1\n");
    let alice = jwt(json!({"sub": "alice", "herald": {"subscribe": ["t"]}}));
    let first = hub.stream("/v1/events?topic=t", &alice).await;
    let (status, minted) = hub.post("/v1/tokens", Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let token = minted["token"].as_str().expect("token").to_string();
    let path = format!("/v1/events?topic=t&token={token}");
    let r = hub.get(&path, None).await;
    assert_eq!(error_code(r, StatusCode::TOO_MANY_REQUESTS).await, "account_stream_cap");
    drop(first);
    // The slot comes back when the hub sees the client gone.
    let deadline = Instant::now() + ARRIVE;
    loop {
        let r = hub.get(&path, None).await;
        if r.status() == StatusCode::OK {
            break;
        }
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the token still works");
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A single-use SSE token for the audit stream is presented in the
/// `Authorization` header instead of `?token=`: it must be spent all the
/// same, or it could open audit streams forever.
#[tokio::test]
async fn a_single_use_token_is_spent_however_it_is_presented() {
    let hub = start();
    let root = jwt(json!({"sub": "root", "herald": {"admin": true, "subscribe": ["*"]}}));
    for path in ["/v1/audit/events", "/v1/events?topic=t"] {
        let (status, minted) = hub.post("/v1/tokens", Some(&root), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{minted}");
        let token = minted["token"].as_str().expect("token").to_string();
        let first = hub.stream_with(path, Some(&token), None).await;
        assert!(first.is_ok(), "{path}: the token opens one stream");
        let again = hub.stream_with(path, Some(&token), None).await;
        let Err(r) = again else {
            panic!("{path}: a spent single-use token opened a second stream")
        };
        assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "token_used", "{path}");
    }
}

/// A page on another site opens Mercure streams with the user's
/// `mercureAuthorization` cookie to take the account's slots.
#[tokio::test]
async fn mercure_cookie_streams_from_foreign_sites_are_refused() {
    let hub = mercure_hub("cors_origins = [\"https://app.example\"]\n");
    let token = mercure_jwt(json!({"sub": "alice", "mercure": {"subscribe": ["*"]}}));
    let open = |origin: &'static str| {
        client()
            .get(format!("{}/.well-known/mercure?topic=https://example.com/t", hub.base))
            .header("cookie", format!("mercureAuthorization={token}"))
            .header("origin", origin)
            .send()
    };
    let r = open("https://evil.example").await.expect("get");
    assert_eq!(error_code(r, StatusCode::FORBIDDEN).await, "origin_forbidden");
    let r = open("https://app.example").await.expect("get");
    assert_eq!(r.status(), 200, "the listed origin opens a stream with the cookie");
}

/// A Mercure publisher reuses the id of a hub-wide native event to push
/// every native subscriber's resume point past events it never received.
#[tokio::test]
async fn reusing_an_id_never_moves_a_resume_point_forward() {
    let hub = mercure_hub("");
    let (status, v) = hub
        .publish(
            &hub.admin_key,
            json!({"topics": ["t"], "id": "ord-7", "data": "first", "audience": "public"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    fence(&hub, "t", "after-1").await;
    fence(&hub, "t", "after-2").await;
    let r = mercure_publish(
        &hub,
        Some(&mercure_publisher()),
        &[("topic", "t"), ("id", "ord-7"), ("data", "reused")],
    )
    .await;
    assert_eq!(r.status(), 200);
    fence(&hub, "t", "end").await;
    let reader = jwt(json!({"sub": "bob", "herald": {"subscribe": ["t"]}}));
    let mut s = hub
        .stream_with("/v1/events?topic=t", Some(&reader), Some("ord-7"))
        .await
        .expect("resume opens");
    let got = before_fence(&mut s, "end").await;
    assert_eq!(
        datas(&got),
        vec!["after-1", "after-2", "reused"],
        "the resume starts after the id's first use"
    );
}
