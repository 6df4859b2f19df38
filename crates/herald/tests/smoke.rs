//! The two-minute tour as a test: publish, receive, framing.
mod support;

use serde_json::json;
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn publish_reaches_subscriber_with_exact_framing() {
    let hub = start();
    let alice = user("alice", json!({}));
    let mut s = hub.stream("/v1/events?topic=demo", &alice).await;
    let (status, body) = hub
        .publish(
            &alice,
            json!({"topics": ["demo"], "type": "greeting", "data": "hello\n\nwörld ✓", "audience": "public"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["seq"], 1);
    assert_eq!(body["id"], "1");
    let (status, _) = hub
        .publish(
            &alice,
            json!({"topics": ["demo"], "data": {"n": [1, 2]}, "audience": "public"}),
        )
        .await;
    assert_eq!(status, 200);
    let events = s.take(2, T).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event, "greeting");
    assert_eq!(events[0].data, "hello\n\nwörld ✓");
    assert_eq!(events[0].id.as_deref(), Some("1"));
    assert_eq!(events[1].event, "message");
    let v: serde_json::Value = serde_json::from_str(&events[1].data).expect("JSON data round-trips");
    assert_eq!(v, json!({"n": [1, 2]}));
    assert!(
        s.raw
            .contains("id: 1\nevent: greeting\ndata: hello\ndata: \ndata: wörld ✓\n\n"),
        "{}",
        s.raw
    );
}

#[tokio::test]
async fn stream_headers() {
    let hub = start();
    let resp = hub.get("/v1/events?topic=demo", Some(&user("a", json!({})))).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
}
