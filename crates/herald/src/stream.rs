//! The SSE response body of one stream: `: connected`, then the replay
//! (retained snapshot or missed events), then live frames, then at most one
//! closing control event.
//!
//! No gap, no duplicate: the stream is registered (and so receives live
//! frames into its queue) *before* history is read. Every event is either
//! in the history page (seq ≤ page head) or dispatched after registration,
//! so it is in the queue; live frames with `seq ≤ cursor` are the overlap and
//! are skipped. Dispatch happens in `seq` order, so one number suffices.
//! A retained snapshot is not such a page (it holds one event per topic, not
//! every event up to its head), so after one only the events it sent are
//! skipped.

use crate::history::ResumePoint;
use crate::hub::{now_ms, HubInner};
use crate::queue::{CloseReason, DirectWire, Drained};
use crate::registry::{StreamSlot, Subscriber};
use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use herald_core::frame::{encode_comment, encode_control, encode_control_at};
use herald_core::is_visible;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Where the replay starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// No `Last-Event-ID`: send the retained snapshot.
    Retained,
    /// Resume after an event.
    Resume(ResumePoint),
    /// Audit stream resuming after a record id.
    AuditAfter(u64),
}

/// Ends the stream's life exactly once: releases the slot, then audits the
/// closure with the reason the hub recorded (or `client_gone`).
struct StreamGuard {
    hub: Arc<HubInner>,
    subscriber: Arc<Subscriber>,
    slot: Option<StreamSlot>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // The connection is the server's again (to close, or to serve the
        // client's next request).
        self.subscriber.queue.detach_writer();
        drop(self.slot.take());
        let reason = self.subscriber.queue.closed().unwrap_or(CloseReason::ClientGone);
        metrics::counter!("herald_streams_closed_total", "reason" => reason.as_str()).increment(1);
        let mut detail = serde_json::json!({"reason": reason.as_str()});
        if let CloseReason::Revoked(r) = reason {
            detail["revocation"] = r.into();
        }
        self.hub.audit_stream("stream_closed", &self.subscriber, detail);
        self.hub.stream_life(&self.subscriber, crate::hub::StreamLife::Closed);
    }
}

/// Most history events fetched per page during a resume.
const PAGE: usize = 1000;

/// Builds the response body for a registered stream. `live_after` is the
/// last `seq` committed when the stream was registered
/// ([`crate::registry::Registry::committed`]): a fresh stream's live
/// events start after it. `direct`: the connection, when the dispatcher may
/// write it directly (see [`crate::queue`]); it is the queue's from here
/// until the guard gives it back.
pub fn body(
    hub: Arc<HubInner>,
    sub: Arc<Subscriber>,
    slot: StreamSlot,
    start: Start,
    live_after: u64,
    direct: Option<DirectWire>,
) -> Body {
    if let Some(DirectWire(writer)) = direct {
        sub.queue.set_writer(writer);
    }
    let replay = Box::pin(replay(hub.clone(), sub.clone(), start, live_after));
    Body::from_stream(EventStream {
        guard: StreamGuard {
            hub,
            subscriber: sub,
            slot: Some(slot),
        },
        phase: Phase::Replay(replay),
    })
}

/// A stream's body: the replay, then live frames.
///
/// Written by hand rather than as one generator because every idle stream
/// holds it for as long as it is open: a generator is as large as its
/// largest suspension point (the replay's, with its pages and buffers, was
/// 528 bytes), while the live phase needs only [`Live`]. The replay, which
/// every stream goes through once, is a boxed generator freed when it ends.
struct EventStream {
    /// Ends the stream's life when the body is dropped.
    guard: StreamGuard,
    phase: Phase,
}

enum Phase {
    /// `: connected` and the replay; its last item hands over to [`Live`].
    Replay(Pin<Box<dyn Stream<Item = Replayed> + Send>>),
    Live(Live),
    /// The closing frame (if any) is out, or the replay could not finish.
    Done,
}

/// What the replay yields.
enum Replayed {
    Frame(Bytes),
    /// The replay is out: live frames from here.
    Live(Live),
}

/// What the live phase keeps between wake-ups.
struct Live {
    /// The last event the client has (replayed, sent live or written
    /// directly by the dispatcher); live frames at or below it are the
    /// replay's overlap and are skipped.
    cursor: u64,
    /// After a retained snapshot: the events it sent, skipped by number
    /// (a snapshot is not a page of history: events up to its head that
    /// were not retained are not in it). Emptied once past them.
    sent_in_snapshot: Vec<u64>,
    /// While a resume's replay was cut short (a revocation or an overflow
    /// during it): the point up to which the client has every event.
    replayed_through: Option<u64>,
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.phase {
                Phase::Replay(replay) => match ready!(replay.as_mut().poll_next(cx)) {
                    Some(Replayed::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Some(Replayed::Live(live)) => this.phase = Phase::Live(live),
                    None => this.phase = Phase::Done,
                },
                Phase::Live(live) => {
                    let sub = &this.guard.subscriber;
                    // With nothing left to skip, events after `cursor` may go
                    // to the connection directly while this waits (see
                    // `crate::queue`).
                    let idle_after = live.sent_in_snapshot.is_empty().then_some(live.cursor);
                    let drained = ready!(sub.queue.poll_drain(cx, now_ms(), idle_after));
                    // Events the dispatcher wrote directly were sent.
                    live.cursor = live.cursor.max(sub.queue.written_through());
                    match drained {
                        Drained::Frames(frames) => {
                            if let Some(out) = live.take_frames(sub, frames) {
                                return Poll::Ready(Some(Ok(out)));
                            }
                            // Everything was overlap: wait again.
                        }
                        Drained::Closed(reason) => {
                            let last = live.closing_frame(sub, reason);
                            this.phase = Phase::Done;
                            return Poll::Ready(last.map(Ok));
                        }
                    }
                }
                Phase::Done => return Poll::Ready(None),
            }
        }
    }
}

impl Live {
    /// The frames to write out of a drained batch, skipping the replay's
    /// overlap. A lone frame goes out as the shared frame itself; only a
    /// backlog is copied into one buffer for one write.
    fn take_frames(&mut self, sub: &Subscriber, frames: Vec<(u64, Bytes)>) -> Option<Bytes> {
        let mut single: Option<Bytes> = None;
        let mut batch = BytesMut::new();
        let mut live = 0;
        for (seq, frame) in frames {
            if let Some(&last) = self.sent_in_snapshot.last() {
                if self.sent_in_snapshot.contains(&seq) {
                    continue;
                }
                if seq > last {
                    // Past the snapshot: nothing more to skip.
                    self.sent_in_snapshot = Vec::new();
                }
            }
            // seq 0 marks comments (keepalives).
            if seq == 0 || seq > self.cursor {
                self.cursor = self.cursor.max(seq);
                live += usize::from(seq > 0);
                if single.is_none() && batch.is_empty() {
                    single = Some(frame);
                } else {
                    if let Some(first) = single.take() {
                        batch.put_slice(&first);
                    }
                    batch.put_slice(&frame);
                }
            }
        }
        sub.queue.count_sent(live);
        single.or_else(|| (!batch.is_empty()).then(|| batch.freeze()))
    }

    /// The last frame of a stream the hub closed, if one is due.
    fn closing_frame(&self, sub: &Subscriber, reason: CloseReason) -> Option<Bytes> {
        if reason != CloseReason::Overflow {
            return reason.final_frame();
        }
        // The client resumes after the last event it received, even if it
        // received none yet: the frame moves its `Last-Event-ID` there.
        // Frames leave the queue in order, so the first one the queue still
        // held when it overflowed is the first the client misses; frames at
        // or below `cursor` were sent (by the replay or live). A replay cut
        // short by the overflow was sent only up to its last flushed page.
        let at = self
            .replayed_through
            .unwrap_or_else(|| sub.queue.resume_after().unwrap_or(self.cursor).max(self.cursor));
        Some(encode_control_at(
            &at.to_string(),
            "overflow",
            &format!("{{\"reason\":\"queue_full\",\"last_event_id\":\"{at}\"}}"),
        ))
    }
}

/// `: connected`, then the retained snapshot, the missed events or the
/// missed audit records, then [`Replayed::Live`]. Ends without it when the
/// replay cannot be completed: going live would skip what it could not
/// read, so the stream ends and the client resumes from what it received.
fn replay(hub: Arc<HubInner>, sub: Arc<Subscriber>, start: Start, live_after: u64) -> impl Stream<Item = Replayed> {
    async_stream::stream! {
        yield Replayed::Frame(encode_comment("connected"));

        let mut out = BytesMut::new();
        let mut sent_in_snapshot: Vec<u64> = Vec::new();
        let mut replayed_through: Option<u64> = None;
        let cursor = match start {
            Start::AuditAfter(after) => {
                // The head is read before the page: a record added between
                // the two is in the page or, if after it, in the queue.
                let head = hub.audit.head();
                // Older records are read from the store: off the workers.
                let (log, reader) = (hub.clone(), sub.clone());
                let read = tokio::task::spawn_blocking(move || {
                    // A resume sends everything after its id, however far
                    // it has to look.
                    let window = crate::audit::Window::unbounded(usize::MAX);
                    let tenant = crate::audit_stream::tenant_scope(&reader.principal);
                    log.audit.page(after, window, tenant, |r| crate::audit_stream::visible_to(&reader.principal, r))
                });
                let Ok(Ok(crate::audit::Scanned { records, .. })) = read.await else {
                    return;
                };
                sub.queue.count_sent(records.len());
                for r in &records {
                    out.put_slice(&crate::audit_stream::frame(r));
                }
                records.last().map_or(after, |r| r.id).max(head)
            }
            Start::Retained | Start::Resume(ResumePoint::Reset) => {
                if matches!(start, Start::Resume(_)) {
                    out.put_slice(&encode_control("reset", "{\"reason\":\"history_gap\"}"));
                }
                let page = hub.history.retained(sub.principal.tenant.as_deref(), &sub.selectors).await;
                for e in page.events.iter().filter(|e| is_visible(&sub.principal, &sub.selectors, e)) {
                    out.put_slice(&e.frame);
                    sent_in_snapshot.push(e.seq);
                }
                sub.queue.count_sent(sent_in_snapshot.len());
                // Events committed before the stream was registered and
                // dispatched after are not live for it.
                live_after
            }
            Start::Resume(ResumePoint::After(mut after)) => loop {
                if replayed_through.is_none() {
                    replayed_through = Some(after);
                }
                let page = hub.history.since(after, PAGE).await;
                let mut replayed = 0;
                for e in page.events.iter().filter(|e| is_visible(&sub.principal, &sub.selectors, e)) {
                    out.put_slice(&e.frame);
                    replayed += 1;
                }
                sub.queue.count_sent(replayed);
                for seq in &page.skipped {
                    // A damaged record is skipped alone, and said so.
                    hub.audit_stream("record_unreadable", &sub, serde_json::json!({"seq": seq}));
                }
                if !page.more {
                    break page.head;
                }
                if page.head <= after {
                    // The history could not read on (a cluster node that
                    // lost JetStream mid-replay).
                    if !out.is_empty() {
                        yield Replayed::Frame(out.split().freeze());
                    }
                    return;
                }
                after = page.head;
                if out.len() > 256 * 1024 {
                    yield Replayed::Frame(out.split().freeze());
                    replayed_through = Some(after);
                }
                if sub.queue.closed().is_some() {
                    break page.head;
                }
            },
        };
        // A revocation during the replay wins over the replay.
        let replay_sent = sub.queue.closed().is_none();
        if replay_sent && !out.is_empty() {
            yield Replayed::Frame(out.split().freeze());
        }
        if replay_sent {
            // From here on every event is in the queue, and the queue knows
            // where an overflow leaves the client.
            replayed_through = None;
        }
        yield Replayed::Live(Live { cursor, sent_in_snapshot, replayed_through });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle stream holds its body's state for as long as it is open;
    /// this keeps the live phase from growing back to a generator's size
    /// (528 bytes when the whole body was one; 96 now).
    #[test]
    fn an_idle_streams_body_state_stays_small() {
        let size = std::mem::size_of::<EventStream>();
        assert!(size <= 128, "the body's state is {size} bytes");
    }
}
