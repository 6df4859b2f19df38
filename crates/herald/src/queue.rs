//! The per-subscriber queue between the publish path and one stream's writer.
//!
//! Publishing must never wait on a subscriber, so a push never blocks: it
//! either queues the shared frame or reports that the queue is full, and a
//! full queue disconnects that subscriber alone (it resumes from history).
//! The writer drains everything queued in one go, so a burst becomes one
//! write instead of one per event.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// Why the hub ended a stream. Every way a stream can end is here, so the
/// audit log, metrics and the final SSE frame are derived from one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client went away.
    ClientGone,
    /// A revocation matched (carries the revocation's wire type).
    Revoked(&'static str),
    /// The credential expired.
    Expired,
    /// The session opened a stream beyond its cap; this, its oldest, made room.
    Evicted,
    /// An administrator cut it.
    Kicked,
    /// The subscriber fell too far behind.
    Overflow,
    /// Writes stalled past the zombie timeout.
    Zombie,
    /// The hub is shutting down.
    Shutdown,
    /// This cluster node could not renew its lease on the cluster-wide
    /// caps, so other nodes may have given the stream's place away.
    LeaseLost,
}

impl CloseReason {
    /// Stable name for logs, metrics and audit events.
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::ClientGone => "client_gone",
            CloseReason::Revoked(_) => "revoked",
            CloseReason::Expired => "expired",
            CloseReason::Evicted => "evicted",
            CloseReason::Kicked => "kicked",
            CloseReason::Overflow => "overflow",
            CloseReason::Zombie => "zombie",
            CloseReason::Shutdown => "shutdown",
            CloseReason::LeaseLost => "lease_lost",
        }
    }

    /// The last frame sent to the client, where one is due.
    pub fn final_frame(&self) -> Option<Bytes> {
        use herald_core::frame::encode_control;
        let (event, reason) = match self {
            CloseReason::Revoked(r) => ("revoked", *r),
            CloseReason::Expired => ("expired", "credential_expired"),
            CloseReason::Evicted => ("evicted", "session_stream_cap"),
            CloseReason::Kicked => ("kicked", "admin"),
            CloseReason::Shutdown => ("shutdown", "shutdown"),
            // Told as a shutdown: the client reconnects, on any node.
            CloseReason::LeaseLost => ("shutdown", "lease_lost"),
            CloseReason::Overflow => ("overflow", "queue_full"),
            CloseReason::ClientGone | CloseReason::Zombie => return None,
        };
        Some(encode_control(event, &format!("{{\"reason\":\"{reason}\"}}")))
    }
}

/// What became of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    /// Queued for the writer.
    Queued,
    /// The queue is full: the caller closes this subscriber.
    Overflow,
    /// The stream is already closing.
    Closed,
}

/// What the writer gets when it wakes.
pub enum Drained {
    /// Frames to write, with their sequence numbers (0 for comments).
    Frames(Vec<(u64, Bytes)>),
    /// The stream is over.
    Closed(CloseReason),
}

struct State {
    frames: VecDeque<(u64, Bytes)>,
    bytes: usize,
    closed: Option<CloseReason>,
    /// When the writer last took frames (ms); zombie detection.
    last_drain_ms: u64,
    /// Whether anything was pushed since the last keepalive tick.
    active: bool,
    /// Set when a push found the queue full: the last sequence number the
    /// client can have received (see [`SubscriberQueue::resume_after`]).
    resume_after: Option<u64>,
}

/// A bounded queue of shared SSE frames for one subscriber.
pub struct SubscriberQueue {
    state: Mutex<State>,
    notify: Notify,
    max_events: usize,
    max_bytes: usize,
    /// Events the writer has written to the client (replayed and live),
    /// for operators.
    sent: AtomicU64,
}

impl SubscriberQueue {
    /// An empty queue with the given bounds. Allocates nothing for frames
    /// until the first push, so idle streams stay small.
    pub fn new(max_events: usize, max_bytes: usize, now_ms: u64) -> SubscriberQueue {
        SubscriberQueue {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                closed: None,
                last_drain_ms: now_ms,
                active: false,
                resume_after: None,
            }),
            sent: AtomicU64::new(0),
            notify: Notify::new(),
            max_events,
            max_bytes,
        }
    }

    /// Queues a frame without ever waiting.
    pub fn push(&self, seq: u64, frame: Bytes) -> Push {
        let mut s = self.state.lock();
        if s.closed.is_some() {
            return Push::Closed;
        }
        if s.frames.len() >= self.max_events || s.bytes + frame.len() > self.max_bytes {
            // Frames leave in `seq` order, so everything before the oldest
            // frame still waiting (or, with none waiting, before this one)
            // has been written, and nothing from it on: that is where the
            // client resumes, whether or not it had received any event yet.
            if seq > 0 && s.resume_after.is_none() {
                let first = s.frames.iter().map(|(q, _)| *q).find(|q| *q > 0).unwrap_or(seq);
                s.resume_after = Some(first - 1);
            }
            return Push::Overflow;
        }
        s.bytes += frame.len();
        s.frames.push_back((seq, frame));
        s.active = true;
        drop(s);
        self.notify.notify_one();
        Push::Queued
    }

    /// Marks the stream closed; the first reason wins. Queued frames are
    /// dropped: after a revocation not one more event may go out.
    pub fn close(&self, reason: CloseReason) -> bool {
        let mut s = self.state.lock();
        if s.closed.is_some() {
            return false;
        }
        s.closed = Some(reason);
        s.frames = VecDeque::new();
        s.bytes = 0;
        drop(s);
        self.notify.notify_one();
        true
    }

    /// After an overflow, the id to resume after: every event numbered up to
    /// it was written to the client, none after it. `None` if the queue never
    /// overflowed on a numbered event.
    pub fn resume_after(&self) -> Option<u64> {
        self.state.lock().resume_after
    }

    /// Frames waiting for the writer now, and events written so far (what
    /// an operator sees of the stream).
    pub fn depth_and_sent(&self) -> (usize, u64) {
        (self.state.lock().frames.len(), self.sent.load(Ordering::Relaxed))
    }

    /// Counts `n` events written to the client.
    pub fn count_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Why the stream closed, if it has.
    pub fn closed(&self) -> Option<CloseReason> {
        self.state.lock().closed
    }

    /// Waits for frames or for the close, and takes everything queued.
    pub async fn drain(&self, now_ms: impl Fn() -> u64) -> Drained {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock();
                s.last_drain_ms = now_ms();
                if let Some(reason) = s.closed {
                    return Drained::Closed(reason);
                }
                if !s.frames.is_empty() {
                    s.bytes = 0;
                    let frames = std::mem::take(&mut s.frames);
                    return Drained::Frames(frames.into());
                }
            }
            notified.await;
        }
    }

    /// For the shared heartbeat: whether the stream was idle since the last
    /// call (and so needs a keepalive), resetting the flag.
    pub fn take_idle(&self) -> bool {
        let mut s = self.state.lock();
        let idle = !s.active;
        s.active = false;
        idle
    }

    /// Whether frames have waited for the writer since before `deadline_ms`.
    pub fn stalled_since(&self, deadline_ms: u64) -> bool {
        let s = self.state.lock();
        !s.frames.is_empty() && s.last_drain_ms < deadline_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_names_the_first_frame_not_written() {
        let q = SubscriberQueue::new(2, 1 << 20, 0);
        q.push(4, Bytes::from_static(b"a"));
        q.push(0, Bytes::from_static(b": keepalive"));
        assert_eq!(q.push(7, Bytes::from_static(b"b")), Push::Overflow);
        assert_eq!(q.resume_after(), Some(3));
        let empty = SubscriberQueue::new(0, 1 << 20, 0);
        assert_eq!(empty.push(9, Bytes::from_static(b"c")), Push::Overflow);
        assert_eq!(empty.resume_after(), Some(8));
    }

    #[test]
    fn overflow_by_count_and_bytes() {
        let q = SubscriberQueue::new(2, 10, 0);
        assert_eq!(q.push(1, Bytes::from_static(b"aaaa")), Push::Queued);
        assert_eq!(q.push(2, Bytes::from_static(b"bbbb")), Push::Queued);
        assert_eq!(q.push(3, Bytes::from_static(b"c")), Push::Overflow);
        let q = SubscriberQueue::new(10, 6, 0);
        assert_eq!(q.push(1, Bytes::from_static(b"aaaa")), Push::Queued);
        assert_eq!(q.push(2, Bytes::from_static(b"bbbb")), Push::Overflow);
        assert_eq!(q.resume_after(), Some(0));
        assert!(q.close(CloseReason::Overflow));
        assert!(!q.close(CloseReason::Shutdown));
        assert_eq!(q.push(3, Bytes::from_static(b"c")), Push::Closed);
    }
}
