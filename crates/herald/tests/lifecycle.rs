//! Stream lifecycle essentials: each revocation type closes exactly its
//! streams and sticks; caps answer 429 before the first byte; every way a
//! stream ends gives its slot back.
mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(5);

async fn revoke(hub: &Server, body: serde_json::Value) -> serde_json::Value {
    let (status, v) = hub.post("/v1/revocations", Some(&hub.admin_key), body).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn streams(hub: &Server) -> u64 {
    let r = hub.get("/readyz", None).await;
    r.json::<serde_json::Value>().await.expect("json")["streams"]
        .as_u64()
        .expect("count")
}

async fn settle(hub: &Server, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = streams(hub).await;
        if n == want || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn old(sub: &str, extra: serde_json::Value) -> String {
    let mut claims = json!({"iat": now() - 10});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    user(sub, claims)
}

#[tokio::test]
async fn session_revoke_closes_only_that_session_and_sticks() {
    let hub = start();
    let s1 = old("alice", json!({"sid": "s1"}));
    let s2 = old("alice", json!({"sid": "s2"}));
    let mut a1 = hub.stream("/v1/events?topic=t", &s1).await;
    let mut a2 = hub.stream("/v1/events?topic=t", &s2).await;
    let v = revoke(
        &hub,
        json!({"type": "session_revoke", "account": "alice", "session": "s1"}),
    )
    .await;
    assert_eq!(v["closed"], 1);
    let (ended, seen) = a1.ended_within(T).await;
    assert!(ended);
    assert_eq!(
        seen.last().map(|e| (e.event.as_str(), e.data.as_str())),
        Some(("revoked", "{\"reason\":\"session_revoke\"}"))
    );
    hub.publish(
        &hub.admin_key,
        json!({"topics": ["t"], "data": "still here", "audience": "public"}),
    )
    .await;
    assert_eq!(a2.next_event(T).await.expect("other session open").data, "still here");
    let r = hub.get("/v1/events?topic=t", Some(&s1)).await;
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "credential_revoked");
    // Even a token issued later for the revoked session stays out.
    let later = user("alice", json!({"sid": "s1", "iat": now() + 1}));
    assert_eq!(hub.get("/v1/events?topic=t", Some(&later)).await.status(), 401);
    assert_eq!(hub.get("/v1/events?topic=t", Some(&s2)).await.status(), 200);
}

#[tokio::test]
async fn account_role_token_and_tenant_revocations() {
    let hub = start();
    let ops = old("bob", json!({"roles": ["ops"], "jti": "jb"}));
    let plain = old("bob", json!({"sid": "x", "jti": "jb2"}));
    let carol = old("carol", json!({"jti": "jc", "tenant": "acme"}));
    let dan = old("dan", json!({"tenant": "acme"}));
    let erin = old("erin", json!({"tenant": "globex"}));
    let mut s_ops = hub.stream("/v1/events?topic=t", &ops).await;
    let mut s_plain = hub.stream("/v1/events?topic=t", &plain).await;
    let mut s_carol = hub.stream("/v1/events?topic=t", &carol).await;
    let mut s_dan = hub.stream("/v1/events?topic=t", &dan).await;
    let mut s_erin = hub.stream("/v1/events?topic=t", &erin).await;

    assert_eq!(
        revoke(
            &hub,
            json!({"type": "role_grant_revoke", "account": "bob", "role": "ops"})
        )
        .await["closed"],
        1
    );
    assert!(s_ops.ended_within(T).await.0);
    assert_eq!(
        revoke(&hub, json!({"type": "token_revoke", "jti": "jc"})).await["closed"],
        1
    );
    assert!(s_carol.ended_within(T).await.0);
    assert_eq!(
        revoke(&hub, json!({"type": "tenant_revoke", "tenant": "acme"})).await["closed"],
        1
    );
    assert!(s_dan.ended_within(T).await.0);
    // The fuz_app shape: the target account wins; a failure closes nothing.
    let v = revoke(
        &hub,
        json!({"type": "password_change", "outcome": "failure", "account_id": "x", "target_account_id": "bob"}),
    )
    .await;
    assert_eq!(v["closed"], 0);
    let v = revoke(
        &hub,
        json!({"type": "password_change", "outcome": "success", "account_id": "admin", "target_account_id": "bob"}),
    )
    .await;
    assert_eq!(v["closed"], 1);
    assert!(s_plain.ended_within(T).await.0);

    for t in [&ops, &plain, &carol, &dan] {
        assert_eq!(hub.get("/v1/events?topic=t", Some(t)).await.status(), 401);
    }
    // Untouched tenant, and fresh credentials, get in.
    hub.publish(
        &hub.admin_key,
        json!({"topics": ["t"], "data": "fence", "audience": "public"}),
    )
    .await;
    assert_eq!(s_erin.next_event(T).await.expect("erin open").data, "fence");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        hub.get("/v1/events?topic=t", Some(&user("bob", json!({"roles": ["ops"]}))))
            .await
            .status(),
        200
    );
    assert_eq!(
        hub.get("/v1/events?topic=t", Some(&user("dan", json!({"tenant": "acme"}))))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn caps_answer_429_with_retry_after_and_the_session_evicts_its_oldest() {
    let hub = start_with("[limits]\nper_session = 2\nper_account = 3");
    let a = user("u", json!({"sid": "s"}));
    let mut first = hub.stream("/v1/events?topic=t", &a).await;
    let _second = hub.stream("/v1/events?topic=t", &a).await;
    let _third = hub.stream("/v1/events?topic=t", &a).await;
    let (ended, seen) = first.ended_within(T).await;
    assert!(ended);
    assert_eq!(seen.last().map(|e| e.event.as_str()), Some("evicted"));
    let b = user("u", json!({"sid": "other"}));
    let _fourth = hub.stream("/v1/events?topic=t", &b).await;
    let r = hub
        .get("/v1/events?topic=t", Some(&user("u", json!({"sid": "third"}))))
        .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r, StatusCode::TOO_MANY_REQUESTS).await, "account_stream_cap");
}

#[tokio::test]
async fn slots_come_back_however_streams_end() {
    let hub = start_with("[limits]\nper_session = 1");
    let base = streams(&hub).await;
    assert_eq!(base, 0);
    let mut held = Vec::new();
    // Client gone.
    for i in 0..50 {
        held.push(
            hub.stream("/v1/events?topic=t", &user(&format!("gone{i}"), json!({})))
                .await,
        );
    }
    held.clear();
    // Revoked.
    let mut revoked = Vec::new();
    for i in 0..20 {
        revoked.push(
            hub.stream("/v1/events?topic=t", &old(&format!("rev{i}"), json!({})))
                .await,
        );
    }
    for i in 0..20 {
        revoke(&hub, json!({"type": "logout", "account": format!("rev{i}")})).await;
    }
    // Evicted (per_session = 1): each second stream evicts the first.
    let mut evict = Vec::new();
    for i in 0..20 {
        let t = user(&format!("ev{i}"), json!({"sid": "s"}));
        evict.push(hub.stream("/v1/events?topic=t", &t).await);
        evict.push(hub.stream("/v1/events?topic=t", &t).await);
    }
    // Kicked.
    let list: serde_json::Value = hub
        .get("/v1/connections", Some(&hub.admin_key))
        .await
        .json()
        .await
        .expect("json");
    for c in list["connections"].as_array().expect("list").iter().take(5) {
        let id = c["id"].as_str().expect("id");
        let r = client()
            .delete(format!("{}/v1/connections/{id}", hub.base))
            .bearer_auth(&hub.admin_key)
            .send()
            .await
            .expect("kick");
        assert_eq!(r.status(), 200);
    }
    // Expired.
    let mut expired = Vec::new();
    for i in 0..10 {
        let t = user(&format!("exp{i}"), json!({"exp": now() + 2}));
        expired.push(hub.stream("/v1/events?topic=t", &t).await);
    }
    drop(revoked);
    drop(evict);
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(expired);
    assert_eq!(settle(&hub, 0).await, 0, "every slot released");
}
