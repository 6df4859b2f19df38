//! The per-subscriber queue between the publish path and one stream's writer.
//!
//! Publishing must never wait on a subscriber, so a push never blocks: it
//! either queues the shared frame or reports that the queue is full, and a
//! full queue disconnects that subscriber alone (it resumes from history).
//! The writer drains everything queued in one go, so a burst becomes one
//! write instead of one per event.
//!
//! A stream whose connection can be written without its task (Herald's
//! own HTTP/1.1 server gives it a [`WireWriter`]) is written by the
//! dispatcher itself while its writer idles: the event goes straight to the
//! socket with one non-blocking write, with no wake-up, no scheduler hop
//! and no poll of the body. That is the common case below saturation,
//! where each stream's queue is empty when an event arrives; when events
//! pile up, the dispatcher offers a run of them at once
//! ([`SubscriberQueue::offer_run`]), one write for the lot. Whenever the
//! direct write cannot take the event whole at once (the socket is full,
//! the writer is busy, frames are waiting) the event is queued as it
//! always was, so order, bounds and overflow stay the queue's.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// What a direct write did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// All of it is in the socket.
    Whole,
    /// Part of it is in the socket; the writer keeps the rest and sends it
    /// before anything else. The stream's task must wake to do so.
    Part,
    /// Nothing: the socket is full or the writer still holds earlier bytes.
    No,
}

/// A connection that can take a frame without the stream's task: a
/// non-blocking write, already in the connection's wire encoding.
pub trait WireWriter: Send + Sync {
    /// Writes `frame` if the socket takes it now. `wire` is the frame in
    /// the connection's encoding, shared by every writer offered the same
    /// frame (all of them HTTP/1.1 chunked): the first fills it.
    fn try_write(&self, frame: &Bytes, wire: &mut Option<Bytes>) -> Written;

    /// Whether part of an earlier write is still waiting to be sent: a
    /// stream whose connection stays in that state is stalled even with an
    /// empty queue.
    fn has_pending(&self) -> bool;
}

/// A request extension: the connection the request came on can be written
/// directly ([`WireWriter`]). Herald's own HTTP/1.1 server inserts it on
/// stream requests; the adapters hand it to admission with the stream.
#[derive(Clone)]
pub struct DirectWire(pub Arc<dyn WireWriter>);

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
    /// The connection, when it can be written directly.
    direct: Option<Arc<dyn WireWriter>>,
    /// While the writer waits for frames with nothing left to skip: the
    /// last event it sent. Only then may the dispatcher write directly,
    /// and only events after it.
    idle_after: Option<u64>,
    /// The last event the dispatcher wrote directly, so the writer's
    /// resume point counts it.
    written_through: u64,
    /// The writer's task while it waits for frames. A waker under the
    /// state's own lock, not a `Notify`: what the writer waits on is
    /// judged under that lock anyway, and the waiting future stays a few
    /// bytes, which every idle stream holds.
    waiter: Option<Waker>,
}

/// Wakes a waiting writer, outside the state's lock.
fn wake(waiter: Option<Waker>) {
    if let Some(w) = waiter {
        w.wake();
    }
}

/// A bounded queue of shared SSE frames for one subscriber.
pub struct SubscriberQueue {
    state: Mutex<State>,
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
                direct: None,
                idle_after: None,
                written_through: 0,
                waiter: None,
            }),
            sent: AtomicU64::new(0),
            max_events,
            max_bytes,
        }
    }

    /// Lets the dispatcher write this stream's connection directly while
    /// its writer idles (see the module's notes).
    pub fn set_writer(&self, writer: Arc<dyn WireWriter>) {
        self.state.lock().direct = Some(writer);
    }

    /// Drops the connection's writer: the stream is over, and the
    /// connection must close (or serve its next request) without the
    /// queue holding it open.
    pub fn detach_writer(&self) {
        let mut s = self.state.lock();
        s.direct = None;
        s.idle_after = None;
    }

    /// Queues a frame without ever waiting.
    pub fn push(&self, seq: u64, frame: Bytes) -> Push {
        let s = self.state.lock();
        self.queue_locked(s, seq, frame)
    }

    /// Offers a run of consecutive events (`run`, in `seq` order; often
    /// one), whose frames end to end are `joined`: written to the
    /// connection in one write when the writer idles and the socket takes
    /// it all at once, else each queued. `now_ms` is when it was offered. `wire` caches `joined`'s wire encoding across the
    /// streams it is offered to.
    pub fn offer_run(&self, run: &[(u64, Bytes)], joined: &Bytes, wire: &mut Option<Bytes>, now_ms: u64) -> Push {
        let (Some(&(first, _)), Some(&(last, _))) = (run.first(), run.last()) else {
            return Push::Queued;
        };
        let mut s = self.state.lock();
        if let Some((after, writer)) = self.idle_writer(&s, joined) {
            if first > after {
                // Under the queue's lock, so a close (a revocation) either
                // precedes this write or follows it: after it, not one more
                // event goes out.
                match writer.try_write(joined, wire) {
                    Written::Whole => return self.wrote(&mut s, last, run.len(), now_ms, false),
                    Written::Part => return self.wrote(&mut s, last, run.len(), now_ms, true),
                    Written::No => {}
                }
            }
        }
        let mut pushed = Push::Closed;
        for (seq, frame) in run {
            pushed = self.queue_one(&mut s, *seq, frame.clone());
            if pushed != Push::Queued {
                break;
            }
        }
        let waiter = if s.frames.is_empty() { None } else { s.waiter.take() };
        drop(s);
        wake(waiter);
        pushed
    }

    /// Sends a keepalive comment (`frame`): written to the connection
    /// directly when the writer idles, as an event would be
    /// ([`offer_run`](Self::offer_run)), so that an idle stream's
    /// keepalive wakes nothing; else queued. `wire` caches the frame's wire
    /// encoding across the streams it is sent to.
    pub fn keep_alive(&self, frame: &Bytes, wire: &mut Option<Bytes>, now_ms: u64) -> Push {
        let mut s = self.state.lock();
        if let Some((_, writer)) = self.idle_writer(&s, frame) {
            let written = writer.try_write(frame, wire);
            if written != Written::No {
                // The socket took bytes just now: not stalled.
                s.last_drain_ms = s.last_drain_ms.max(now_ms);
            }
            match written {
                Written::Whole => return Push::Queued,
                Written::Part => {
                    // The writer holds the rest: the task sends it first.
                    s.idle_after = None;
                    wake(s.waiter.take());
                    return Push::Queued;
                }
                Written::No => {}
            }
        }
        self.queue_locked(s, 0, frame.clone())
    }

    /// The connection and the last event its writer sent, when `frame` may
    /// be written to it directly: the stream is open, nothing waits in its
    /// queue, and the writer waits with nothing left to skip. A frame
    /// larger than the queue's byte bound never is: it overflows the
    /// stream whether or not its writer idles, as it always did.
    fn idle_writer<'s>(&self, s: &'s State, frame: &Bytes) -> Option<(u64, &'s Arc<dyn WireWriter>)> {
        if s.closed.is_some() || !s.frames.is_empty() || frame.len() > self.max_bytes {
            return None;
        }
        Some((s.idle_after?, s.direct.as_ref()?))
    }

    /// Books a direct write of `events` events through `last`; `part`: the
    /// writer holds the rest and the stream's task must wake to send it.
    fn wrote(&self, s: &mut State, last: u64, events: usize, now_ms: u64, part: bool) -> Push {
        s.idle_after = if part { None } else { Some(last) };
        s.written_through = last;
        s.active = true;
        // The writer took this frame just now: a stall is counted from
        // here, not from when it last drained the queue.
        s.last_drain_ms = s.last_drain_ms.max(now_ms);
        self.count_sent(events);
        if part {
            // Woken at once (the lock is held, which waking does not need).
            wake(s.waiter.take());
        }
        Push::Queued
    }

    fn queue_locked(&self, mut s: parking_lot::MutexGuard<'_, State>, seq: u64, frame: Bytes) -> Push {
        let pushed = self.queue_one(&mut s, seq, frame);
        let waiter = if pushed == Push::Queued { s.waiter.take() } else { None };
        drop(s);
        wake(waiter);
        pushed
    }

    /// Queues one frame under the lock; the caller wakes the writer.
    fn queue_one(&self, s: &mut State, seq: u64, frame: Bytes) -> Push {
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
        if s.frames.is_empty() && s.idle_after.take().is_some() {
            // The writer has been waiting until now; it wakes for this.
            s.last_drain_ms = s.last_drain_ms.max(crate::clock::now_ms());
        }
        s.bytes += frame.len();
        s.frames.push_back((seq, frame));
        // Only events are activity: a keepalive that counted would make the
        // next tick skip one, and an idle stream would hear every other one.
        s.active |= seq > 0;
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
        s.idle_after = None;
        let waiter = s.waiter.take();
        drop(s);
        wake(waiter);
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
    ///
    /// `sent_through`: the last event the writer sent, when it has nothing
    /// left to skip; while it waits, the dispatcher may then write later
    /// events directly. `None` keeps every frame in the queue.
    pub async fn drain(&self, now_ms: impl Fn() -> u64, sent_through: Option<u64>) -> Drained {
        std::future::poll_fn(|cx| self.poll_drain(cx, now_ms(), sent_through)).await
    }

    /// [`drain`](Self::drain) as a poll: frames or the close when there
    /// are, else the task is woken when there are.
    pub fn poll_drain(&self, cx: &mut Context<'_>, now_ms: u64, sent_through: Option<u64>) -> Poll<Drained> {
        let mut s = self.state.lock();
        s.last_drain_ms = now_ms;
        if let Some(reason) = s.closed {
            s.idle_after = None;
            s.waiter = None;
            return Poll::Ready(Drained::Closed(reason));
        }
        if !s.frames.is_empty() {
            s.idle_after = None;
            s.waiter = None;
            s.bytes = 0;
            let frames = std::mem::take(&mut s.frames);
            return Poll::Ready(Drained::Frames(frames.into()));
        }
        if s.direct.is_some() {
            s.idle_after = sent_through.map(|after| after.max(s.written_through));
        }
        if !s.waiter.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waiter = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The last event the dispatcher wrote directly (0 for none).
    pub fn written_through(&self) -> u64 {
        self.state.lock().written_through
    }

    /// For the shared heartbeat: whether the stream was idle since the last
    /// call (and so needs a keepalive), resetting the flag.
    pub fn take_idle(&self) -> bool {
        let mut s = self.state.lock();
        let idle = !s.active;
        s.active = false;
        idle
    }

    /// Whether frames (or the unsent part of a direct write) have waited
    /// for the writer since before `deadline_ms`.
    pub fn stalled_since(&self, deadline_ms: u64) -> bool {
        let s = self.state.lock();
        let waiting = !s.frames.is_empty() || s.direct.as_ref().is_some_and(|w| w.has_pending());
        waiting && s.last_drain_ms < deadline_ms
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

    /// One event offered alone.
    fn offer(q: &SubscriberQueue, seq: u64, frame: &Bytes, wire: &mut Option<Bytes>, now_ms: u64) -> Push {
        q.offer_run(std::slice::from_ref(&(seq, frame.clone())), frame, wire, now_ms)
    }

    /// A connection that takes what `room` allows, recording what it took.
    struct Socket {
        room: Mutex<usize>,
        took: Mutex<Vec<u8>>,
        tail: Mutex<bool>,
    }

    impl WireWriter for Socket {
        fn try_write(&self, frame: &Bytes, _: &mut Option<Bytes>) -> Written {
            let mut room = self.room.lock();
            let n = frame.len().min(*room);
            *room -= n;
            self.took.lock().extend_from_slice(&frame[..n]);
            if n < frame.len() {
                *self.tail.lock() = true;
            }
            match n {
                0 => Written::No,
                n if n == frame.len() => Written::Whole,
                _ => Written::Part,
            }
        }

        fn has_pending(&self) -> bool {
            *self.tail.lock()
        }
    }

    fn direct(room: usize) -> (SubscriberQueue, Arc<Socket>) {
        let q = SubscriberQueue::new(8, 1 << 20, 0);
        let socket = Arc::new(Socket {
            room: Mutex::new(room),
            took: Mutex::new(Vec::new()),
            tail: Mutex::new(false),
        });
        q.set_writer(socket.clone());
        (q, socket)
    }

    /// Parks the writer as the stream's task does, having sent `after`.
    fn park(q: &SubscriberQueue, after: u64) {
        let parked = poll_once(q.drain(|| 1, Some(after)));
        assert!(parked.is_none(), "nothing was queued");
    }

    fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::pin!(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn a_keepalive_is_not_activity_so_the_next_tick_sends_one_again() {
        let q = SubscriberQueue::new(8, 1 << 20, 0);
        assert!(q.take_idle(), "a new stream with nothing sent is idle");
        assert_eq!(
            q.keep_alive(&Bytes::from_static(b": keepalive\n\n"), &mut None, 5),
            Push::Queued
        );
        assert!(
            q.take_idle(),
            "a keepalive alone leaves the stream idle: the next one is due"
        );
        q.push(1, Bytes::from_static(b"a"));
        assert!(!q.take_idle(), "an event is activity: no keepalive due");
    }

    #[test]
    fn a_keepalive_to_an_idle_writer_goes_to_the_socket_and_wakes_nothing() {
        let (q, socket) = direct(1 << 10);
        let keepalive = Bytes::from_static(b": keepalive\n\n");
        // Before the writer parks it is queued, as an event would be.
        q.keep_alive(&keepalive, &mut None, 5);
        assert!(socket.took.lock().is_empty());
        let Some(Drained::Frames(f)) = poll_once(q.drain(|| 1, Some(0))) else {
            panic!("the queued keepalive is drained");
        };
        assert_eq!(f, [(0, keepalive.clone())]);
        park(&q, 0);
        assert_eq!(q.keep_alive(&keepalive, &mut None, 9), Push::Queued);
        assert_eq!(&socket.took.lock()[..], &keepalive[..]);
        assert_eq!(q.depth_and_sent(), (0, 0), "a comment is not an event sent");
        assert_eq!(q.written_through(), 0, "nor a resume point");
        // Still idle after 0: the next event is written directly too.
        assert_eq!(offer(&q, 1, &Bytes::from_static(b"a"), &mut None, 9), Push::Queued);
        assert_eq!(q.written_through(), 1);
    }

    #[test]
    fn an_idle_writer_is_bypassed_and_its_cursor_counts_it() {
        let (q, socket) = direct(1 << 10);
        let mut wire = None;
        // Before the writer parks, everything is queued.
        assert_eq!(offer(&q, 1, &Bytes::from_static(b"a"), &mut wire, 5), Push::Queued);
        assert!(socket.took.lock().is_empty());
        let Some(Drained::Frames(f)) = poll_once(q.drain(|| 1, Some(0))) else {
            panic!("the queued frame is drained");
        };
        assert_eq!(f.len(), 1);
        park(&q, 1);
        // Parked after 1: 1 again is not written (the task skips it), 2 is.
        assert_eq!(offer(&q, 1, &Bytes::from_static(b"a"), &mut wire, 5), Push::Queued);
        let Some(Drained::Frames(_)) = poll_once(q.drain(|| 1, Some(1))) else {
            panic!("an event at or below the cursor stays in the queue");
        };
        park(&q, 1);
        assert_eq!(offer(&q, 2, &Bytes::from_static(b"b"), &mut wire, 9), Push::Queued);
        assert_eq!(offer(&q, 3, &Bytes::from_static(b"c"), &mut wire, 9), Push::Queued);
        assert_eq!(&socket.took.lock()[..], b"bc");
        assert_eq!(q.written_through(), 3);
        assert_eq!(q.depth_and_sent(), (0, 2));
        assert!(!q.take_idle(), "a direct write is activity: no keepalive due");
    }

    #[test]
    fn a_full_socket_queues_and_a_part_write_stops_direct_writes() {
        let (q, socket) = direct(3);
        let mut wire = None;
        park(&q, 0);
        assert_eq!(offer(&q, 1, &Bytes::from_static(b"ab"), &mut wire, 1), Push::Queued);
        // Half of the next frame fits: the rest is the writer's, and no
        // later event may be written around it.
        assert_eq!(offer(&q, 2, &Bytes::from_static(b"cd"), &mut wire, 1), Push::Queued);
        assert_eq!(&socket.took.lock()[..], b"abc");
        *socket.room.lock() = 100;
        assert_eq!(offer(&q, 3, &Bytes::from_static(b"ef"), &mut wire, 1), Push::Queued);
        assert_eq!(&socket.took.lock()[..], b"abc", "event 3 waits in the queue");
        let Some(Drained::Frames(f)) = poll_once(q.drain(|| 1, Some(2))) else {
            panic!("event 3 is the task's to write");
        };
        assert_eq!(f.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3]);
        // The unsent tail alone counts as a stall once it is old enough.
        park(&q, 3);
        assert!(q.stalled_since(2), "a tail left since before the deadline is a stall");
        assert!(!q.stalled_since(1));
    }

    #[test]
    fn a_frame_larger_than_the_byte_bound_overflows_even_an_idle_stream() {
        let q = SubscriberQueue::new(8, 4, 0);
        let socket = Arc::new(Socket {
            room: Mutex::new(100),
            took: Mutex::new(Vec::new()),
            tail: Mutex::new(false),
        });
        q.set_writer(socket.clone());
        park(&q, 0);
        assert_eq!(
            offer(&q, 1, &Bytes::from_static(b"12345"), &mut None, 1),
            Push::Overflow
        );
        assert!(socket.took.lock().is_empty());
    }

    #[test]
    fn a_run_goes_out_in_one_write_or_is_queued_event_by_event() {
        let (q, socket) = direct(1 << 10);
        let run = [(4, Bytes::from_static(b"d")), (5, Bytes::from_static(b"e"))];
        let joined = Bytes::from_static(b"de");
        // Not parked yet: each event is queued on its own.
        assert_eq!(q.offer_run(&run, &joined, &mut None, 1), Push::Queued);
        let Some(Drained::Frames(f)) = poll_once(q.drain(|| 1, Some(3))) else {
            panic!("the run was queued");
        };
        assert_eq!(f.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4, 5]);
        park(&q, 5);
        let run = [(6, Bytes::from_static(b"f")), (7, Bytes::from_static(b"g"))];
        assert_eq!(
            q.offer_run(&run, &Bytes::from_static(b"fg"), &mut None, 1),
            Push::Queued
        );
        assert_eq!(&socket.took.lock()[..], b"fg");
        assert_eq!(q.written_through(), 7);
        assert_eq!(q.depth_and_sent(), (0, 2));
    }

    #[test]
    fn nothing_is_written_directly_after_a_close_or_a_detach() {
        let (q, socket) = direct(100);
        let mut wire = None;
        park(&q, 0);
        q.close(CloseReason::Shutdown);
        assert_eq!(offer(&q, 1, &Bytes::from_static(b"a"), &mut wire, 1), Push::Closed);
        let (q, socket2) = direct(100);
        park(&q, 0);
        q.detach_writer();
        assert_eq!(offer(&q, 1, &Bytes::from_static(b"a"), &mut wire, 1), Push::Queued);
        assert!(socket.took.lock().is_empty() && socket2.took.lock().is_empty());
    }

    #[test]
    fn a_writer_that_has_events_to_skip_is_never_bypassed() {
        let (q, socket) = direct(100);
        let mut wire = None;
        assert!(poll_once(q.drain(|| 1, None)).is_none());
        assert_eq!(offer(&q, 1, &Bytes::from_static(b"a"), &mut wire, 1), Push::Queued);
        assert!(socket.took.lock().is_empty());
    }
}
