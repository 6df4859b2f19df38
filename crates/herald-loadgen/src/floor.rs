//! The floor: the cheapest possible SSE fan-out, as the physical reference.
//!
//! One thread writes each event to each subscriber with one plain `write`:
//! no authentication, no parsing beyond finding the end of a request, no
//! queues. Whatever a real hub spends above this is its own overhead.
//! It is written by hand on purpose: any framework would add the very cost
//! it exists to exclude.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

type Subscribers = Arc<Mutex<Vec<TcpStream>>>;

/// Serves `/sub` (stream) and `/pub` (publish) on `addr` until killed.
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
    let subscribers: Subscribers = Arc::new(Mutex::new(Vec::new()));
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

fn handle(mut conn: TcpStream, subs: Subscribers) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_head(&mut conn, &mut buf)? else {
            return Ok(());
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        if head.starts_with("GET /sub") {
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n: connected\n\n")?;
            if let Ok(mut s) = subs.lock() {
                s.push(conn);
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
        let mut frame = b"data: ".to_vec();
        frame.extend_from_slice(&body);
        frame.extend_from_slice(b"\n\n");
        if let Ok(mut s) = subs.lock() {
            // One write per subscriber; drop those that are gone.
            s.retain_mut(|sub| sub.write_all(&frame).is_ok());
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}
