//! The Mercure protocol over real HTTP: subscribe, publish, private
//! updates, authorization sources and errors, the subscriptions API,
//! discovery, and Herald's guarantees (revocation, expiry) for Mercure
//! subscribers.
mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
const T: Duration = Duration::from_secs(5);

fn hub() -> Server {
    start_with(&format!(
        "[mercure]\nanonymous = true\njwt_key = \"{KEY}\"\nsubscriptions = true\n"
    ))
}

/// Signs a Mercure token. Herald requires `exp` (or `iat`) on Mercure
/// tokens, so one an hour ahead is added unless the claims set their own.
fn mercure_jwt(mut claims: Value) -> String {
    if claims.get("exp").is_none() && claims.get("iat").is_none() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        claims["exp"] = json!(now + 3600);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .expect("sign")
}

fn publisher() -> String {
    mercure_jwt(json!({"mercure": {"publish": ["*"]}}))
}

async fn publish(hub: &Server, token: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().post(format!("{}/.well-known/mercure", hub.base)).form(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("publish")
}

async fn subscribe(hub: &Server, query: &str, token: Option<&str>) -> SseStream {
    hub.stream_with(&format!("/.well-known/mercure?{query}"), token, None)
        .await
        .expect("subscribe opens")
}

#[tokio::test]
async fn publish_answers_the_id_as_text_and_blank_lines_survive() {
    let hub = hub();
    let mut s = subscribe(&hub, "topic=https://example.com/books/%7Bid%7D", None).await;
    let r = publish(
        &hub,
        Some(&publisher()),
        &[
            ("topic", "https://example.com/books/1"),
            ("data", "a\n\nb"),
            ("id", "book-1"),
            ("type", "update"),
            ("retry", "1500"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    assert_eq!(r.headers()["link"], "</.well-known/mercure>; rel=\"mercure\"");
    assert_eq!(r.text().await.expect("body"), "book-1");
    let e = s.next_event(T).await.expect("update");
    assert_eq!(
        (e.id.as_deref(), e.event.as_str(), e.data.as_str()),
        (Some("book-1"), "update", "a\n\nb")
    );
    assert!(s.raw.contains("retry: 1500\n"));
    // Without an id the hub assigns one and answers it.
    let r = publish(
        &hub,
        Some(&publisher()),
        &[("topic", "https://example.com/books/2"), ("data", "x")],
    )
    .await;
    let id = r.text().await.expect("body");
    assert_eq!(s.next_event(T).await.expect("update").id, Some(id));
}

#[tokio::test]
async fn private_updates_reach_only_matching_claims_on_any_of_their_topics() {
    let hub = hub();
    let mut anon = subscribe(&hub, "topic=*", None).await;
    let matching = mercure_jwt(json!({"mercure": {"subscribe": ["https://example.com/alt/{x}"]}}));
    let mut allowed = subscribe(&hub, "topic=https://example.com/canonical", Some(&matching)).await;
    let other = mercure_jwt(json!({"mercure": {"subscribe": ["https://example.com/elsewhere"]}}));
    let mut denied = subscribe(&hub, "topic=https://example.com/canonical", Some(&other)).await;
    // Canonical topic routes the subscription; the alternate topic matches the claim.
    let r = publish(
        &hub,
        Some(&publisher()),
        &[
            ("topic", "https://example.com/canonical"),
            ("topic", "https://example.com/alt/1"),
            ("data", "secret"),
            ("private", "on"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let fence = [("topic", "https://example.com/canonical"), ("data", "fence")];
    assert_eq!(publish(&hub, Some(&publisher()), &fence).await.status(), 200);
    let got = allowed.take(2, T).await;
    assert_eq!(
        got.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["secret", "fence"]
    );
    for s in [&mut anon, &mut denied] {
        let got = s.take(1, T).await;
        assert_eq!(
            got.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["fence"],
            "private update leaked"
        );
    }
}

#[tokio::test]
async fn token_sources_in_order_and_errors() {
    let hub = hub();
    let sub = mercure_jwt(json!({"mercure": {"subscribe": ["*"]}}));
    // Query parameter.
    let r = client()
        .get(format!("{}/.well-known/mercure?topic=a&authorization={sub}", hub.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    // Cookie.
    let r = client()
        .get(format!("{}/.well-known/mercure?topic=a", hub.base))
        .header("cookie", format!("mercureAuthorization={sub}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    // A bad token is refused even though anonymous access is on.
    let r = client()
        .get(format!("{}/.well-known/mercure?topic=a", hub.base))
        .bearer_auth("not.a.token")
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "invalid_token");
    // No topic, too many topics.
    let r = client()
        .get(format!("{}/.well-known/mercure", hub.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    let many: String = (0..1001).map(|i| format!("topic=t{i}&")).collect();
    let r = client()
        .get(format!("{}/.well-known/mercure?{many}", hub.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    // Publishing: no token 401, topic outside the claim 403, reserved 403,
    // control characters in id/type 400, missing topic 400.
    assert_eq!(
        publish(&hub, None, &[("topic", "a"), ("data", "x")]).await.status(),
        401
    );
    let narrow = mercure_jwt(json!({"mercure": {"publish": ["https://example.com/only"]}}));
    assert_eq!(
        publish(
            &hub,
            Some(&narrow),
            &[("topic", "https://example.com/other"), ("data", "x")]
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        publish(
            &hub,
            Some(&publisher()),
            &[("topic", "/.well-known/mercure/subscriptions/x/y"), ("data", "x")]
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        publish(&hub, Some(&publisher()), &[("topic", "a"), ("id", "a\nb")])
            .await
            .status(),
        400
    );
    assert_eq!(
        publish(&hub, Some(&publisher()), &[("topic", "a"), ("type", "a\rb")])
            .await
            .status(),
        400
    );
    assert_eq!(
        publish(&hub, Some(&publisher()), &[("topic", "a"), ("id", "#x")])
            .await
            .status(),
        400
    );
    assert_eq!(publish(&hub, Some(&publisher()), &[("data", "x")]).await.status(), 400);
    // A token without the mercure claim grants nothing.
    let plain = mercure_jwt(json!({"sub": "x"}));
    assert_eq!(
        publish(&hub, Some(&plain), &[("topic", "a"), ("data", "x")])
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn anonymous_off_requires_a_token() {
    let hub = start_with(&format!("[mercure]\njwt_key = \"{KEY}\"\n"));
    let r = client()
        .get(format!("{}/.well-known/mercure?topic=a", hub.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn last_event_id_header_wins_and_earliest_replays_everything() {
    let hub = hub();
    for i in 0..3 {
        let r = publish(
            &hub,
            Some(&publisher()),
            &[("topic", "h"), ("data", &format!("e{i}")), ("id", &format!("ev-{i}"))],
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let r = client()
        .get(format!("{}/.well-known/mercure?topic=h&lastEventID=earliest", hub.base))
        .header("last-event-id", "ev-1")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["last-event-id"], "3", "the cursor is the head");
    let mut s = hub
        .stream_with("/.well-known/mercure?topic=h&lastEventID=earliest", None, None)
        .await
        .expect("open");
    let all = s.take(3, T).await;
    assert_eq!(
        all.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["e0", "e1", "e2"]
    );
    let mut s = hub
        .stream_with("/.well-known/mercure?topic=h&lastEventID=earliest", None, Some("ev-1"))
        .await
        .expect("open");
    let rest = s.take(1, T).await;
    assert_eq!(rest[0].data, "e2", "header wins over the query parameter");
}

#[tokio::test]
async fn subscriptions_api_and_events() {
    let hub = hub();
    let watcher = mercure_jwt(
        json!({"mercure": {"subscribe": ["/.well-known/mercure/subscriptions{/topic}{/subscriber}"], "payload": {"role": "watcher"}}}),
    );
    let mut events = subscribe(
        &hub,
        "topic=%2F.well-known%2Fmercure%2Fsubscriptions%7B%2Ftopic%7D%7B%2Fsubscriber%7D",
        Some(&watcher),
    )
    .await;
    let subscriber = mercure_jwt(json!({"sub": "bob", "mercure": {"subscribe": ["x"], "payload": {"name": "bob"}}}));
    let s = subscribe(&hub, "topic=https%3A%2F%2Fexample.com%2Fwatched", Some(&subscriber)).await;
    // The watcher also sees its own subscription announced; find bob's.
    let v = loop {
        let e = events.next_event(T).await.expect("subscription event");
        let v: Value = serde_json::from_str(&e.data).expect("JSON-LD");
        if v["topic"] == "https://example.com/watched" {
            break v;
        }
    };
    assert_eq!(v["type"], "Subscription");
    assert_eq!(v["active"], true);
    assert_eq!(v["topic"], "https://example.com/watched");
    assert_eq!(v["payload"], json!({"name": "bob"}));
    assert!(v["subscriber"].as_str().expect("subscriber").starts_with("urn:uuid:"));
    let r = hub.get("/.well-known/mercure/subscriptions", Some(&watcher)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    let list: Value = r.json().await.expect("json");
    assert_eq!(list["type"], "Subscriptions");
    assert!(list["subscriptions"]
        .as_array()
        .expect("array")
        .iter()
        .any(|x| x["topic"] == "https://example.com/watched"));
    let r = client()
        .get(format!("{}/.well-known/mercure/subscriptions", hub.base))
        .bearer_auth(&watcher)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 304);
    // Anonymous: 401; a claim not covering the API: 403.
    assert_eq!(hub.get("/.well-known/mercure/subscriptions", None).await.status(), 401);
    assert_eq!(
        hub.get("/.well-known/mercure/subscriptions", Some(&subscriber))
            .await
            .status(),
        403
    );
    drop(s);
    let e = events.next_event(T).await.expect("inactive event");
    let v: Value = serde_json::from_str(&e.data).expect("JSON-LD");
    assert_eq!(v["active"], false);
}

#[tokio::test]
async fn herald_guarantees_apply_to_mercure_subscribers() {
    let hub = hub();
    let now = now();
    // Revocation by `sub`.
    let tok = mercure_jwt(json!({"sub": "carol", "iat": now - 10, "mercure": {"subscribe": ["*"]}}));
    let mut s = subscribe(&hub, "topic=a", Some(&tok)).await;
    let (status, body) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "logout", "account": "carol"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["closed"], 1);
    let (ended, seen) = s.ended_within(T).await;
    assert!(ended);
    assert_eq!(seen.last().map(|e| e.event.as_str()), Some("revoked"));
    let r = client()
        .get(format!("{}/.well-known/mercure?topic=a", hub.base))
        .bearer_auth(&tok)
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "credential_revoked");
    // Expiry closes the stream.
    let short = mercure_jwt(json!({"sub": "dave", "exp": now + 2, "mercure": {"subscribe": ["*"]}}));
    let mut s = subscribe(&hub, "topic=a", Some(&short)).await;
    let (ended, seen) = s.ended_within(Duration::from_secs(10)).await;
    assert!(ended, "stream ends at exp");
    assert_eq!(seen.last().map(|e| e.event.as_str()), Some("expired"));
}

#[tokio::test]
async fn landing_page_names_the_endpoints() {
    let hub = hub();
    let r = hub.get("/", None).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("html");
    assert!(body.contains("/.well-known/mercure") && body.contains("/v1/events"));
}
