//! The floor: the cheapest possible SSE fan-out, as the physical reference.
//!
//! One write per stream per event (no coalescing): the publishing thread
//! writes each event to each subscriber of its channel with one plain
//! `write`: no authentication, no parsing beyond finding the end of a
//! request and its `?ch=` channel, no queues. Whatever a real hub spends
//! above this is its own overhead. Streams are HTTP/1.1 chunked, one chunk
//! per event, as Herald's are, so a client sees where each write began and
//! events per chunk can be compared between the two.
//! It is written by hand on purpose: any framework would add the very cost
//! it exists to exclude.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The streams of each channel.
type Subscribers = Arc<Mutex<HashMap<String, Vec<TcpStream>>>>;

/// Serves `/sub?ch=NAME` (stream) and `/pub?ch=NAME` (publish to that
/// channel's streams; no `ch`: the unnamed channel) on `addr` until killed.
pub fn serve(addr: &str) -> std::io::Result<()> {
    // The same accept backlog as Herald's, so a burst of connects is not
    // dropped (std's `bind` asks for 128).
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    let listener: TcpListener = socket.into();
    println!("floor listening on http://{}", listener.local_addr()?);
    let subscribers: Subscribers = Arc::new(Mutex::new(HashMap::new()));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let subs = subscribers.clone();
        std::thread::spawn(move || {
            let _ = handle(conn, subs);
        });
    }
    Ok(())
}

fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The `ch` query parameter of a request line (`GET /sub?ch=x HTTP/1.1`).
fn channel(head: &str) -> &str {
    let target = head.split(' ').nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query.split('&').find_map(|kv| kv.strip_prefix("ch=")).unwrap_or("")
}

/// One event as one HTTP/1.1 chunk: `data: <body>` and the blank line.
fn event_chunk(body: &[u8]) -> Vec<u8> {
    let len = body.len() + "data: \n\n".len();
    let mut frame = format!("{len:x}\r\ndata: ").into_bytes();
    frame.extend_from_slice(body);
    frame.extend_from_slice(b"\n\n\r\n");
    frame
}

fn handle(mut conn: TcpStream, subs: Subscribers) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_head(&mut conn, &mut buf)? else {
            return Ok(());
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let ch = channel(&head).to_string();
        if head.starts_with("GET /sub") {
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n: connected\n\n\r\n")?;
            if let Ok(mut s) = subs.lock() {
                s.entry(ch).or_default().push(conn);
            }
            return Ok(());
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut chunk = [0u8; 4096];
        while buf.len() < len {
            let n = conn.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let frame = event_chunk(&body);
        if let Ok(mut s) = subs.lock() {
            // One write per subscriber; drop those that are gone.
            if let Some(streams) = s.get_mut(&ch) {
                streams.retain_mut(|sub| sub.write_all(&frame).is_ok());
            }
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_come_from_the_query() {
        assert_eq!(channel("GET /sub?ch=bench-t3 HTTP/1.1\r\n"), "bench-t3");
        assert_eq!(channel("POST /pub?x=1&ch=bench HTTP/1.1\r\n"), "bench");
        assert_eq!(channel("GET /sub HTTP/1.1\r\n"), "");
    }

    #[test]
    fn an_event_is_one_chunk() {
        assert_eq!(event_chunk(b"7 1 * x"), b"f\r\ndata: 7 1 * x\n\n\r\n".to_vec());
    }
}
