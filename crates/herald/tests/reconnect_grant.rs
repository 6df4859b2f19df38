//! Reconnect grants (docs/api.md "Reconnect grants"): a stream opened with a
//! single-use SSE token in its URL gets an `HttpOnly`, `SameSite=Strict`
//! cookie bound to that token, so the browser that opened it can reopen it
//! with the same URL after a cut; the URL alone, another token's cookie, a
//! forged cookie, an expired token or a revoked session open nothing.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use support::{error_code, start, Server, SseStream};

const WAIT: Duration = Duration::from_secs(10);

async fn mint(hub: &Server, sub: &str, sid: &str, ttl: u64) -> String {
    let (status, body) = hub
        .post(
            "/v1/tokens",
            Some(&hub.admin_key),
            json!({"sub": sub, "sid": sid, "subscribe": ["demo"], "ttl": ttl}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().expect("token").to_string()
}

/// Opens `/v1/events?topic=demo&token=…` with an optional `Cookie` and
/// `Last-Event-ID`, as a browser's `EventSource` would.
async fn open(hub: &Server, token: &str, cookie: Option<&str>, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = support::client().get(format!("{}/v1/events?topic=demo&token={token}", hub.base));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.send().await.expect("request")
}

/// The grant cookie's `name=value` and its attributes.
fn grant_of(resp: &reqwest::Response) -> (String, String) {
    let set = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("herald_rg_"))
        .expect("a reconnect grant cookie")
        .to_string();
    let (pair, attrs) = set.split_once(';').expect("attributes");
    (pair.to_string(), attrs.to_string())
}

async fn publish(hub: &Server, n: u32) -> String {
    let (status, body) = hub
        .publish(
            &hub.admin_key,
            json!({"topic": "demo", "audience": "public", "data": {"n": n}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn the_browser_that_opened_a_stream_reopens_it_and_a_leaked_url_does_not() {
    let hub = start();
    let token = mint(&hub, "alice", "s1", 60).await;
    let first = open(&hub, &token, None, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (grant, attrs) = grant_of(&first);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/v1/events"] {
        assert!(attrs.contains(attr), "{attr} in {attrs}");
    }
    let max_age: u64 = attrs
        .split(';')
        .find_map(|a| a.trim().strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("number");
    assert!((1..=60).contains(&max_age), "lives as long as the token: {max_age}");
    assert!(!attrs.contains("Secure"), "loopback over plain HTTP: no Secure");
    let mut stream = SseStream::new(first);
    let id1 = publish(&hub, 1).await;
    assert_eq!(
        stream.next_event(WAIT).await.expect("event 1").id.as_deref(),
        Some(id1.as_str())
    );
    drop(stream);

    // The URL alone (say, copied out of a log) is spent.
    let code = error_code(open(&hub, &token, None, None).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "token_used");
    // A forged grant, or one for another token, is no grant.
    let forged = format!("{}=AAAA{}", grant.split('=').next().expect("name"), "A".repeat(39));
    let code = error_code(open(&hub, &token, Some(&forged), None).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "token_used");
    let other = mint(&hub, "alice", "s1", 60).await;
    let resp = open(&hub, &other, None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (other_grant, _) = grant_of(&resp);
    drop(resp);
    assert_ne!(other_grant, grant);
    let code = error_code(open(&hub, &other, Some(&grant), None).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "token_used", "another token's cookie");
    let value = grant.split_once('=').expect("pair").1;
    let renamed = format!("{}={value}", other_grant.split('=').next().expect("name"));
    let code = error_code(open(&hub, &other, Some(&renamed), None).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "token_used", "another token's grant under this token's name");
    // The right pair reopens it, even behind a planted cookie of the same
    // name (cookie tossing from a sibling site).
    assert_eq!(
        open(&hub, &other, Some(&other_grant), None).await.status(),
        StatusCode::OK
    );
    let tossed = format!(
        "{}=planted; {other_grant}",
        other_grant.split('=').next().expect("name")
    );
    assert_eq!(open(&hub, &other, Some(&tossed), None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_grant_resumes_without_gap_or_duplicate_until_revoked() {
    let hub = start();
    let token = mint(&hub, "bob", "s9", 60).await;
    let first = open(&hub, &token, None, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (grant, _) = grant_of(&first);
    let mut stream = SseStream::new(first);
    let id1 = publish(&hub, 1).await;
    assert_eq!(
        stream.next_event(WAIT).await.expect("event 1").id.as_deref(),
        Some(id1.as_str())
    );
    drop(stream);
    // Published while the stream was cut.
    let id2 = publish(&hub, 2).await;
    let id3 = publish(&hub, 3).await;

    let again = open(&hub, &token, Some(&grant), Some(&id1)).await;
    assert_eq!(again.status(), StatusCode::OK, "the grant reopens the stream");
    let (regrant, _) = grant_of(&again);
    assert_eq!(regrant, grant, "the same grant, renewed");
    let mut stream = SseStream::new(again);
    let got = stream.take(2, WAIT).await;
    let ids: Vec<_> = got.iter().filter_map(|e| e.id.clone()).collect();
    assert_eq!(ids, vec![id2, id3], "resumed after event 1: no gap, no duplicate");

    // A revoked session's grant opens nothing, and its live stream ends.
    let (status, body) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "session_revoke", "account": "bob", "session": "s9"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (ended, events) = stream.ended_within(WAIT).await;
    assert!(ended, "the live stream is closed");
    assert!(events.iter().any(|e| e.event == "revoked"), "{events:?}");
    let code = error_code(open(&hub, &token, Some(&grant), None).await, StatusCode::UNAUTHORIZED).await;
    assert!(
        code == "credential_revoked" || code == "invalid_token",
        "refused after revocation: {code}"
    );
}

#[tokio::test]
async fn a_grant_ends_with_its_token_and_header_tokens_get_none() {
    let hub = start();
    let token = mint(&hub, "carol", "s2", 2).await;
    let first = open(&hub, &token, None, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (grant, _) = grant_of(&first);
    drop(first);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let code = error_code(open(&hub, &token, Some(&grant), None).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "token_expired");

    // A token sent in `Authorization` comes from code that can mint a
    // fresh one for each connect: no cookie is set for it.
    let token = mint(&hub, "carol", "s2", 60).await;
    let resp = hub.get("/v1/events?topic=demo", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get_all("set-cookie").iter().next().is_none(),
        "no grant for a header token"
    );
}

#[tokio::test]
async fn a_grant_survives_a_restart_of_the_hub() {
    let mut hub = start();
    let token = mint(&hub, "dave", "s3", 60).await;
    let first = open(&hub, &token, None, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (grant, _) = grant_of(&first);
    let mut stream = SseStream::new(first);
    let id1 = publish(&hub, 1).await;
    assert_eq!(
        stream.next_event(WAIT).await.expect("event 1").id.as_deref(),
        Some(id1.as_str())
    );
    drop(stream);
    hub.sigterm();
    assert!(hub.wait_exit(Duration::from_secs(30)).is_some(), "the hub stops");
    let hub = hub.restart();
    let id2 = publish(&hub, 2).await;
    let again = open(&hub, &token, Some(&grant), Some(&id1)).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the spent token and its grant outlive the restart"
    );
    let mut stream = SseStream::new(again);
    let got = stream.next_event(WAIT).await.expect("event 2");
    assert_eq!(got.id.as_deref(), Some(id2.as_str()));
    // And the URL alone is still spent after the restart.
    let code = error_code(open(&hub, &token, None, None).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "token_used");
}
