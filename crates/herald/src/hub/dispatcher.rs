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
use bytes::{Bytes, BytesMut};
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
            while let Some(mut events) = rx.blocking_recv() {
                // What else is already waiting joins this round: a round
                // that started late then catches up in one write per
                // stream for the events it finds, instead of a write per
                // event per stream.
                while events.len() < ROUND_MAX {
                    match rx.try_recv() {
                        Ok(more) => events.extend(more),
                        Err(_) => break,
                    }
                }
                let n = events.len() as i64;
                dispatch(&registry, &fanout, &stats, &events);
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

/// Most events one round of dispatch takes from the channel.
const ROUND_MAX: usize = 1024;
/// Most bytes of frames written to a stream in one run.
const RUN_BYTES: usize = 256 * 1024;

/// Consecutive events that exactly the same streams may see (same topics,
/// same audience: what visibility is decided on), offered together.
struct Run {
    /// Each event's `seq` and frame.
    frames: Vec<(u64, Bytes)>,
    /// The frames end to end: one write for a stream that idles.
    joined: Bytes,
}

impl Run {
    /// The runs of `events`, in order, each with its events.
    fn split(events: &[Arc<Event>]) -> Vec<(&[Arc<Event>], Run)> {
        let mut runs = Vec::new();
        let mut start = 0;
        while start < events.len() {
            let first = &events[start];
            let mut end = start + 1;
            let mut bytes = first.frame.len();
            while let Some(next) = events.get(end) {
                let same = next.topics == first.topics && next.audience == first.audience;
                if !same || bytes + next.frame.len() > RUN_BYTES {
                    break;
                }
                bytes += next.frame.len();
                end += 1;
            }
            let part = &events[start..end];
            let joined = match part {
                [one] => one.frame.clone(),
                _ => {
                    let mut joined = BytesMut::with_capacity(bytes);
                    for e in part {
                        joined.extend_from_slice(&e.frame);
                    }
                    joined.freeze()
                }
            };
            let frames = part.iter().map(|e| (e.seq, e.frame.clone())).collect();
            runs.push((part, Run { frames, joined }));
            start = end;
        }
        runs
    }
}

/// Offers each event to every stream that may see it, and counts.
fn dispatch(registry: &Registry, fanout: &FanOut, stats: &HubStats, events: &[Arc<Event>]) {
    let mut delivered = 0;
    for (part, run) in Run::split(events) {
        let e = &part[0];
        let started = std::time::Instant::now();
        let run = Arc::new(run);
        let offered = std::panic::catch_unwind(AssertUnwindSafe(|| {
            fanout.offer(registry.audience(e), &run, crate::clock::now_ms())
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
        let took = started.elapsed();
        for e in part {
            stats.dispatched(e.audience.tenant.as_deref(), n / part.len(), took);
        }
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
    run: Arc<Run>,
    streams: Arc<Vec<Arc<Subscriber>>>,
    range: Range<usize>,
    now_ms: u64,
    /// Where the outcome goes; dropped unanswered if the helper dies, which
    /// the dispatch thread sees as the part's end.
    done: std_mpsc::Sender<Offered>,
}

impl FanOut {
    /// One helper per core beyond the first (the dispatch thread's own).
    /// They end with the dispatch thread, which owns their channels.
    fn start() -> std::io::Result<FanOut> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        FanOut::with_helpers(cores.saturating_sub(1).min(MAX_HELPERS))
    }

    /// A fan-out with `count` helper threads.
    fn with_helpers(count: usize) -> std::io::Result<FanOut> {
        let mut helpers = Vec::new();
        for i in 0..count {
            let (tx, rx) = std_mpsc::channel::<Part>();
            std::thread::Builder::new()
                .name(format!("herald-fanout-{i}"))
                .spawn(move || {
                    while let Ok(p) = rx.recv() {
                        let _ = p.done.send(offer_part(&p.streams[p.range], &p.run, p.now_ms));
                    }
                })?;
            helpers.push(tx);
        }
        Ok(FanOut { helpers })
    }

    /// Offers `run` to `streams`, split among the helpers when there are
    /// many; returns once every part is done, so the next run finds each
    /// stream's earlier events written or queued.
    fn offer(&self, streams: Vec<Arc<Subscriber>>, run: &Arc<Run>, now_ms: u64) -> Offered {
        if streams.len() < SPLIT_AT || self.helpers.is_empty() {
            return offer_part(&streams, run, now_ms);
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
                run: run.clone(),
                streams: streams.clone(),
                range,
                now_ms,
                done: done.clone(),
            };
            if let Err(std_mpsc::SendError(part)) = helper.send(part) {
                // A helper that is gone leaves its part to this thread.
                total.merge(offer_part(&part.streams[part.range], run, now_ms));
            }
        }
        drop(done);
        total.merge(offer_part(&streams[..size.min(len)], run, now_ms));
        while let Ok(offered) = parts.recv() {
            total.merge(offered);
        }
        total
    }
}

/// [`registry::offer`]; if it panics, every stream of the part counts as
/// overflowed: each is closed and resumes from history exactly where it
/// is, instead of going on without this event.
fn offer_part(streams: &[Arc<Subscriber>], run: &Run, now_ms: u64) -> Offered {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        registry::offer(streams, &run.frames, &run.joined, now_ms)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(
            seq = run.frames.first().map_or(0, |(seq, _)| *seq),
            streams = streams.len(),
            "dispatch failed; those streams resume from history"
        );
        Offered {
            delivered: 0,
            overflowed: streams.iter().map(|s| s.id).collect(),
        }
    })
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

    fn draft(topic: &str, audience: serde_json::Value) -> EventDraft {
        EventDraft::from_json(
            &serde_json::json!({"topics": [topic], "data": "x", "audience": audience}),
            &SessionKey::new([1; 32]),
            &Default::default(),
        )
        .expect("event")
    }

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(draft("t", serde_json::json!("public")).into_event(seq, 0))
    }

    #[test]
    fn runs_hold_consecutive_events_for_the_same_streams() {
        let events: Vec<Arc<Event>> = [
            draft("t", serde_json::json!("public")),
            draft("t", serde_json::json!("public")),
            draft("u", serde_json::json!("public")),
            draft("u", serde_json::json!({"users": ["a"]})),
            draft("u", serde_json::json!({"users": ["a"]})),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, d)| Arc::new(d.into_event(i as u64 + 1, 0)))
        .collect();
        let runs = Run::split(&events);
        let seqs: Vec<Vec<u64>> = runs
            .iter()
            .map(|(_, r)| r.frames.iter().map(|(s, _)| *s).collect())
            .collect();
        assert_eq!(seqs, [vec![1, 2], vec![3], vec![4, 5]]);
        let (_, first) = &runs[0];
        assert_eq!(first.joined.len(), events[0].frame.len() + events[1].frame.len());
        assert!(first.joined.starts_with(&events[0].frame) && first.joined.ends_with(&events[1].frame));
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
        let fanout = FanOut::with_helpers(3).expect("helper threads");
        let n = SPLIT_AT * 3 + 7;
        // The last stream's queue holds one event: the second overflows it.
        let streams: Vec<_> = (0..n)
            .map(|i| subscriber(&registry, i, if i == n - 1 { 1 } else { 8 }))
            .collect();
        let run = |seq| Arc::new(Run::split(&[event(seq)]).remove(0).1);
        let first = fanout.offer(streams.clone(), &run(1), 0);
        assert_eq!((first.delivered, first.overflowed.len()), (n, 0));
        let second = fanout.offer(streams.clone(), &run(2), 0);
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
