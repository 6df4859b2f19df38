//! Dispatch cost: an event for one user among N open streams should cost
//! the same whatever N is (the account index), while a broadcast grows with
//! N. `cargo bench -p herald --bench dispatch`.

use herald::queue::SubscriberQueue;
use herald::registry::{Caps, Lookup, Registry, StreamKind, Subscriber};
use herald_core::{EventDraft, Principal, SelectorSet, SessionKey};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    divan::main();
}

fn registry(n: usize) -> (Arc<Registry>, Vec<herald::registry::StreamSlot>) {
    let r = Arc::new(Registry::new(Caps {
        per_session: 10,
        evict_oldest_in_session: true,
        per_account: 20,
        per_ip: usize::MAX,
        hub_total: usize::MAX,
        audit_per_session: 10,
    }));
    let mut slots = Vec::with_capacity(n);
    for i in 0..n {
        let s = Subscriber {
            id: r.next_id(),
            principal: Arc::new(Principal::new(format!("u{i}"))),
            selectors: SelectorSet::parse(["bench"]).expect("selector"),
            ip: [127, 0, 0, 1].into(),
            opened_at_ms: 0,
            queue: SubscriberQueue::new(1 << 20, 1 << 30, 0),
            kind: StreamKind::Events,
            protocol: "native",
            connection: None,
            extension: None,
        };
        slots.push(r.admit(s).map(|a| a.slot).unwrap_or_else(|_| panic!("admitted")));
    }
    (r, slots)
}

fn event(audience: serde_json::Value) -> herald_core::Event {
    EventDraft::from_json(
        &json!({"topics": ["bench"], "data": "x", "audience": audience}),
        &SessionKey::new([1; 32]),
        &Default::default(),
    )
    .expect("event")
    .into_event(1, 0)
}

#[divan::bench(args = [100, 1000, 15000])]
fn one_user_among(bencher: divan::Bencher, n: usize) {
    let (r, _slots) = registry(n);
    let e = event(json!({"users": ["u7"]}));
    bencher.bench(|| r.dispatch(divan::black_box(&e), 0));
}

#[divan::bench(args = [100, 1000, 15000])]
fn broadcast_to(bencher: divan::Bencher, n: usize) {
    let (r, _slots) = registry(n);
    let e = event(json!("public"));
    // Every queue is emptied before each dispatch (untimed), as the
    // stream writers would: otherwise the queues grow for the whole run and
    // the figure measures their reallocation.
    let subscribers = r.find(Lookup::All, |_| true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let empty = || {
        rt.block_on(async {
            for s in &subscribers {
                let _ = tokio::time::timeout(Duration::ZERO, s.queue.drain(|| 0, None)).await;
            }
        })
    };
    bencher
        .with_inputs(empty)
        .bench_local_values(|()| r.dispatch(divan::black_box(&e), 0));
}
