//! Fan-out off the publish path.
//!
//! The history hands every committed event to its sink, in `seq` order,
//! while the publisher waits for its answer. Offering an event to 10,000
//! streams (the visibility check and a socket write or a queue push each)
//! takes milliseconds, and a publisher must not wait for it: its event is
//! already durable and in history, which is all its answer promises. So the
//! sink only hands the events to one dispatch thread, through a channel
//! that keeps their order; the thread offers them to the registry.
//!
//! A large audience is split among helper threads, one per core beyond the
//! first ([`FanOut`]): an event to 10,000 idle streams is 10,000 socket
//! writes, and on one thread its last stream would wait for all the
//! others. Every part of an event is done before the next event starts.
//!
//! Nothing about delivery changes: streams see events in `seq` order (one
//! thread, one ordered channel). A stream admitted between an event's commit
//! and its dispatch still gets the event from the dispatch, so admission
//! reads the committed head ([`Registry::committed`]) right after the
//! stream is registered, and the stream skips what is at or below it: it
//! is in the replay page of a resume, and was published before a fresh
//! stream existed (see [`crate::stream`]).
//! Read-your-writes holds: a publisher that opens a stream with
//! `Last-Event-ID` after its answer finds its event in history.

use crate::history::Sink;
use crate::registry::{self, Lookup, Offered, Registry, StreamKind, Subscriber};
use crate::stats::HubStats;
use herald_core::Event;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use tokio::sync::mpsc;

/// Starts the dispatch thread and returns the sink that feeds it. The
/// thread ends when the history drops the sink.
///
/// A thread of its own, not a task: offering an event to 10,000 streams
/// is that many socket writes when they idle (see [`crate::queue`]), tens
/// of milliseconds of work that must not hold a runtime worker, where
/// publish answers and stream opens wait. On its own thread the operating
/// system shares the cores between it and the runtime, and a publish is
/// answered while a fan-out is under way.
///
/// The channel is unbounded because the sink is called under the
/// history's lock and cannot wait; it stays short because dispatch only
/// writes without waiting, faster than publishes commit. Its depth is the
/// `herald_dispatch_backlog` gauge.
pub fn spawn(registry: Arc<Registry>, stats: Arc<HubStats>) -> std::io::Result<Sink> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Arc<Event>>>();
    let backlog = Arc::new(AtomicI64::new(0));
    let waiting = backlog.clone();
    let committed = registry.clone();
    let fanout = FanOut::start()?;
    std::thread::Builder::new()
        .name("herald-dispatch".into())
        .spawn(move || {
            while let Some(events) = rx.blocking_recv() {
                let n = events.len() as i64;
                // Direct writes only while dispatch keeps up: one event
                // and nothing behind it. With a backlog every event is
                // queued, and each stream's task writes what piled up in
                // one write (coalescing), so a saturated hub catches up
                // instead of paying a write per event per stream.
                let direct = events.len() == 1 && waiting.load(Ordering::Relaxed) <= n;
                dispatch(&registry, &fanout, &stats, &events, direct);
                if let Some(last) = events.last() {
                    registry.note_dispatched(last.seq);
                }
                let left = waiting.fetch_sub(n, Ordering::Relaxed) - n;
                metrics::gauge!("herald_dispatch_backlog").set(left.max(0) as f64);
            }
        })?;
    Ok(Arc::new(move |events: &[Arc<Event>]| {
        if let Some(last) = events.last() {
            committed.note_committed(last.seq);
        }
        backlog.fetch_add(events.len() as i64, Ordering::Relaxed);
        // The thread ends only when this sink is dropped; an event sent
        // after would be lost to live streams only, and every client
        // resumes it from history.
        let _ = tx.send(events.to_vec());
    }))
}

/// Offers each event to every stream that may see it, and counts.
fn dispatch(registry: &Registry, fanout: &FanOut, stats: &HubStats, events: &[Arc<Event>], direct: bool) {
    let mut delivered = 0;
    for e in events {
        let started = std::time::Instant::now();
        let offered = std::panic::catch_unwind(AssertUnwindSafe(|| {
            fanout.offer(registry.audience(e), e, crate::clock::now_ms(), direct)
        }))
        .unwrap_or_else(|_| {
            // Which streams missed the event is unknown: every stream
            // ends as overflowed and resumes from history where it is,
            // rather than one of them going on with a gap.
            tracing::error!(seq = e.seq, "dispatch failed; every stream resumes from history");
            Offered {
                delivered: 0,
                overflowed: registry
                    .find(Lookup::All, |s| s.kind == StreamKind::Events)
                    .iter()
                    .map(|s| s.id)
                    .collect(),
            }
        });
        let n = offered.delivered;
        registry.close_overflowed(offered.overflowed);
        stats.dispatched(e.audience.tenant.as_deref(), n, started.elapsed());
        delivered += n;
    }
    metrics::counter!("herald_deliveries_total").increment(delivered as u64);
}

/// Audiences smaller than this are offered an event on the dispatch thread
/// alone: a part handed to a helper costs a thread wake-up, worth it only
/// for a few hundred socket writes or more.
const SPLIT_AT: usize = 1024;
/// Most helper threads, whatever the core count.
const MAX_HELPERS: usize = 7;

/// The dispatch thread's helpers: each takes a contiguous part of a large
/// audience, so an event's writes run on every core at once.
struct FanOut {
    helpers: Vec<std_mpsc::Sender<Part>>,
}

/// One helper's share of an event.
struct Part {
    event: Arc<Event>,
    streams: Arc<Vec<Arc<Subscriber>>>,
    range: Range<usize>,
    now_ms: u64,
    direct: bool,
    /// Where the outcome goes; dropped unanswered if the helper dies, which
    /// the dispatch thread sees as the part's end.
    done: std_mpsc::Sender<Offered>,
}

impl FanOut {
    /// One helper per core beyond the first (the dispatch thread's own).
    /// They end with the dispatch thread, which owns their channels.
    fn start() -> std::io::Result<FanOut> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut helpers = Vec::new();
        for i in 0..cores.saturating_sub(1).min(MAX_HELPERS) {
            let (tx, rx) = std_mpsc::channel::<Part>();
            std::thread::Builder::new()
                .name(format!("herald-fanout-{i}"))
                .spawn(move || {
                    while let Ok(p) = rx.recv() {
                        let _ = p
                            .done
                            .send(offer_part(&p.streams[p.range], &p.event, p.now_ms, p.direct));
                    }
                })?;
            helpers.push(tx);
        }
        Ok(FanOut { helpers })
    }

    /// Offers `event` to `streams`, split among the helpers when there are
    /// many; returns once every part is done, so the next event finds each
    /// stream's earlier events written or queued.
    fn offer(&self, streams: Vec<Arc<Subscriber>>, event: &Arc<Event>, now_ms: u64, direct: bool) -> Offered {
        if streams.len() < SPLIT_AT || self.helpers.is_empty() {
            return offer_part(&streams, event, now_ms, direct);
        }
        let len = streams.len();
        let size = len.div_ceil(self.helpers.len() + 1);
        let streams = Arc::new(streams);
        let (done, parts) = std_mpsc::channel();
        let mut total = Offered::default();
        for (i, helper) in self.helpers.iter().enumerate() {
            let range = ((i + 1) * size).min(len)..((i + 2) * size).min(len);
            if range.is_empty() {
                break;
            }
            let part = Part {
                event: event.clone(),
                streams: streams.clone(),
                range,
                now_ms,
                direct,
                done: done.clone(),
            };
            if let Err(std_mpsc::SendError(part)) = helper.send(part) {
                // A helper that is gone leaves its part to this thread.
                total.merge(offer_part(&part.streams[part.range], event, now_ms, direct));
            }
        }
        drop(done);
        total.merge(offer_part(&streams[..size.min(len)], event, now_ms, direct));
        while let Ok(offered) = parts.recv() {
            total.merge(offered);
        }
        total
    }
}

/// [`registry::offer`]; if it panics, every stream of the part counts as
/// overflowed: each is closed and resumes from history exactly where it
/// is, instead of going on without this event.
fn offer_part(streams: &[Arc<Subscriber>], event: &Event, now_ms: u64, direct: bool) -> Offered {
    std::panic::catch_unwind(AssertUnwindSafe(|| registry::offer(streams, event, now_ms, direct))).unwrap_or_else(
        |_| {
            tracing::error!(
                seq = event.seq,
                streams = streams.len(),
                "dispatch failed; those streams resume from history"
            );
            Offered {
                delivered: 0,
                overflowed: streams.iter().map(|s| s.id).collect(),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Drained, SubscriberQueue};
    use crate::registry::{Caps, StreamKind};
    use herald_core::{EventDraft, Principal, SelectorSet, SessionKey};
    use std::future::Future;

    fn subscriber(registry: &Registry, i: usize, queue_events: usize) -> Arc<Subscriber> {
        Arc::new(Subscriber {
            id: registry.next_id(),
            principal: Arc::new(Principal::new(format!("u{i}"))),
            selectors: SelectorSet::parse(["t"]).expect("selector"),
            ip: [127, 0, 0, 1].into(),
            opened_at_ms: 0,
            queue: SubscriberQueue::new(queue_events, 1 << 20, 0),
            kind: StreamKind::Events,
            protocol: "native",
            connection: None,
            extension: None,
        })
    }

    fn event(seq: u64) -> Arc<Event> {
        let draft = EventDraft::from_json(
            &serde_json::json!({"topics": ["t"], "data": "x", "audience": "public"}),
            &SessionKey::new([1; 32]),
            &Default::default(),
        )
        .expect("event");
        Arc::new(draft.into_event(seq, 0))
    }

    #[test]
    fn a_split_audience_gets_every_event_once_and_in_order() {
        let registry = Registry::new(Caps {
            per_session: 10,
            evict_oldest_in_session: true,
            per_account: 10,
            per_ip: usize::MAX,
            hub_total: usize::MAX,
            audit_per_session: 10,
        });
        // Helpers whatever this machine's cores: the split is what is tested.
        let helpers = (0..3)
            .map(|_| {
                let (tx, rx) = std_mpsc::channel::<Part>();
                std::thread::spawn(move || {
                    while let Ok(p) = rx.recv() {
                        let _ = p
                            .done
                            .send(offer_part(&p.streams[p.range], &p.event, p.now_ms, p.direct));
                    }
                });
                tx
            })
            .collect();
        let fanout = FanOut { helpers };
        let n = SPLIT_AT * 3 + 7;
        // The last stream's queue holds one event: the second overflows it.
        let streams: Vec<_> = (0..n)
            .map(|i| subscriber(&registry, i, if i == n - 1 { 1 } else { 8 }))
            .collect();
        let first = fanout.offer(streams.clone(), &event(1), 0, true);
        assert_eq!((first.delivered, first.overflowed.len()), (n, 0));
        let second = fanout.offer(streams.clone(), &event(2), 0, true);
        assert_eq!(second.delivered, n - 1);
        assert_eq!(second.overflowed, [streams[n - 1].id]);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        for s in &streams[..n - 1] {
            let drained = std::pin::pin!(s.queue.drain(|| 0, None)).poll(&mut cx);
            let std::task::Poll::Ready(Drained::Frames(frames)) = drained else {
                panic!("stream {} got its events", s.id);
            };
            assert_eq!(frames.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [1, 2]);
        }
    }
}
