//! Publishing a run's events, in one of two ways:
//!
//! * `rate` (open loop): each event falls due at its time, whatever the
//!   answers, and a pool of `--publishers` keep-alive connections sends
//!   them: a slow answer does not delay the next events.
//! * `wait` (closed loop): one publisher on one connection sends an event,
//!   waits for its answer, and sends the next no earlier than `1/--rate`
//!   after the previous one, as a backend's request handler does. The
//!   answer's latency is then what that handler waits.

use crate::client::Conn;
use crate::tally::{self, Address};
use crate::target::Target;
use crate::{histogram, now_ns, PublisherMode, RunArgs, Scenario};
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The topic every scenario publishes on.
pub const TOPIC: &str = "bench";

/// What publishing took.
pub struct Published {
    /// From the first event due to the last answer.
    pub secs: f64,
    /// Publishes not answered with a success.
    pub failed: usize,
    /// Answer latency (µs) of the successful ones: from sending the request
    /// to the end of its answer.
    pub latency: Histogram<u64>,
}

/// Whom event `seq` is addressed to: in `per-user`, one account picked by a
/// fixed spread of the numbers (the same events reach the same streams on
/// every target); in `tenants`, tenant `seq mod tenants`; else everyone.
pub fn addressee(scenario: Scenario, seq: usize, streams: usize, tenants: usize) -> Address {
    match scenario {
        Scenario::PerUser => Address::User((spread(seq as u64) % streams.max(1) as u64) as usize),
        Scenario::Tenants => Address::Tenant(seq % tenants.max(1)),
        _ => Address::Public,
    }
}

/// SplitMix64's finaliser: consecutive numbers land far apart.
fn spread(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Sends event `seq` on `conn` (opened first when there is none, outside
/// the timing) and returns its answer latency in µs, `None` if it failed.
async fn send_one(target: &Target, args: &RunArgs, seq: usize, conn: &mut Option<Conn>) -> Option<u64> {
    let to = addressee(args.scenario, seq, args.streams, args.tenants);
    if conn.is_none() {
        let url = target.publish(TOPIC, "", to).url;
        *conn = Conn::open(&url, None, false).await.ok();
    }
    let c = conn.as_mut()?;
    let sent = now_ns();
    let req = target.publish(TOPIC, &tally::payload(seq, sent, to, args.payload), to);
    match c.send(&req).await {
        Ok(r) => {
            let good = r.status().is_success();
            let whole = r.into_body().collect().await.is_ok();
            (good && whole).then(|| (now_ns().saturating_sub(sent) / 1000).max(1))
        }
        Err(_) => {
            *conn = None;
            None
        }
    }
}

/// Publishes `--events` events as `--publisher` says.
///
/// The publishers run on a runtime of their own, on threads of their own:
/// on the readers' runtime an answer would wait behind the thousands of
/// stream reads its own event set off, and the publish latency measured
/// would be this load generator's queue, not the server's answer.
pub async fn publish(target: Arc<Target>, args: Arc<RunArgs>) -> Published {
    let events = args.events;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("publishers".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build();
        match rt {
            Ok(rt) => {
                let _ = tx.send(rt.block_on(publish_here(target, args)));
            }
            Err(e) => eprintln!("publisher runtime: {e}"),
        }
    });
    match (spawned, rx.await) {
        (Ok(_), Ok(published)) => published,
        _ => Published {
            secs: 0.0,
            // Nothing was published.
            failed: events,
            latency: histogram(),
        },
    }
}

/// [`publish`], on the publishers' runtime.
async fn publish_here(target: Arc<Target>, args: Arc<RunArgs>) -> Published {
    let t0 = Instant::now();
    let (failed, latency) = match args.publisher {
        PublisherMode::Wait => waiting(&target, &args).await,
        PublisherMode::Rate => pooled(target, args.clone()).await,
    };
    Published {
        secs: t0.elapsed().as_secs_f64(),
        failed,
        latency,
    }
}

/// One publisher, one answer at a time.
async fn waiting(target: &Target, args: &RunArgs) -> (usize, Histogram<u64>) {
    let mut latency = histogram();
    let mut failed = 0;
    let mut conn = None;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.001)));
    // A late answer pushes the schedule back instead of being made up for
    // with a burst: the publisher never has two events outstanding.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0..args.events {
        if args.rate > 0.0 {
            tick.tick().await;
        }
        match send_one(target, args, seq, &mut conn).await {
            Some(us) => {
                let _ = latency.record(us);
            }
            None => failed += 1,
        }
    }
    (failed, latency)
}

/// Events due at `--rate`, sent by whichever of `--publishers` is free.
async fn pooled(target: Arc<Target>, args: Arc<RunArgs>) -> (usize, Histogram<u64>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<usize>(args.events.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let latency = Arc::new(Mutex::new(histogram()));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.publishers.max(1) {
        let (rx, t, a, pl, pf) = (
            rx.clone(),
            target.clone(),
            args.clone(),
            latency.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut conn: Option<Conn> = None;
            loop {
                let Some(seq) = rx.lock().await.recv().await else {
                    return;
                };
                match send_one(&t, &a, seq, &mut conn).await {
                    Some(us) => {
                        let _ = pl.lock().record(us);
                    }
                    None => {
                        pf.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for seq in 0..args.events {
        if args.rate > 0.0 {
            tick.tick().await;
        }
        let _ = tx.send(seq).await;
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let latency = latency.lock().clone();
    (failed.load(Ordering::Relaxed), latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_events_reach_many_accounts() {
        let mut hit = std::collections::HashSet::new();
        for seq in 0..200 {
            let Address::User(u) = addressee(Scenario::PerUser, seq, 100, 0) else {
                panic!("per-user events go to one account");
            };
            assert!(u < 100);
            hit.insert(u);
        }
        assert!(hit.len() > 50, "{} accounts", hit.len());
        assert_eq!(addressee(Scenario::Tenants, 23, 100, 10), Address::Tenant(3));
        assert_eq!(addressee(Scenario::Broadcast, 23, 100, 10), Address::Public);
    }
}
