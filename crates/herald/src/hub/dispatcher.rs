//! Fan-out off the publish path.
//!
//! The history hands every committed event to its sink, in `seq` order,
//! while the publisher waits for its answer. Offering an event to 10,000
//! streams (the visibility check, a queue push and a wake-up each) takes
//! milliseconds, and a publisher must not wait for it: its event is
//! already durable and in history, which is all its answer promises. So the
//! sink only hands the events to one dispatch thread, through a channel
//! that keeps their order; the thread offers them to the registry.
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
use crate::registry::Registry;
use crate::stats::HubStats;
use herald_core::Event;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
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
    std::thread::Builder::new()
        .name("herald-dispatch".into())
        .spawn(move || {
            while let Some(events) = rx.blocking_recv() {
                let n = events.len() as i64;
                dispatch(&registry, &stats, &events);
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
fn dispatch(registry: &Registry, stats: &HubStats, events: &[Arc<Event>]) {
    let mut delivered = 0;
    for e in events {
        let started = std::time::Instant::now();
        let n = registry.dispatch(e, crate::clock::now_ms());
        stats.dispatched(e.audience.tenant.as_deref(), n, started.elapsed());
        delivered += n;
    }
    metrics::counter!("herald_deliveries_total").increment(delivered as u64);
}
