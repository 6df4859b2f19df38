//! The edges of the HTTP surface, over real HTTP against a real hub: where a
//! cookie write may come from, what is checked before any work, one
//! `Last-Event-ID` rule, reserved event types on Mercure, bodies that
//! trickle, `HEAD` on streams, over-large request heads, and `topic=*`.
mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);
const MERCURE_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
const APP: &str = "https://app.example";

fn mercure_jwt(mut claims: Value) -> String {
    claims["exp"] = json!(now() + 600);
    claims["iat"] = json!(now());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(MERCURE_KEY.as_bytes()),
    )
    .expect("sign")
}

async fn connect(hub: &Server) -> TcpStream {
    TcpStream::connect(hub.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the peer closes (or fails after `within`).
async fn read_to_close(tcp: &mut TcpStream, within: Duration) -> String {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(within, tcp.read_to_end(&mut seen))
        .await
        .expect("the connection closes");
    String::from_utf8_lossy(&seen).into_owned()
}

/// The JSON body of a raw HTTP/1.1 answer with a `content-length`.
fn json_of(raw: &str) -> Value {
    let (_, body) = raw.split_once("\r\n\r\n").expect("a head");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {raw}"))
}

/// Records of `kind` in the audit log.
async fn audit_of(hub: &Server, kind: &str) -> Vec<Value> {
    let r = hub.get("/v1/audit?limit=1000", Some(&hub.admin_key)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["kind"] == kind)
        .cloned()
        .collect()
}

/// An admin user JWT that may publish, subscribe, revoke and mint.
fn root() -> String {
    user(
        "root",
        json!({"sid": "s-root", "herald": {"subscribe": ["*"], "publish": ["*"], "admin": true}}),
    )
}

/// Sends a write the way a cross-site form would: the cookie, `text/plain`,
/// and the given extra headers.
async fn cookie_write(
    hub: &Server,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut req = client()
        .request(method, format!("{}{path}", hub.base))
        .header("cookie", cookie)
        .header("content-type", "text/plain")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("send")
}

#[tokio::test]
async fn cookie_writes_from_another_origin_are_refused_on_every_native_write() {
    let hub = start_with(&format!("cors_origins = [\"{APP}\"]\n"));
    let cookie = format!("herald_token={}", root());
    let post = reqwest::Method::POST;
    let event = json!({"topics": ["t"], "data": "x", "audience": "public"});
    let evil = [("origin", "https://evil.example")];
    for (method, path, body) in [
        (post.clone(), "/v1/publish", event.clone()),
        (
            post.clone(),
            "/v1/revocations",
            json!({"type": "logout", "account": "bob"}),
        ),
        (post.clone(), "/v1/invalidate", json!({"tags": ["a"]})),
        (post.clone(), "/v1/invalidation/pause", json!({})),
        (post.clone(), "/v1/invalidation/tags/disable", json!({"tags": ["a"]})),
        (post.clone(), "/v1/tokens", json!({"subscribe": ["t"]})),
        (reqwest::Method::DELETE, "/v1/connections/1", json!({})),
    ] {
        let r = cookie_write(&hub, method, path, &cookie, &evil, body).await;
        assert_eq!(error_code(r, StatusCode::FORBIDDEN).await, "origin_forbidden", "{path}");
    }

    let publish = |headers: &'static [(&'static str, &'static str)]| {
        let (hub, cookie, event) = (&hub, &cookie, &event);
        async move {
            cookie_write(
                hub,
                reqwest::Method::POST,
                "/v1/publish",
                cookie,
                headers,
                event.clone(),
            )
            .await
        }
    };
    // Whole origins only: a prefix, another port or scheme is another site.
    for origin in [
        "https://app.example.evil.net",
        "https://app.example:8443",
        "http://app.example",
        "null",
    ] {
        let r = cookie_write(
            &hub,
            post.clone(),
            "/v1/publish",
            &cookie,
            &[("origin", origin)],
            event.clone(),
        )
        .await;
        assert_eq!(
            error_code(r, StatusCode::FORBIDDEN).await,
            "origin_forbidden",
            "{origin}"
        );
    }
    // Without an Origin, Sec-Fetch-Site decides.
    for site in ["cross-site", "same-site"] {
        let r = cookie_write(
            &hub,
            post.clone(),
            "/v1/publish",
            &cookie,
            &[("sec-fetch-site", site)],
            event.clone(),
        )
        .await;
        assert_eq!(error_code(r, StatusCode::FORBIDDEN).await, "origin_forbidden", "{site}");
    }
    // A listed origin (any case), the hub's own origin, and requests no
    // browser would send cross-site all pass.
    assert_eq!(publish(&[("origin", "https://APP.example")]).await.status(), 200);
    let own = hub.base.clone();
    let r = cookie_write(
        &hub,
        post.clone(),
        "/v1/publish",
        &cookie,
        &[("origin", &own)],
        event.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(publish(&[("sec-fetch-site", "same-origin")]).await.status(), 200);
    assert_eq!(publish(&[]).await.status(), 200);

    // A header credential is never sent by a browser on its own: the origin
    // does not matter.
    let r = client()
        .post(format!("{}/v1/publish", hub.base))
        .bearer_auth(root())
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(event.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);

    // Every refusal is in the audit log, with where it came from.
    let refused = audit_of(&hub, "origin_forbidden").await;
    assert!(refused.len() >= 13, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|r| r["detail"]["from"] == "https://evil.example" && r["detail"]["path"] == "/v1/publish"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn mercure_cookie_publishes_compare_whole_origins() {
    let hub = start_with(&format!(
        "[mercure]\njwt_key = \"{MERCURE_KEY}\"\npublish_origins = [\"{APP}\"]\n"
    ));
    let cookie = format!(
        "mercureAuthorization={}",
        mercure_jwt(json!({"mercure": {"publish": ["*"]}}))
    );
    let publish = |headers: Vec<(&'static str, &'static str)>| {
        let (hub, cookie) = (&hub, &cookie);
        async move {
            let mut req = client()
                .post(format!("{}/.well-known/mercure", hub.base))
                .header("cookie", cookie.as_str())
                .form(&[("topic", "https://example.com/a"), ("data", "x")]);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().await.expect("publish")
        }
    };
    for headers in [
        vec![("origin", "https://app.example.evil.net")],
        vec![("origin", "https://evil.example")],
        vec![("referer", "https://app.example.evil.net/page")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site"), ("referer", "https://app.example/page")],
    ] {
        let r = publish(headers.clone()).await;
        assert_eq!(
            error_code(r, StatusCode::FORBIDDEN).await,
            "origin_forbidden",
            "{headers:?}"
        );
    }
    assert_eq!(publish(vec![("origin", APP)]).await.status(), 200);
    assert_eq!(
        publish(vec![("referer", "https://app.example/page?x=1")])
            .await
            .status(),
        200
    );
    assert_eq!(publish(vec![("sec-fetch-site", "same-origin")]).await.status(), 200);
    let refused = audit_of(&hub, "origin_forbidden").await;
    assert!(
        refused
            .iter()
            .any(|r| r["detail"]["from"] == "https://app.example.evil.net"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_credential_is_checked_before_selectors_and_topics_are_counted() {
    let hub = start_with(&format!("[mercure]\njwt_key = \"{MERCURE_KEY}\"\n"));
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("topic=https://example.com/%7Bid%7D/{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    // Unauthenticated: 401, however many selectors it sent.
    let r = hub.get(&format!("/v1/events?{}", many(150)), None).await;
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "missing_credential");
    let r = hub.get(&format!("/v1/events?{}", many(150)), Some("not.a.jwt")).await;
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "invalid_token");
    let r = hub.get(&format!("/.well-known/mercure?{}", many(1001)), None).await;
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "missing_credential");
    let r = hub.get("/v1/audit/events?last_event_id=nope", None).await;
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "missing_credential");
    // Authenticated, the selectors are then checked.
    let r = hub.get(&format!("/v1/events?{}", many(150)), Some(&root())).await;
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "too_many_selectors");

    // Mercure publish holds to the same topic count as native publishes.
    let publisher = mercure_jwt(json!({"mercure": {"publish": ["*"]}}));
    let form = |n: usize| {
        let mut f: Vec<(String, String)> = (0..n)
            .map(|i| ("topic".into(), format!("https://example.com/t/{i}")))
            .collect();
        f.push(("data".into(), "x".into()));
        f
    };
    let send = |n: usize| {
        let (hub, publisher, form) = (&hub, &publisher, form(n));
        async move {
            client()
                .post(format!("{}/.well-known/mercure", hub.base))
                .bearer_auth(publisher)
                .form(&form)
                .send()
                .await
                .expect("publish")
        }
    };
    assert_eq!(
        error_code(send(101).await, StatusCode::BAD_REQUEST).await,
        "too_many_topics"
    );
    assert_eq!(send(100).await.status(), 200);
}

#[tokio::test]
async fn last_event_id_means_the_same_on_every_stream() {
    let hub = start_with(&format!("[mercure]\nanonymous = true\njwt_key = \"{MERCURE_KEY}\"\n"));
    let alice = user("alice", json!({}));
    let (status, _) = hub
        .publish(
            &alice,
            json!({"topics": ["demo"], "data": "kept", "audience": "public", "retain": true}),
        )
        .await;
    assert_eq!(status, 200);

    // An empty Last-Event-ID is no id (as EventSource sends before its
    // first event): the retained snapshot, no `reset`.
    let mut s = hub
        .stream_with("/v1/events?topic=demo", Some(&alice), Some(""))
        .await
        .map_err(|r| r.status())
        .expect("opens");
    let e = s.next_event(T).await.expect("an event");
    assert_eq!((e.event.as_str(), e.data.as_str()), ("message", "kept"));

    // The audit stream: empty is "from now", a number must be a record id.
    let admin = root();
    assert!(hub
        .stream_with("/v1/audit/events", Some(&admin), Some(""))
        .await
        .is_ok());
    for bad in ["nope", "99999999999999999999999"] {
        let r = hub
            .stream_with("/v1/audit/events", Some(&admin), Some(bad))
            .await
            .err()
            .expect("refused");
        assert_eq!(
            error_code(r, StatusCode::BAD_REQUEST).await,
            "invalid_last_event_id",
            "{bad}"
        );
    }

    // A number beyond any sequence number is malformed everywhere,
    // Mercure included (where an unknown id starts with `reset`).
    let huge = "99999999999999999999999";
    let r = hub
        .stream_with("/v1/events?topic=demo", Some(&alice), Some(huge))
        .await
        .err()
        .expect("refused");
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "invalid_last_event_id");
    let r = hub
        .stream_with("/.well-known/mercure?topic=demo", None, Some(huge))
        .await
        .err()
        .expect("refused");
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "invalid_last_event_id");
    let r = hub
        .get(
            &format!("/.well-known/mercure?topic=demo&lastEventID={}", "x".repeat(1025)),
            None,
        )
        .await;
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "invalid_last_event_id");

    // Mercure's `earliest` still replays everything history holds.
    let mut s = hub
        .stream_with("/.well-known/mercure?topic=demo", None, Some("earliest"))
        .await
        .map_err(|r| r.status())
        .expect("opens");
    let e = s.next_event(T).await.expect("an event");
    assert_eq!((e.id.as_deref(), e.data.as_str()), (Some("1"), "kept"));
}

#[tokio::test]
async fn mercure_refuses_the_hubs_own_event_types() {
    let hub = start_with(&format!("[mercure]\njwt_key = \"{MERCURE_KEY}\"\n"));
    let publisher = mercure_jwt(json!({"mercure": {"publish": ["*"]}}));
    let send = |t: &'static str| {
        let (hub, publisher) = (&hub, &publisher);
        async move {
            client()
                .post(format!("{}/.well-known/mercure", hub.base))
                .bearer_auth(publisher)
                .form(&[("topic", "https://example.com/a"), ("data", "x"), ("type", t)])
                .send()
                .await
                .expect("publish")
        }
    };
    for t in [
        "revoked",
        "reset",
        "expired",
        "evicted",
        "kicked",
        "overflow",
        "shutdown",
        "invalidate",
        "audit",
        "connected",
    ] {
        assert_eq!(
            error_code(send(t).await, StatusCode::BAD_REQUEST).await,
            "reserved_type",
            "{t}"
        );
    }
    assert_eq!(send("Revoked").await.status(), 200);
    assert_eq!(send("book.updated").await.status(), 200);
}

/// Sends a request head announcing a 100-byte body, then one byte of it
/// every 300 ms; returns everything the hub sent until it closed.
async fn drip(hub: &Server, head: String) -> String {
    let mut tcp = connect(hub).await;
    tcp.write_all(head.as_bytes()).await.expect("head");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open after 10 s; got {:?}",
            String::from_utf8_lossy(&seen)
        );
        // Once the hub has answered, writing more would only make it reset
        // the connection.
        if seen.is_empty() {
            tcp.write_all(b"x").await.expect("drip");
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_body_that_drips_is_cut_at_the_deadline() {
    let hub = start_with(&format!(
        "body_timeout_secs = 2\n[mercure]\njwt_key = \"{MERCURE_KEY}\"\n"
    ));
    let started = std::time::Instant::now();
    let text = drip(
        &hub,
        format!(
            "POST /v1/publish HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
            hub.admin_key
        ),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
        "{text}"
    );
    assert_eq!(check_error_shape(&json_of(&text)), "body_timeout");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());

    let publisher = mercure_jwt(json!({"mercure": {"publish": ["*"]}}));
    let text = drip(
        &hub,
        format!(
            "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {publisher}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        ),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert_eq!(check_error_shape(&json_of(&text)), "body_timeout");
}

#[tokio::test]
async fn head_on_a_stream_endpoint_opens_nothing_and_spends_no_token() {
    let hub = start_with(&format!("[mercure]\nanonymous = true\njwt_key = \"{MERCURE_KEY}\"\n"));
    let (status, v) = hub
        .post(
            "/v1/tokens",
            Some(&hub.admin_key),
            json!({"sub": "alice", "subscribe": ["demo"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().expect("token").to_string();
    let path = format!("/v1/events?topic=demo&token={token}");

    let r = client().head(format!("{}{path}", hub.base)).send().await.expect("head");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET");
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("application/json"));
    for (p, allow) in [
        ("/v1/audit/events", "GET"),
        ("/.well-known/mercure?topic=demo", "GET, POST"),
    ] {
        let r = client()
            .head(format!("{}{p}", hub.base))
            .bearer_auth(root())
            .send()
            .await
            .expect("head");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{p}");
        assert_eq!(r.headers()["allow"], allow, "{p}");
    }
    // Over a raw connection too (Herald's own HTTP/1 front is in the way).
    let mut tcp = connect(&hub).await;
    tcp.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let text = read_to_close(&mut tcp, T).await;
    assert!(text.starts_with("HTTP/1.1 405 "), "{text}");

    // The single-use token is still unspent, and no stream was opened.
    let r = hub.get("/v1/connections", Some(&hub.admin_key)).await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["connections"].as_array().map(Vec::len), Some(0), "{v}");
    hub.stream_with(&path, None, None)
        .await
        .map_err(|r| r.status())
        .expect("the token still opens its stream");
}

/// One answer for a head too large, whichever part of it is too large and
/// whichever of Herald's front or hyper read it: `431` with the JSON error.
#[tokio::test]
async fn an_over_large_request_head_gets_the_json_error() {
    let hub = start();
    // Each as a connection's first request (read by Herald's own front), and
    // the URL and the header count also as a later one (read by hyper, whose
    // byte limit depends on how the head arrives, so one long header may
    // pass there).
    let url = format!(
        "GET /v1/events?topic={} HTTP/1.1\r\nHost: hub\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let header = format!(
        "GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let count = format!(
        "GET /healthz HTTP/1.1\r\nHost: hub\r\n{}\r\n",
        (0..120).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    for (head, later) in [
        (&url, false),
        (&url, true),
        (&header, false),
        (&count, false),
        (&count, true),
    ] {
        let mut tcp = connect(&hub).await;
        if later {
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
                .await
                .expect("write");
        }
        let _ = tcp.write_all(head.as_bytes()).await;
        let text = read_to_close(&mut tcp, T).await;
        let text = match text.find("HTTP/1.1 431 ") {
            Some(at) if later => {
                assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
                text[at..].to_string()
            }
            _ => text,
        };
        assert!(
            text.starts_with("HTTP/1.1 431 "),
            "{later}: {}",
            &text[..text.len().min(300)]
        );
        let lower = text.to_ascii_lowercase();
        assert!(lower.contains("\r\ncontent-type: application/json"), "{text}");
        assert_eq!(check_error_shape(&json_of(&text)), "request_header_too_large");
    }
}

#[tokio::test]
async fn topic_star_means_everything_the_credential_allows() {
    let hub = start();
    let narrow = user("ann", json!({"herald": {"subscribe": ["orders.>"], "publish": []}}));
    let mut s = hub
        .stream_with("/v1/events?topic=*", Some(&narrow), None)
        .await
        .map_err(|r| r.status())
        .expect("`*` is allowed for a credential that may subscribe to something");
    let k = hub.admin_key.clone();
    for topic in ["billing.1", "orders.1"] {
        let (status, v) = hub
            .publish(&k, json!({"topics": [topic], "data": topic, "audience": "public"}))
            .await;
        assert_eq!(status, 200, "{v}");
    }
    // Only what the credential's own selectors match arrives.
    let got = s.take(1, T).await;
    assert_eq!(got.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["orders.1"]);
    assert!(s.drain_for(Duration::from_millis(300)).await.is_empty());

    let nothing = user("nobody", json!({"herald": {"subscribe": [], "publish": []}}));
    let r = hub
        .stream_with("/v1/events?topic=*", Some(&nothing), None)
        .await
        .err()
        .expect("refused");
    assert_eq!(error_code(r, StatusCode::FORBIDDEN).await, "topic_forbidden");
}
