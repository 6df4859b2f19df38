//! The connection of a plain HTTP/1.1 event stream, shared by the stream's
//! task and the dispatcher.
//!
//! The dispatcher writes an event straight into the socket while the
//! stream's task waits (see [`crate::queue`]); the task writes everything
//! else (the head, the replay, backlogs, keepalives, the closing frame).
//! Both write through this type, under one lock, and both first send what
//! an earlier write left unsent, so bytes leave in the order they were
//! written and a chunk is never interleaved with another.

use crate::queue::{WireWriter, Written};
use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use std::io::{ErrorKind, IoSlice};
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// A TCP connection with the unsent tail of a direct write.
pub struct LiveSocket {
    tcp: TcpStream,
    /// What a direct write could not send at once; it goes out before
    /// anything else, sent by the stream's task.
    pending: Mutex<Bytes>,
}

impl LiveSocket {
    /// Wraps a connection.
    pub fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            pending: Mutex::new(Bytes::new()),
        }
    }

    /// The connection, for reads (which never go through the lock: only
    /// the stream's task reads).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The connection back, once nothing else holds it and nothing is
    /// left unsent.
    pub fn into_inner(self) -> TcpStream {
        debug_assert!(self.pending.lock().is_empty(), "a stream ends with its bytes sent");
        self.tcp
    }

    /// Sends the tail a direct write left. Ready once it is all sent (or
    /// the connection failed); pending while there is none, without a
    /// wake-up of its own: a direct write that leaves a tail wakes the
    /// stream's task through its queue, and the task polls this again.
    pub fn poll_flush_pending(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.has_pending() {
            return Poll::Pending;
        }
        self.poll_write_all(cx, &mut &[][..])
    }

    /// Writes all of `buf` (vectored when it is a chain) after any unsent
    /// tail. Only the stream's task calls this.
    pub fn poll_write_all(&self, cx: &mut Context<'_>, buf: &mut impl Buf) -> Poll<std::io::Result<()>> {
        loop {
            let mut pending = self.pending.lock();
            let written = if !pending.is_empty() {
                self.tcp.try_write(&pending).inspect(|&n| pending.advance(n))
            } else if buf.has_remaining() {
                let mut slices = [IoSlice::new(&[]); 4];
                let n = buf.chunks_vectored(&mut slices);
                self.tcp.try_write_vectored(&slices[..n]).inspect(|&n| buf.advance(n))
            } else {
                return Poll::Ready(Ok(()));
            };
            drop(pending);
            match written {
                Ok(0) => return Poll::Ready(Err(ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes `parts` (in order) as far as the connection takes them now;
    /// what it does not take becomes the unsent tail, sent before anything
    /// else by [`poll_flush_pending`](Self::poll_flush_pending). Only the
    /// stream's task calls this.
    ///
    /// Never waits, so the stream's task holds no write in progress while
    /// it waits: its state stays the size of an idle stream's. The tail is
    /// a copy, made only when the client is not keeping up.
    pub fn write_now(&self, parts: &[&[u8]]) -> std::io::Result<()> {
        let mut pending = self.pending.lock();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut sent = 0;
        if pending.is_empty() {
            // Parts past the fourth are not tried now; they join the tail.
            let mut slices = [IoSlice::new(&[]); 4];
            for (slice, part) in slices.iter_mut().zip(parts) {
                *slice = IoSlice::new(part);
            }
            match self.tcp.try_write_vectored(&slices[..parts.len().min(4)]) {
                Ok(0) if total > 0 => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => sent = n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if sent < total {
            let mut tail = BytesMut::with_capacity(pending.len() + total - sent);
            tail.extend_from_slice(&pending);
            for part in parts {
                let skip = sent.min(part.len());
                sent -= skip;
                tail.extend_from_slice(&part[skip..]);
            }
            *pending = tail.freeze();
        }
        Ok(())
    }
}

impl WireWriter for LiveSocket {
    fn has_pending(&self) -> bool {
        !self.pending.lock().is_empty()
    }

    fn try_write(&self, frame: &Bytes, wire: &mut Option<Bytes>) -> Written {
        let mut pending = self.pending.lock();
        if !pending.is_empty() {
            return Written::No;
        }
        let chunk = wire.get_or_insert_with(|| chunk(frame));
        match self.tcp.try_write(chunk) {
            Ok(n) if n == chunk.len() => Written::Whole,
            Ok(0) | Err(_) => Written::No,
            Ok(n) => {
                *pending = chunk.slice(n..);
                Written::Part
            }
        }
    }
}

/// `frame` as one HTTP/1.1 chunk, in one buffer: one `write` per stream.
fn chunk(frame: &Bytes) -> Bytes {
    let (size, n) = super::http1_stream::chunk_size(frame.len());
    let mut out = BytesMut::with_capacity(n + frame.len() + 2);
    out.extend_from_slice(&size[..n]);
    out.extend_from_slice(frame);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that does not read fills the connection: what it did not
    /// take is kept, in order, behind what was sent, and goes out once it
    /// reads again.
    #[tokio::test]
    async fn what_the_connection_does_not_take_is_sent_later_in_order() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let socket = LiveSocket::new(server);
        let block: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let mut expected = Vec::new();
        let mut rounds = 0;
        while !socket.has_pending() {
            socket.write_now(&[b"<", &block, b">"]).unwrap();
            expected.extend_from_slice(b"<");
            expected.extend_from_slice(&block);
            expected.extend_from_slice(b">");
            rounds += 1;
            assert!(rounds < 10_000, "the connection never filled");
        }
        // Further writes join the tail rather than jumping ahead of it.
        socket.write_now(&[b"end"]).unwrap();
        expected.extend_from_slice(b"end");
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(got == expected, "bytes arrived out of order or damaged");
        });
        std::future::poll_fn(|cx| socket.poll_flush_pending(cx)).await.unwrap();
        assert!(!socket.has_pending());
        reader.await.unwrap();
    }

    #[test]
    fn a_frame_is_one_chunk() {
        assert_eq!(&chunk(&Bytes::from_static(b"data: x\n\n"))[..], b"9\r\ndata: x\n\n\r\n");
    }
}
