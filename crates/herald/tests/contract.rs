//! The contract's error surface and SSE tokens, over real HTTP: every
//! status of docs/api.md from a real request, with the JSON shape checked.
mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

async fn publish_code(hub: &Server, cred: &str, body: Value, status: StatusCode) -> String {
    let r = client()
        .post(format!("{}/v1/publish", hub.base))
        .bearer_auth(cred)
        .json(&body)
        .send()
        .await
        .expect("post");
    error_code(r, status).await
}

#[tokio::test]
async fn every_error_status_with_the_json_shape() {
    let hub = start_with("[limits]\nper_session = 1\nsession_policy = \"reject\"");
    let u = user("u", json!({"sid": "s"}));
    let k = hub.admin_key.clone();
    let ev = |extra: Value| {
        let mut e = json!({"topics": ["t"], "data": "x", "audience": "public"});
        if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
            for (a, b) in x {
                if b.is_null() {
                    o.remove(a);
                } else {
                    o.insert(a.clone(), b.clone());
                }
            }
        }
        e
    };
    let bad = StatusCode::BAD_REQUEST;
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"audience": null})), bad).await,
        "audience_required"
    );
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"audience": {}})), bad).await,
        "audience_required"
    );
    let many: Vec<String> = (0..65).map(|i| format!("u{i}")).collect();
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"audience": {"users": many}})), bad).await,
        "audience_too_many_labels"
    );
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"audience": {"roles": ["r".repeat(257)]}})), bad).await,
        "audience_label_too_long"
    );
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"id": "a\nb"})), bad).await,
        "invalid_field"
    );
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"type": "a\r\nevent: x"})), bad).await,
        "invalid_field"
    );
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"topics": ["orders.*"]})), bad).await,
        "invalid_topic"
    );
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"retry": "soon"})), bad).await,
        "invalid_field"
    );
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"topics": []})), bad).await,
        "topics_required"
    );
    let r = client()
        .post(format!("{}/v1/publish", hub.base))
        .bearer_auth(&k)
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(error_code(r, bad).await, "invalid_json");
    assert_eq!(
        error_code(hub.get("/v1/events?topic=a.>.b", Some(&u)).await, bad).await,
        "invalid_selector"
    );
    assert_eq!(
        error_code(hub.get("/v1/events", Some(&u)).await, bad).await,
        "topics_required"
    );
    let r = hub
        .stream_with("/v1/events?topic=t", Some(&u), Some("999999"))
        .await
        .err()
        .expect("refused");
    assert_eq!(error_code(r, bad).await, "invalid_last_event_id");

    // 401, each with WWW-Authenticate.
    let r = hub.get("/v1/events?topic=t", None).await;
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "missing_credential");
    let expired = user("u", json!({"exp": now() - 100, "iat": now() - 200}));
    let r = hub.get("/v1/events?topic=t", Some(&expired)).await;
    let www = r.headers()["www-authenticate"].to_str().expect("ascii").to_string();
    assert!(
        www.contains("error=\"invalid_token\"") && www.contains("expired"),
        "{www}"
    );
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "token_expired");
    let forged = {
        let mut parts: Vec<String> = u.split('.').map(String::from).collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    assert_eq!(
        error_code(
            hub.get("/v1/events?topic=t", Some(&forged)).await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "invalid_token"
    );
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "u", "exp": now() + 60, "herald": {"subscribe": ["*"]}}))
    );
    assert_eq!(
        error_code(
            hub.get("/v1/events?topic=t", Some(&none)).await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "invalid_token"
    );
    let r = client()
        .get(format!("{}/v1/events?topic=t&token={u}", hub.base))
        .send()
        .await
        .expect("get");
    assert_eq!(
        error_code(r, StatusCode::UNAUTHORIZED).await,
        "invalid_token",
        "a JWT in the URL is refused"
    );
    let r = client()
        .get(format!("{}/v1/events?topic=t&token={k}", hub.base))
        .send()
        .await
        .expect("get");
    assert_eq!(
        error_code(r, StatusCode::UNAUTHORIZED).await,
        "invalid_token",
        "an API key in the URL is refused"
    );

    // 403, 404, 405, 409, 413, 429.
    let reader = jwt(json!({"sub": "reader", "herald": {"subscribe": ["t"]}}));
    assert_eq!(
        publish_code(&hub, &reader, ev(json!({})), StatusCode::FORBIDDEN).await,
        "publish_forbidden"
    );
    assert_eq!(
        error_code(
            hub.get("/v1/events?topic=other", Some(&reader)).await,
            StatusCode::FORBIDDEN
        )
        .await,
        "topic_forbidden"
    );
    assert_eq!(
        error_code(hub.get("/v1/nope", None).await, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let r = client()
        .delete(format!("{}/v1/publish", hub.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(
        error_code(r, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    let (s, _) = hub.publish(&k, ev(json!({"id": "dup"}))).await;
    assert_eq!(s, 200);
    assert_eq!(
        publish_code(&hub, &k, ev(json!({"id": "dup"})), StatusCode::CONFLICT).await,
        "duplicate_id"
    );
    assert_eq!(
        publish_code(
            &hub,
            &k,
            ev(json!({"data": "x".repeat(1024 * 1024 + 1)})),
            StatusCode::PAYLOAD_TOO_LARGE
        )
        .await,
        "event_too_large"
    );
    let _open = hub.stream("/v1/events?topic=t", &u).await;
    let r = hub.get("/v1/events?topic=t", Some(&u)).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r, StatusCode::TOO_MANY_REQUESTS).await, "session_stream_cap");
}

#[tokio::test]
async fn failed_authentications_are_rate_limited_per_address() {
    let hub = start_with("[limits]\nauth_failures_per_minute = 3");
    for _ in 0..3 {
        assert_eq!(
            hub.get("/v1/events?topic=t", Some("garbage.token.here")).await.status(),
            401
        );
    }
    let r = hub.get("/v1/events?topic=t", Some(&user("ok", json!({})))).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r, StatusCode::TOO_MANY_REQUESTS).await, "auth_rate_limited");
}

async fn mint(hub: &Server, cred: &str, body: Value) -> (StatusCode, Value) {
    hub.post("/v1/tokens", Some(cred), body).await
}

#[tokio::test]
async fn sse_tokens_are_short_lived_single_use_capped_and_narrow() {
    let hub = start();
    let (s, v) = mint(&hub, &hub.admin_key, json!({"sub": "bob", "subscribe": ["news"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 300);
    let exp = v["expires_at"].as_u64().expect("expires_at");
    assert!(exp >= now() + 295 && exp <= now() + 305);
    let tok = v["token"].as_str().expect("token").to_string();
    let path = format!("/v1/events?topic=news&token={tok}");
    let mut s1 = hub.stream_with(&path, None, None).await.expect("first use works");
    let r = hub
        .stream_with(&path, None, None)
        .await
        .err()
        .expect("second use refused");
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "token_used");
    // The stream is scoped like bob: it sees bob's events only.
    hub.publish(
        &hub.admin_key,
        json!({"topics": ["news"], "data": "for carol", "audience": {"users": ["carol"]}}),
    )
    .await;
    hub.publish(
        &hub.admin_key,
        json!({"topics": ["news"], "data": "for bob", "audience": {"users": ["bob"]}}),
    )
    .await;
    assert_eq!(
        s1.next_event(Duration::from_secs(5)).await.expect("event").data,
        "for bob"
    );
    // SSE tokens only open streams: anywhere else they are refused.
    let (_, v) = mint(
        &hub,
        &hub.admin_key,
        json!({"sub": "bob", "subscribe": ["news"], "admin": true}),
    )
    .await;
    let st = v["token"].as_str().expect("token").to_string();
    let r = client()
        .post(format!("{}/v1/publish", hub.base))
        .bearer_auth(&st)
        .json(&json!({"topics": ["news"], "data": "x", "audience": "public"}))
        .send()
        .await
        .expect("post");
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "invalid_token");
    let (s, _) = hub
        .post("/v1/revocations", Some(&st), json!({"type": "logout", "account": "x"}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(hub.get("/v1/connections", Some(&st)).await.status(), 401);
    // Selector outside the token's subscribe list.
    let (_, v) = mint(&hub, &hub.admin_key, json!({"sub": "bob", "subscribe": ["news"]})).await;
    let r = hub
        .stream_with(
            &format!("/v1/events?topic=sports&token={}", v["token"].as_str().expect("t")),
            None,
            None,
        )
        .await;
    assert_eq!(
        error_code(r.err().expect("refused"), StatusCode::FORBIDDEN).await,
        "topic_forbidden"
    );
    // At most 10 outstanding per minter and subject (two are outstanding now).
    for _ in 0..8 {
        assert_eq!(
            mint(&hub, &hub.admin_key, json!({"sub": "bob", "subscribe": ["news"]}))
                .await
                .0,
            200
        );
    }
    let r = client()
        .post(format!("{}/v1/tokens", hub.base))
        .bearer_auth(&hub.admin_key)
        .json(&json!({"sub": "bob", "subscribe": ["news"]}))
        .send()
        .await
        .expect("mint");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r, StatusCode::TOO_MANY_REQUESTS).await, "too_many_tokens");
    assert_eq!(
        mint(&hub, &hub.admin_key, json!({"sub": "other", "subscribe": ["news"]}))
            .await
            .0,
        200
    );
    // A user JWT can only narrow itself.
    let me = jwt(json!({"sub": "dora", "roles": ["a"], "herald": {"subscribe": ["orders.>"]}}));
    assert_eq!(mint(&hub, &me, json!({"subscribe": ["orders.*"]})).await.0, 200);
    let (s, v) = mint(&hub, &me, json!({"subscribe": ["*"]})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("token_widening_forbidden"))
    );
    let (s, _) = mint(&hub, &me, json!({"sub": "someone-else"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = mint(&hub, &me, json!({"roles": ["a", "b"]})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A tenant-bound key mints only inside its tenant.
    let (s, v) = mint(
        &hub,
        &hub.acme_key,
        json!({"sub": "x", "tenant": "globex", "subscribe": ["*"]}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("tenant_forbidden"))
    );
    // Expiry: used after its TTL, refused; a stream opened with it ends.
    let (_, v) = mint(
        &hub,
        &hub.admin_key,
        json!({"sub": "eve", "subscribe": ["*"], "ttl": 1}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = hub
        .stream_with(
            &format!("/v1/events?topic=a&token={}", v["token"].as_str().expect("t")),
            None,
            None,
        )
        .await;
    assert_eq!(
        error_code(r.err().expect("expired"), StatusCode::UNAUTHORIZED).await,
        "token_expired"
    );
    let (_, v) = mint(
        &hub,
        &hub.admin_key,
        json!({"sub": "eve", "subscribe": ["*"], "ttl": 2}),
    )
    .await;
    let mut s = hub
        .stream_with(
            &format!("/v1/events?topic=a&token={}", v["token"].as_str().expect("t")),
            None,
            None,
        )
        .await
        .expect("open");
    let (ended, seen) = s.ended_within(Duration::from_secs(10)).await;
    assert!(ended);
    assert_eq!(seen.last().map(|e| e.event.as_str()), Some("expired"));
}
