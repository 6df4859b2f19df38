//! Micro-benchmarks of the rules on the delivery path: selector matching,
//! the visibility check, and frame encoding. `cargo bench -p herald-core`.

use herald_core::frame::encode_event;
use herald_core::{is_visible, EventDraft, Principal, Selector, SelectorSet, SessionKey};
use serde_json::json;

fn main() {
    divan::main();
}

#[divan::bench(args = ["orders.42", "orders.*", "orders.>", "https://shop.example/orders/{id}", "*"])]
fn selector_match(bencher: divan::Bencher, selector: &str) {
    let s = Selector::parse(selector).expect("selector");
    let topic = if selector.starts_with("https") {
        "https://shop.example/orders/42"
    } else {
        "orders.42"
    };
    bencher.bench(|| divan::black_box(&s).matches(divan::black_box(topic)));
}

fn event(audience: serde_json::Value) -> herald_core::Event {
    EventDraft::from_json(
        &json!({"topics": ["orders.42"], "data": "x", "audience": audience}),
        &SessionKey::new([1; 32]),
        &Default::default(),
    )
    .expect("event")
    .into_event(1, 0)
}

#[divan::bench(args = ["public", "user", "tenant+roles"])]
fn visibility(bencher: divan::Bencher, case: &str) {
    let audience = match case {
        "public" => json!("public"),
        "user" => json!({"users": ["u1", "u2", "u3"]}),
        _ => json!({"tenant": "acme", "roles": ["ops", "dev"]}),
    };
    let e = event(audience);
    let mut p = Principal::new("u3");
    p.tenant = Some("acme".into());
    p.roles = vec!["dev".into()];
    let subscription = SelectorSet::parse(["orders.*"]).expect("selectors");
    bencher.bench(|| is_visible(divan::black_box(&p), &subscription, divan::black_box(&e)));
}

#[divan::bench(args = [64, 1024, 65536])]
fn frame(bencher: divan::Bencher, size: usize) {
    let data = "line\n".repeat(size / 5);
    bencher.bench(|| encode_event("42", Some("order.updated"), divan::black_box(&data), None));
}
