//! Administration over real HTTP: the audit log (JSON and SSE, resumable,
//! tenant-isolated, never holding a credential), connections, and tag
//! invalidation with its admin controls.
mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(5);

async fn audit(hub: &Server, cred: &str) -> Vec<Value> {
    let r = hub.get("/v1/audit?after=0&limit=1000", Some(cred)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["records"].as_array().expect("records").clone()
}

#[tokio::test]
async fn audit_records_every_security_event_without_credentials() {
    let hub = start_with("[limits]\nper_session = 1\nsession_policy = \"reject\"");
    let alice = user("alice", json!({"sid": "s1", "tenant": "acme", "iat": now() - 10}));
    let mut s = hub.stream("/v1/events?topic=t", &alice).await;
    assert_eq!(hub.get("/v1/events?topic=t", Some(&alice)).await.status(), 429);
    assert_eq!(
        hub.get("/v1/events?topic=t", Some("bad.token.value")).await.status(),
        401
    );
    let (st, _) = hub
        .post(
            "/v1/tokens",
            Some(&hub.admin_key),
            json!({"sub": "bob", "subscribe": ["t"]}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "logout", "account": "alice"}),
        )
        .await;
    assert_eq!(st, 200);
    assert!(s.ended_within(T).await.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = audit(&hub, &hub.admin_key).await;
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    for k in [
        "stream_opened",
        "cap_rejected",
        "auth_failed",
        "token_minted",
        "revocation_applied",
        "stream_closed",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let closed = records.iter().find(|r| r["kind"] == "stream_closed").expect("closed");
    assert_eq!(closed["detail"]["reason"], "revoked");
    assert_eq!(closed["account"], "alice");
    assert_eq!(closed["tenant"], "acme");
    assert_eq!(
        closed["session"].as_str().map(str::len),
        Some(8),
        "a short session hash prefix"
    );
    assert!(closed["ip"].is_string() && closed["stream"].is_number());
    let applied = records
        .iter()
        .find(|r| r["kind"] == "revocation_applied")
        .expect("applied");
    assert_eq!(applied["detail"]["closed"], 1);
    let raw = serde_json::to_string(&records).expect("json");
    assert!(
        !raw.contains(&alice)
            && !raw.contains(&hub.admin_key)
            && !raw.contains("bad.token.value")
            && !raw.contains("\"s1\"")
    );
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids strictly increase");
    // Non-admins are refused.
    let r = hub.get("/v1/audit", Some(&user("nobody", json!({})))).await;
    assert_eq!(error_code(r, StatusCode::FORBIDDEN).await, "admin_required");
}

#[tokio::test]
async fn audit_stream_is_live_resumable_and_closed_by_admin_role_revocation() {
    let hub = start();
    let admin = jwt(json!({"sub": "root", "iat": now() - 10, "herald": {"admin": true}}));
    let mut a = hub.stream("/v1/audit/events", &admin).await;
    let _s = hub.stream("/v1/events?topic=t", &user("u1", json!({}))).await;
    let mut ids = Vec::new();
    loop {
        let e = a.next_event(T).await.expect("audit event");
        assert_eq!(e.event, "audit");
        ids.push(e.id.clone().expect("id"));
        let v: Value = serde_json::from_str(&e.data).expect("json");
        if v["kind"] == "stream_opened" && v["account"] == "u1" {
            break;
        }
    }
    drop(a);
    let _s2 = hub.stream("/v1/events?topic=t", &user("u2", json!({}))).await;
    let last = ids.last().cloned();
    let mut b = hub
        .stream_with("/v1/audit/events", Some(&admin), last.as_deref())
        .await
        .expect("resume");
    let e = b.next_event(T).await.expect("missed record");
    let v: Value = serde_json::from_str(&e.data).expect("json");
    assert!(
        e.id.as_deref().expect("id").parse::<u64>().expect("n")
            > last.as_deref().expect("l").parse::<u64>().expect("n")
    );
    assert!(
        v["kind"] == "stream_closed" || v["account"] == "u2",
        "the records missed while away: {v}"
    );
    // Revoking the admin role closes the audit stream (fuz_app's guarantee).
    let (st, body) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "role_grant_revoke", "account": "root", "role": "admin"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let (ended, seen) = b.ended_within(T).await;
    assert!(ended);
    assert_eq!(seen.last().map(|e| e.event.as_str()), Some("revoked"));
    assert_eq!(hub.get("/v1/audit", Some(&admin)).await.status(), 401);
}

#[tokio::test]
async fn the_connections_listing_pages_on_with_a_cursor() {
    let hub = start();
    let mut streams = Vec::new();
    for i in 0..5 {
        streams.push(
            hub.stream("/v1/events?topic=t", &user(&format!("pager{i}"), json!({})))
                .await,
        );
    }
    let page = |after: String| {
        let hub = &hub;
        async move {
            let v: Value = hub
                .get(&format!("/v1/connections?limit=2&after={after}"), Some(&hub.admin_key))
                .await
                .json()
                .await
                .expect("json");
            v
        }
    };
    let mut after = "0".to_string();
    let mut seen: Vec<String> = Vec::new();
    let mut pages = 0;
    loop {
        let v = page(after.clone()).await;
        assert_eq!(v["total"], 5, "total counts every match on every page: {v}");
        let ids: Vec<String> = v["connections"]
            .as_array()
            .expect("list")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect();
        assert!(ids.len() <= 2, "{v}");
        seen.extend(ids.iter().cloned());
        pages += 1;
        match v["next"].as_str() {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    ids.last().map(String::as_str),
                    "next is the last listed: {v}"
                );
                after = next.to_string();
            }
            None => break,
        }
        assert!(pages < 10, "the cursor moves on");
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort_by_key(|id| id.parse::<u64>().expect("numeric id"));
    sorted.dedup();
    assert_eq!(seen, sorted, "every stream once, oldest first");
    assert_eq!(seen.len(), 5);
    let r = hub.get("/v1/connections?after=x", Some(&hub.admin_key)).await;
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "invalid_request");
}

#[tokio::test]
async fn tenant_admins_see_only_their_tenant() {
    let hub = start();
    let acme_admin = jwt(json!({"sub": "aa", "tenant": "acme", "herald": {"admin": true}}));
    let _a = hub
        .stream("/v1/events?topic=t", &user("in-acme", json!({"tenant": "acme"})))
        .await;
    let _g = hub
        .stream("/v1/events?topic=t", &user("in-globex", json!({"tenant": "globex"})))
        .await;
    let records = audit(&hub, &acme_admin).await;
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["tenant"] == "acme"), "{records:?}");
    let list: Value = hub
        .get("/v1/connections", Some(&acme_admin))
        .await
        .json()
        .await
        .expect("json");
    let conns = list["connections"].as_array().expect("list");
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["account"], "in-acme");
    let all: Value = hub
        .get("/v1/connections", Some(&hub.admin_key))
        .await
        .json()
        .await
        .expect("json");
    let globex_id = all["connections"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["tenant"] == "globex")
        .and_then(|c| c["id"].as_str())
        .expect("globex stream")
        .to_string();
    let r = client()
        .delete(format!("{}/v1/connections/{globex_id}", hub.base))
        .bearer_auth(&acme_admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(
        error_code(r, StatusCode::NOT_FOUND).await,
        "not_found",
        "another tenant's id is 404, never 403"
    );
}

#[tokio::test]
async fn invalidation_is_scoped_and_admin_controlled() {
    let hub = start();
    let alice = user("alice", json!({}));
    let bob = user("bob", json!({}));
    let mut a = hub.stream("/v1/events?topic=%24tags", &alice).await;
    let mut b = hub.stream("/v1/events?topic=%24tags", &bob).await;
    let inv = |tags: Value, aud: Value| json!({"tags": tags, "audience": aud});
    let (st, v) = hub
        .post(
            "/v1/invalidate",
            Some(&hub.admin_key),
            inv(json!([["todos"], ["users", 42]]), json!({"users": ["alice"]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let e = a.next_event(T).await.expect("alice's invalidation");
    assert_eq!(e.event, "invalidate");
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).expect("json"),
        json!({"tags": [["todos"], ["users", 42]]})
    );
    // Disabled prefixes drop matching tags.
    let (st, _) = hub
        .post(
            "/v1/invalidation/tags/disable",
            Some(&hub.admin_key),
            json!({"tags": [["secret"]]}),
        )
        .await;
    assert_eq!(st, 200);
    let (_, v) = hub
        .post(
            "/v1/invalidate",
            Some(&hub.admin_key),
            inv(json!([["secret", 1]]), json!("public")),
        )
        .await;
    assert_eq!(v["dropped"], true);
    // Pause: held and coalesced per audience; resume delivers one event.
    assert_eq!(
        hub.post("/v1/invalidation/pause", Some(&hub.admin_key), json!({}))
            .await
            .0,
        200
    );
    for tags in [json!([["a"]]), json!([["a"], ["b"]]), json!([["secret", 2], ["c"]])] {
        let (st, v) = hub
            .post("/v1/invalidate", Some(&hub.admin_key), inv(tags, json!("public")))
            .await;
        assert_eq!((st, v["held"].as_bool()), (StatusCode::ACCEPTED, Some(true)));
    }
    let state: Value = hub
        .get("/v1/invalidation", Some(&hub.admin_key))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(state["paused"], true);
    let (st, v) = hub
        .post("/v1/invalidation/resume", Some(&hub.admin_key), json!({}))
        .await;
    assert_eq!((st, v["delivered"].as_u64()), (StatusCode::OK, Some(1)));
    let e = b.next_event(T).await.expect("coalesced");
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).expect("json"),
        json!({"tags": [["a"], ["b"], ["c"]]})
    );
    // Bob never saw alice's invalidation.
    let rest = b.drain_for(Duration::from_millis(300)).await;
    assert!(rest.is_empty(), "{rest:?}");
    // Non-admins cannot control it.
    for path in [
        "/v1/invalidation/pause",
        "/v1/invalidation/resume",
        "/v1/invalidation/tags/enable",
    ] {
        let (st, v) = hub.post(path, Some(&alice), json!({"tags": [["x"]]})).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("admin_required")),
            "{path}"
        );
    }
    // Audience is required here too.
    let (st, v) = hub
        .post("/v1/invalidate", Some(&hub.admin_key), json!({"tags": [["x"]]}))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("audience_required"))
    );
}

/// Pages `/v1/audit` forward from the start, `limit` at a time, and returns
/// every record's id and kind.
async fn audit_forward(hub: &Server, limit: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let r = hub
            .get(&format!("/v1/audit?after={after}&limit={limit}"), Some(&hub.admin_key))
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        let records = v["records"].as_array().expect("records");
        if records.is_empty() {
            return out;
        }
        for r in records {
            out.push((
                r["id"].as_u64().expect("id"),
                r["kind"].as_str().expect("kind").to_string(),
            ));
        }
        after = v["next"].as_u64().expect("next");
    }
}

/// Pages `/v1/audit` back from the live end, `limit` at a time.
async fn audit_backward(hub: &Server, limit: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut before = u64::MAX;
    loop {
        let r = hub
            .get(
                &format!("/v1/audit?before={before}&limit={limit}"),
                Some(&hub.admin_key),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        let records = v["records"].as_array().expect("records");
        if records.is_empty() {
            out.reverse();
            return out;
        }
        for r in records.iter().rev() {
            out.push(r["id"].as_u64().expect("id"));
        }
        before = v["prev"].as_u64().expect("prev");
    }
}

#[tokio::test]
async fn the_audit_log_pages_far_past_what_memory_holds_before_and_after_a_restart() {
    // A hub with a store holds only its newest audit records in memory;
    // older pages come from the store. 700 mints make 700 records.
    let hub = start();
    for i in 0..700 {
        let (st, _) = hub
            .post(
                "/v1/tokens",
                Some(&hub.admin_key),
                json!({"sub": format!("u{i}"), "subscribe": ["t"]}),
            )
            .await;
        assert_eq!(st, 200);
    }
    let forward = audit_forward(&hub, 97).await;
    let minted = forward.iter().filter(|(_, k)| k == "token_minted").count();
    assert_eq!(minted, 700, "every record, once");
    let ids: Vec<u64> = forward.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids strictly increase");
    assert_eq!(
        audit_backward(&hub, 89).await,
        ids,
        "paging back finds the same records"
    );
    // The audit stream resumes from an old record through the store.
    let admin = jwt(json!({"sub": "root", "iat": now() - 10, "herald": {"admin": true}}));
    let from = ids[9].to_string();
    let mut s = hub
        .stream_with("/v1/audit/events", Some(&admin), Some(&from))
        .await
        .expect("resume");
    let replay = s.take(ids.len() - 10, T).await;
    let replayed: Vec<u64> = replay
        .iter()
        .map(|e| e.id.as_deref().expect("id").parse().expect("n"))
        .collect();
    assert_eq!(
        replayed,
        ids[10..],
        "the resume sends every later record once, in order"
    );
    drop(s);
    hub.sigterm();
    let mut hub = hub;
    assert!(hub.wait_exit(Duration::from_secs(10)).is_some());
    let hub = hub.restart();
    let after = audit_forward(&hub, 500).await;
    assert!(
        after.len() > forward.len() && after[..forward.len()] == forward[..],
        "every record survives the restart, in place"
    );
}

#[tokio::test]
async fn a_token_for_a_revoked_session_or_account_is_refused_at_mint_and_audited() {
    let hub = start();
    let (st, body) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "session_revoke", "account": "alice", "session": "s1"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let mint = |sid: &'static str| json!({"sub": "alice", "sid": sid, "subscribe": ["t"]});
    let (st, body) = hub.post("/v1/tokens", Some(&hub.admin_key), mint("s1")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(check_error_shape(&body), "subject_revoked");
    // Another session of the same account is not revoked.
    let (st, body) = hub.post("/v1/tokens", Some(&hub.admin_key), mint("s2")).await;
    assert_eq!(st, 200, "{body}");
    let records = audit(&hub, &hub.admin_key).await;
    let refused: Vec<&Value> = records.iter().filter(|r| r["kind"] == "token_refused").collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!(refused[0]["account"], "alice");
    assert_eq!(refused[0]["detail"]["code"], "subject_revoked");
}

/// A page of `GET /v1/audit` as `cred` sees it.
async fn audit_page(hub: &Server, cred: &str, query: &str) -> Value {
    let r = hub.get(&format!("/v1/audit?{query}"), Some(cred)).await;
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.expect("json")
}

#[tokio::test]
async fn audit_pages_look_at_a_bounded_number_of_records_and_a_tenant_admins_only_at_its_own() {
    let hub = hub_with_rare_audit_records().await;
    let acme_admin = jwt(json!({"sub": "aa", "tenant": "acme", "herald": {"admin": true}}));
    let ids = |page: &Value| -> Vec<u64> {
        page["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["id"].as_u64().expect("id"))
            .collect()
    };

    // A tenant admin's pages read its tenant's records alone: both of
    // acme's in one page, forward or back, never partial, and the cursors
    // name acme's own records (no other tenant's id, nothing of how many
    // records others have).
    let forward = audit_page(&hub, &acme_admin, "after=0&limit=100").await;
    let acme = ids(&forward);
    assert_eq!(acme.len(), 2, "{forward}");
    assert_eq!(forward["partial"], false);
    assert_eq!(forward["next"].as_u64(), acme.last().copied());
    assert_eq!(forward["prev"].as_u64(), acme.first().copied());
    let back = audit_page(&hub, &acme_admin, "before=18446744073709551615&limit=100").await;
    assert_eq!(ids(&back), acme);
    assert_eq!(back["partial"], false);
    let past = audit_page(&hub, &acme_admin, &format!("after={}&limit=100", acme[1])).await;
    assert_eq!(
        (ids(&past).len(), past["partial"].clone(), past["next"].as_u64()),
        (0, json!(false), Some(acme[1]))
    );
    // A hub admin's page of one tenant reads the same index.
    let of_acme = audit_page(&hub, &hub.admin_key, "tenant=acme&after=0&limit=100").await;
    assert_eq!(
        (ids(&of_acme), of_acme["partial"].clone()),
        (acme.clone(), json!(false))
    );

    // A filter that matches rarely among everyone's records: the page
    // stops after 10,000, says so, and its cursor goes on from there.
    let opened = "kind=stream_opened&limit=100";
    let first = audit_page(&hub, &hub.admin_key, &format!("{opened}&after=0")).await;
    assert_eq!(first["partial"], true, "{first}");
    assert_eq!(ids(&first), [acme[0]]);
    let next = first["next"].as_u64().expect("next");
    assert!(next > acme[1], "next names the last record examined");
    let mut after = next;
    for n in 0.. {
        assert!(n < 10, "paging forward ends");
        let page = audit_page(&hub, &hub.admin_key, &format!("{opened}&after={after}")).await;
        assert!(ids(&page).is_empty(), "nothing more opened: {page}");
        after = page["next"].as_u64().expect("next");
        if page["partial"] == false {
            break;
        }
    }
    // Back from the newest: partial pages, each going on from its `prev`,
    // until the one record is found, once.
    let mut before = u64::MAX;
    let mut found = Vec::new();
    for n in 0.. {
        assert!(n < 10, "paging back ends");
        let page = audit_page(&hub, &hub.admin_key, &format!("{opened}&before={before}")).await;
        found.splice(0..0, ids(&page));
        match page["prev"].as_u64() {
            Some(prev) if page["partial"] == true => before = prev,
            _ => break,
        }
    }
    assert_eq!(found, [acme[0]], "the same record, paging back");

    // An unfiltered page fills up long before the bound.
    let all = audit_page(&hub, &hub.admin_key, "after=0&limit=1000").await;
    assert_eq!(ids(&all).len(), 1000);
    assert_eq!(all["partial"], false);
}
