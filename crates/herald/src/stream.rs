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
use herald_core::frame::{encode_comment, encode_control, encode_control_at};
use herald_core::is_visible;
use std::convert::Infallible;
use std::sync::Arc;

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
    let guard = StreamGuard {
        hub: hub.clone(),
        subscriber: sub.clone(),
        slot: Some(slot),
    };
    let s = async_stream::stream! {
        // The guard lives (in the stream's state) as long as the stream.
        // Not moved into a local: the state would hold it twice, and
        // every idle stream holds that state.
        let _ = &guard;
        yield Ok::<Bytes, Infallible>(encode_comment("connected"));

        let mut out = BytesMut::new();
        // Live frames up to `cursor` were in the replay. A retained snapshot
        // is not a page of history (events up to its head that were not
        // retained are not in it), so after one only the very events it
        // sent are skipped, by number.
        let mut sent_in_snapshot: Vec<u64> = Vec::new();
        // While a resume's replay is being sent: the point up to which the
        // client has every event (set only until the replay is out).
        let mut replayed_through: Option<u64> = None;
        let mut cursor = match start {
            Start::AuditAfter(after) => {
                // The head is read before the page: a record added between
                // the two is in the page or, if after it, in the queue.
                let head = hub.audit.head();
                // Older records are read from the store: off the workers.
                let (log, reader) = (hub.clone(), sub.clone());
                let read = tokio::task::spawn_blocking(move || {
                    log.audit.page(after, usize::MAX, |r| crate::audit_stream::visible_to(&reader.principal, r))
                });
                let Ok(Ok(records)) = read.await else {
                    // Going live would skip the records the store could
                    // not give: end the stream instead, and the client
                    // resumes from the last record it received.
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
                    // lost JetStream mid-replay). Going live would skip the
                    // events it could not read: end the stream instead, and
                    // the client resumes from what it received.
                    if !out.is_empty() {
                        yield Ok(out.split().freeze());
                    }
                    return;
                }
                after = page.head;
                if out.len() > 256 * 1024 {
                    yield Ok(out.split().freeze());
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
            yield Ok(out.split().freeze());
        }
        if replay_sent {
            // From here on every event is in the queue, and the queue knows
            // where an overflow leaves the client.
            replayed_through = None;
        }
        // `split` leaves the spare capacity behind, sharing the replay's
        // allocation; an idle stream must not keep it.
        drop(out);

        loop {
            // With nothing left to skip, events after `cursor` may go to the
            // connection directly while this waits (see `crate::queue`).
            let idle_after = sent_in_snapshot.is_empty().then_some(cursor);
            let drained = sub.queue.drain(now_ms, idle_after).await;
            // Events the dispatcher wrote directly were sent.
            cursor = cursor.max(sub.queue.written_through());
            match drained {
                Drained::Frames(frames) => {
                    // A lone frame goes out as the shared frame itself; only
                    // a backlog is copied into one buffer for one write.
                    let mut single: Option<Bytes> = None;
                    let mut batch = BytesMut::new();
                    let mut live = 0;
                    for (seq, frame) in frames {
                        if let Some(&last) = sent_in_snapshot.last() {
                            if sent_in_snapshot.contains(&seq) {
                                continue;
                            }
                            if seq > last {
                                // Past the snapshot: nothing more to skip.
                                sent_in_snapshot = Vec::new();
                            }
                        }
                        // seq 0 marks comments (keepalives).
                        if seq == 0 || seq > cursor {
                            cursor = cursor.max(seq);
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
                    if let Some(frame) = single {
                        yield Ok(frame);
                    } else if !batch.is_empty() {
                        yield Ok(batch.freeze());
                    }
                }
                Drained::Closed(CloseReason::Overflow) => {
                    // The client resumes after the last event it received,
                    // even if it received none yet: the frame moves its
                    // `Last-Event-ID` there.
                    // Frames leave the queue in order, so the first one the
                    // queue still held when it overflowed is the first the
                    // client misses; frames at or below `cursor` were sent
                    // (by the replay or live). A replay cut short by the
                    // overflow was sent only up to its last flushed page.
                    let at = replayed_through
                        .unwrap_or_else(|| sub.queue.resume_after().unwrap_or(cursor).max(cursor));
                    yield Ok(encode_control_at(
                        &at.to_string(),
                        "overflow",
                        &format!("{{\"reason\":\"queue_full\",\"last_event_id\":\"{at}\"}}"),
                    ));
                    break;
                }
                Drained::Closed(reason) => {
                    if let Some(f) = reason.final_frame() {
                        yield Ok(f);
                    }
                    break;
                }
            }
        }
    };
    Body::from_stream(s)
}
