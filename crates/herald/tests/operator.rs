//! The operator API over real HTTP: the overview of the last minutes, the
//! connections an operator sees (and may not see), audit filters and
//! paging back, and revocation dry runs that announce exactly what the
//! revocation then closes.
mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(5);

async fn get_json(hub: &Server, path: &str, cred: &str) -> (u16, Value) {
    let r = hub.get(path, Some(cred)).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls the overview until `done` holds (samples close once a second).
async fn overview_until(hub: &Server, cred: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (st, v) = get_json(hub, "/v1/overview", cred).await;
        assert_eq!(st, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "overview never got there: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_overview_counts_streams_events_and_refusals_and_a_tenant_admin_sees_its_tenant_only() {
    let hub = start_with("[limits]\nper_session = 1\nsession_policy = \"reject\"");
    let acme = user("alice", json!({"sid": "s1", "tenant": "acme"}));
    let globex = user("gina", json!({"sid": "g1", "tenant": "globex"}));
    let mut a = hub.stream("/v1/events?topic=t", &acme).await;
    let _g = hub.stream("/v1/events?topic=t", &globex).await;
    // Refusals: a cap in globex, and a bad credential (hub-wide).
    assert_eq!(hub.get("/v1/events?topic=t", Some(&globex)).await.status(), 429);
    assert_eq!(
        hub.get("/v1/events?topic=t", Some("bad.token.value")).await.status(),
        401
    );
    for _ in 0..3 {
        let (st, _) = hub
            .publish(
                &hub.admin_key,
                json!({"topics": ["t"], "data": "x", "audience": {"tenant": "acme"}}),
            )
            .await;
        assert_eq!(st, 200);
    }
    assert_eq!(a.take(3, T).await.len(), 3);

    let v = overview_until(&hub, &hub.admin_key, |v| {
        v["totals"]["delivered"] == 3 && v["totals"]["refused"] == 2
    })
    .await;
    assert_eq!(v["streams"]["total"], 2);
    assert_eq!(v["totals"]["published"], 3);
    assert_eq!(v["totals"]["refused_by"]["cap:session_stream_cap"], 1);
    assert_eq!(v["totals"]["refused_by"]["auth:invalid_token"], 1);
    assert_eq!(v["health"]["ready"], true);
    assert!(v["health"]["store"]["events"].as_u64() >= Some(3));
    let samples = v["samples"].as_array().expect("samples");
    assert!(samples.iter().any(|s| s["publish_ms"]["p99"].as_f64().is_some()));
    assert_eq!(
        samples
            .iter()
            .map(|s| s["published"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        3
    );

    let acme_admin = jwt(json!({"sub": "aa", "tenant": "acme", "herald": {"admin": true}}));
    let v = overview_until(&hub, &acme_admin, |v| v["totals"]["delivered"] == 3).await;
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["streams"]["total"], 1);
    assert_eq!(v["streams"]["by_tenant"], json!([{"tenant": "acme", "streams": 1}]));
    assert_eq!(
        v["totals"]["refused"], 0,
        "globex's cap and the hub's auth failure are not acme's: {v}"
    );
    assert!(v["health"].get("store").is_none() && v["health"].get("deny_rules").is_none());
    let text = v.to_string();
    assert!(!text.contains("globex"), "nothing of another tenant: {text}");
    assert!(v["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .all(|s| s["publish_ms"].is_null()));

    let r = hub.get("/v1/overview", Some(&hub.admin_key)).await;
    assert_eq!(
        r.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let plain = user("bob", json!({}));
    assert_eq!(get_json(&hub, "/v1/overview", &plain).await.0, 403);
}

#[tokio::test]
async fn connections_show_protocol_queue_and_sent_and_filter_by_tenant_and_account() {
    let hub = start_with("[mercure]\nenabled = true\nanonymous = true");
    let alice = user("alice", json!({"sid": "s1", "tenant": "acme", "roles": ["ops"]}));
    let root = user("root", json!({"sid": "r1"}));
    let mut a = hub.stream("/v1/events?topic=t", &alice).await;
    let _r = hub.stream("/v1/events?topic=t", &root).await;
    let _m = hub
        .stream_with("/.well-known/mercure?topic=t", None, None)
        .await
        .expect("an anonymous Mercure subscriber");
    let (st, _) = hub
        .publish(
            &hub.admin_key,
            json!({"topics": ["t"], "data": "x", "audience": {"tenant": "acme"}}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(a.take(1, T).await.len(), 1);

    let (st, v) = get_json(&hub, "/v1/connections", &hub.admin_key).await;
    assert_eq!(st, 200);
    assert_eq!(v["total"], 3);
    let list = v["connections"].as_array().expect("list");
    let protocols: Vec<&str> = list.iter().filter_map(|c| c["protocol"].as_str()).collect();
    assert_eq!(protocols, ["native", "native", "mercure"], "oldest first");
    let mine = &list[0];
    assert_eq!(mine["account"], "alice");
    assert_eq!(mine["roles"], json!(["ops"]));
    assert_eq!(mine["sent"], 1);
    assert_eq!(mine["queue"], 0);
    assert!(mine["expires_at"].as_u64() > mine["opened_at"].as_u64());

    let (_, v) = get_json(&hub, "/v1/connections?tenant=acme", &hub.admin_key).await;
    assert_eq!(v["total"], 1);
    let (_, v) = get_json(&hub, "/v1/connections?tenant=", &hub.admin_key).await;
    assert_eq!(v["total"], 2, "`tenant=` names the hub-wide streams");
    let (_, v) = get_json(&hub, "/v1/connections?tenant=&limit=1", &hub.admin_key).await;
    assert_eq!(
        (v["total"].as_u64(), v["connections"].as_array().map(Vec::len)),
        (Some(2), Some(1))
    );
    let (_, v) = get_json(&hub, "/v1/connections?account=root", &hub.admin_key).await;
    assert_eq!(v["total"], 1);

    let id = mine["id"].as_str().expect("id").to_string();
    let (st, one) = get_json(&hub, &format!("/v1/connections/{id}"), &hub.admin_key).await;
    assert_eq!((st, &one["account"]), (200, &json!("alice")));
    let globex_admin = jwt(json!({"sub": "ga", "tenant": "globex", "herald": {"admin": true}}));
    let (st, e) = get_json(&hub, &format!("/v1/connections/{id}"), &globex_admin).await;
    assert_eq!(
        (st, &e["error"]["code"]),
        (404, &json!("not_found")),
        "another tenant's is not found"
    );
    let (_, v) = get_json(&hub, "/v1/connections", &globex_admin).await;
    assert_eq!(v["total"], 0);
    let (st, e) = get_json(&hub, "/v1/connections?limit=many", &hub.admin_key).await;
    assert_eq!((st, &e["error"]["code"]), (400, &json!("invalid_request")));
}

#[tokio::test]
async fn audit_filters_and_pages_back_from_the_newest_record() {
    let hub = start();
    for i in 0..5 {
        assert_eq!(
            hub.get("/v1/events?topic=t", Some(&format!("bad.{i}.x")))
                .await
                .status(),
            401
        );
    }
    let alice = user("alice", json!({"sid": "s1", "tenant": "acme"}));
    let _a = hub.stream("/v1/events?topic=t", &alice).await;
    let newest = "/v1/audit?before=18446744073709551615&limit=2&kind=auth_failed";
    let (st, page) = get_json(&hub, newest, &hub.admin_key).await;
    assert_eq!(st, 200);
    let ids = |v: &Value| -> Vec<u64> {
        v["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .collect()
    };
    let first = ids(&page);
    assert_eq!(first.len(), 2);
    assert!(first[0] < first[1], "oldest first");
    assert!(page["records"]
        .as_array()
        .expect("records")
        .iter()
        .all(|r| r["kind"] == "auth_failed"));
    let prev = page["prev"].as_u64().expect("prev");
    let (_, older) = get_json(
        &hub,
        &format!("/v1/audit?before={prev}&limit=10&kind=auth_failed"),
        &hub.admin_key,
    )
    .await;
    let rest = ids(&older);
    assert_eq!(rest.len(), 3, "the three older failures");
    assert!(rest.iter().all(|id| *id < first[0]));

    let (_, by_account) = get_json(&hub, "/v1/audit?account=alice&tenant=acme", &hub.admin_key).await;
    let kinds: Vec<&str> = by_account["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["stream_opened"]);
    let (st, e) = get_json(&hub, "/v1/audit?after=1&before=2", &hub.admin_key).await;
    assert_eq!((st, &e["error"]["code"]), (400, &json!("invalid_request")));
}

#[tokio::test]
async fn a_dry_run_announces_exactly_what_the_revocation_closes() {
    let hub = start();
    let s1 = user("alice", json!({"sid": "s1", "tenant": "acme"}));
    let s2 = user("alice", json!({"sid": "s2", "tenant": "acme"}));
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(hub.stream("/v1/events?topic=t", &s1).await);
    }
    let mut other = hub.stream("/v1/events?topic=t", &s2).await;
    let revocation = json!({"type": "session_revoke", "account": "alice", "session": "s1", "tenant": "acme"});
    let (st, v) = hub
        .post("/v1/revocations?dry_run=true", Some(&hub.admin_key), revocation.clone())
        .await;
    assert_eq!(st, 200);
    assert_eq!(v, json!({"would_close": 3, "applied": false}));
    // Nothing changed: the credential still opens a stream.
    let mut still = hub.stream("/v1/events?topic=t", &s1).await;
    assert!(!still.ended_within(Duration::from_millis(300)).await.0);
    drop(still);
    let (st, v) = hub
        .post(
            "/v1/revocations?dry_run=maybe",
            Some(&hub.admin_key),
            revocation.clone(),
        )
        .await;
    assert_eq!((st.as_u16(), &v["error"]["code"]), (400, &json!("invalid_request")));
    // A preview that would be ignored is refused, never applied.
    let (st, v) = hub
        .post("/v1/revocations?dry-run=true", Some(&hub.admin_key), revocation.clone())
        .await;
    assert_eq!((st.as_u16(), &v["error"]["code"]), (400, &json!("invalid_request")));
    let mut in_body = revocation.clone();
    in_body["dry_run"] = json!(true);
    let (st, v) = hub.post("/v1/revocations", Some(&hub.admin_key), in_body).await;
    assert_eq!((st.as_u16(), &v["error"]["code"]), (400, &json!("invalid_revocation")));
    let (_, records) = get_json(&hub, "/v1/audit?kind=admin_action", &hub.admin_key).await;
    assert!(
        records.to_string().contains("revocation_dry_run"),
        "a dry run is audited: {records}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (st, v) = hub.post("/v1/revocations", Some(&hub.admin_key), revocation).await;
    assert_eq!(st, 200);
    assert_eq!(v["closed"], 3);
    for s in &mut streams {
        let (ended, events) = s.ended_within(T).await;
        assert!(ended && events.iter().any(|e| e.event == "revoked"), "{events:?}");
    }
    assert!(
        !other.ended_within(Duration::from_millis(300)).await.0,
        "the other session stays"
    );
    let (_, e) = hub
        .post(
            "/v1/revocations?dry_run=true",
            Some(&hub.acme_key),
            json!({"type": "logout", "account": "alice"}),
        )
        .await;
    assert_eq!(
        e["error"]["code"], "revoke_forbidden",
        "a dry run needs the same right as the revocation"
    );
}
