//! HTTP/1.1 on the wire, byte by byte: stream requests are written by
//! Herald's own stream writer, everything else by hyper, and a connection
//! can pass from one to the other. A raw TCP client sees exactly what a
//! browser or a proxy would.
mod support;

use serde_json::json;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);

async fn connect(hub: &Server) -> TcpStream {
    let addr = hub.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until `needle` has arrived (or fails after `T`); returns all bytes.
async fn read_until(tcp: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + T;
    while !String::from_utf8_lossy(seen).contains(needle) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within {T:?}; got {:?}", String::from_utf8_lossy(seen)))
            .expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}; got {:?}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(seen).into_owned()
}

/// Reads until the peer closes.
async fn read_to_close(tcp: &mut TcpStream, seen: &mut Vec<u8>) -> String {
    tokio::time::timeout(T, tcp.read_to_end(seen))
        .await
        .expect("the connection closes")
        .expect("read");
    String::from_utf8_lossy(seen).into_owned()
}

#[tokio::test]
async fn a_stream_is_chunked_and_ends_with_the_last_chunk() {
    let hub = start();
    let alice = user("alice", json!({}));
    let mut tcp = connect(&hub).await;
    let head = format!("GET /v1/events?topic=demo HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {alice}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let text = read_until(&mut tcp, &mut seen, ": connected").await;
    let lower = text.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200 ok\r\n"), "{text}");
    assert!(lower.contains("\r\ncontent-type: text/event-stream\r\n"), "{text}");
    assert!(lower.contains("\r\ntransfer-encoding: chunked\r\n"), "{text}");
    assert!(lower.contains("\r\ncache-control: no-cache\r\n"), "{text}");
    assert!(lower.contains("\r\ndate: "), "{text}");
    assert!(!lower.contains("content-length"), "{text}");

    let (status, _) = hub
        .publish(&alice, json!({"topics": ["demo"], "data": "x", "audience": "public"}))
        .await;
    assert_eq!(status, 200);
    // One chunk: hex size line, the frame, CRLF.
    let text = read_until(&mut tcp, &mut seen, "data: x\n\n\r\n").await;
    let frame = "id: 1\ndata: x\n\n";
    assert!(text.contains(&format!("{:x}\r\n{frame}\r\n", frame.len())), "{text}");

    // A revocation ends the stream: the closing event, then the last chunk,
    // and the connection stays usable for another request.
    let (status, body) = hub
        .post(
            "/v1/revocations",
            Some(&hub.admin_key),
            json!({"type": "logout", "account": "alice"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text = read_until(&mut tcp, &mut seen, "\r\n0\r\n\r\n").await;
    assert!(text.contains("event: revoked"), "{text}");

    let mut seen = Vec::new();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = read_to_close(&mut tcp, &mut seen).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
}

#[tokio::test]
async fn an_error_answer_keeps_the_connection_for_the_next_request() {
    let hub = start();
    let mut tcp = connect(&hub).await;
    // Two requests at once: the refused stream, then a health check.
    tcp.write_all(
        b"GET /v1/events?topic=demo HTTP/1.1\r\nHost: hub\r\n\r\nGET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let text = read_to_close(&mut tcp, &mut seen).await;
    let (first, rest) = text.split_once("\r\n\r\n").expect("a first response head");
    assert!(first.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    let lower = first.to_ascii_lowercase();
    assert!(lower.contains("\r\ncontent-type: application/json"), "{text}");
    assert!(lower.contains("\r\nwww-authenticate: bearer"), "{text}");
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a whole answer has a length")
        .trim()
        .parse()
        .unwrap();
    let (body, second) = rest.split_at(length);
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
    check_error_shape(&v);
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");
}

#[tokio::test]
async fn a_head_in_pieces_still_opens_a_stream() {
    let hub = start();
    let alice = user("alice", json!({}));
    let mut tcp = connect(&hub).await;
    let head = format!("GET /v1/events?topic=demo HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {alice}\r\n\r\n");
    for piece in head.as_bytes().chunks(7) {
        tcp.write_all(piece).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut seen = Vec::new();
    let text = read_until(&mut tcp, &mut seen, ": connected").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
}

#[tokio::test]
async fn what_this_path_does_not_serve_goes_to_hyper() {
    let hub = start();
    // A head over 64 KiB: hyper's limit answers, not a crash or a hang.
    let mut tcp = connect(&hub).await;
    let big = format!(
        "GET /v1/events?topic=demo HTTP/1.1\r\nHost: hub\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let _ = tcp.write_all(big.as_bytes()).await;
    let mut seen = Vec::new();
    let text = read_to_close(&mut tcp, &mut seen).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{}", &text[..text.len().min(200)]);

    // HTTP/1.0 and a stream request with a body are hyper's too; both still
    // get Herald's JSON answers.
    for head in [
        "GET /v1/events?topic=demo HTTP/1.0\r\nHost: hub\r\n\r\n",
        "GET /v1/events?topic=demo HTTP/1.1\r\nHost: hub\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let mut tcp = connect(&hub).await;
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let text = read_to_close(&mut tcp, &mut seen).await;
        assert!(text.contains(" 401 Unauthorized\r\n"), "{head:?}: {text}");
        assert!(text.contains("\"error\""), "{head:?}: {text}");
    }

    // Garbage is answered 400 by hyper, never a 5xx.
    let mut tcp = connect(&hub).await;
    tcp.write_all(b"\x16\x03\x01 not http at all\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let text = read_to_close(&mut tcp, &mut seen).await;
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 400 "), "{text}");
}

#[tokio::test]
async fn a_url_pasted_into_curl_opens_its_stream_or_gets_a_json_error_saying_how_to_encode_it() {
    let hub = start();
    let alice = user("alice", json!({}));
    // curl sends `>` (and `{`, `|`, …) raw: the selector still opens.
    let mut tcp = connect(&hub).await;
    let head = format!("GET /v1/events?topic=orders.> HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {alice}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let text = read_until(&mut tcp, &mut seen, ": connected").await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    let (st, _) = hub
        .publish(
            &alice,
            json!({"topics": ["orders.eu"], "data": "x", "audience": "public"}),
        )
        .await;
    assert_eq!(st, 200);
    read_until(&mut tcp, &mut seen, "data: x").await;

    // Where hyper parses the head (a request after the first on a
    // connection), the answer is Herald's JSON error, not an empty 400.
    let mut tcp = connect(&hub).await;
    let two = "GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\nGET /v1/events?topic=orders.> HTTP/1.1\r\nHost: hub\r\n\r\n";
    tcp.write_all(two.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let text = read_to_close(&mut tcp, &mut seen).await;
    let second = text.split("HTTP/1.1 ").nth(2).unwrap_or_default();
    assert!(second.starts_with("400 "), "{text}");
    let body = second.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("%3E")), "{v}");
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_slot_at_once() {
    // One stream per session allowed and new streams rejected, so the second
    // open succeeds only once the first one's slot is released.
    let hub = start_with("[limits]\nper_session = 1\nsession_policy = \"reject\"\n");
    let alice = user("alice", json!({"sid": "s1"}));
    let head = format!("GET /v1/events?topic=demo HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {alice}\r\n\r\n");
    let mut tcp = connect(&hub).await;
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut tcp, &mut seen, ": connected").await;
    drop(tcp);
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let resp = hub.get("/v1/events?topic=demo", Some(&alice)).await;
        if resp.status() == 200 {
            break;
        }
        assert_eq!(resp.status(), 429, "only the session cap may refuse");
        assert!(tokio::time::Instant::now() < deadline, "the slot was not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
