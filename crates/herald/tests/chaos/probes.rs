//! Probes run during the chaos, bypassing the proxy to aim at chosen nodes:
//!
//! * **Token races**: a single-use SSE token minted through the proxy (on
//!   whichever node) is redeemed at the same moment on two different nodes;
//!   exactly one stream may open, the other must be `401 token_used`.
//! * **Cap probes**: one account tries to hold `per_account + 1` streams
//!   spread over every node; at most `per_account` may be admitted.
//!
//! A sample is skipped when a node it depends on was killed or paused
//! while it ran (the scheduler's generations say so), or when a request
//! got no answer at all (nothing can be concluded from a timeout). While a
//! NATS server is down, a `503` instead of the expected refusal is only
//! noted (the cluster state may be briefly unreachable); admitting too
//! much is a violation whatever happened.

use super::model::Principal;
use super::rng::Rng;
use super::sse::{open, query, Open};
use super::world::{bump, mint_token, user_jwt, NodeState, World, ANSWER};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How an attempt to open a stream ended, for reports.
fn outcome(o: &Open) -> String {
    match o {
        Open::Stream(_) => "opened".into(),
        Open::Refused(s, code, message) => format!("{s} {code}: {message}"),
        Open::BadStart(w) | Open::Failed(w) => format!("no answer ({w})"),
    }
}

/// A fresh account for one sample, so no earlier sample's places or
/// tokens count against it.
fn probe_principal(tenant: &str, sub: String, sid: String) -> Principal {
    Principal {
        tenant: tenant.into(),
        sub,
        sid,
        roles: Vec::new(),
        may_subscribe: vec!["orders.>".into()],
        selectors: vec!["orders.>".into()],
    }
}

/// Sleeps `d` unless `stop` comes first (`false` then).
async fn nap(stop: &CancellationToken, d: std::time::Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Races SSE token redemptions until `stop`.
pub async fn token_races(world: Arc<World>, mut rng: Rng, stop: CancellationToken) {
    let mut n = 0u64;
    while nap(&stop, rng.millis(1500, 3500)).await {
        n += 1;
        let up = world.up_nodes();
        if up.len() < 2 {
            bump(&world.stats.token_races_skipped);
            continue;
        }
        let a = *rng.pick(&up);
        let others: Vec<usize> = up.iter().copied().filter(|&i| i != a).collect();
        let b = *rng.pick(&others);
        let (ga, gb) = (world.node(a).1, world.node(b).1);
        let nats = world.nats_whole();
        let p = probe_principal("acme", format!("racer-{n}"), format!("rs-{n}"));
        let jwt = user_jwt(&p);
        let Ok(token) = mint_token(&world.http, &world.proxy, &jwt, &p.may_subscribe).await else {
            bump(&world.stats.token_races_skipped);
            continue;
        };
        let q = query(&p.selectors, Some(&token));
        let url_a = format!("{}/v1/events?{q}", world.direct[a]);
        let url_b = format!("{}/v1/events?{q}", world.direct[b]);
        let (ra, rb) = tokio::join!(
            open(&world.http, &url_a, None, None, ANSWER),
            open(&world.http, &url_b, None, None, ANSWER)
        );
        let undisturbed = world.node(a) == (NodeState::Up, ga) && world.node(b) == (NodeState::Up, gb);
        let answered = [&ra, &rb]
            .iter()
            .all(|o| matches!(o, Open::Stream(_) | Open::Refused(..)));
        if !undisturbed || !answered {
            bump(&world.stats.token_races_skipped);
            continue;
        }
        bump(&world.stats.token_races);
        let opened = [&ra, &rb].iter().filter(|o| matches!(o, Open::Stream(_))).count();
        let used = [&ra, &rb]
            .iter()
            .filter(|o| matches!(o, Open::Refused(401, code, _) if code == "token_used"))
            .count();
        if opened != 1 || used != 1 {
            let what = format!(
                "token race #{n}: one SSE token minted through the proxy, redeemed at once on h{a} ({}) and h{b} ({}); exactly one must open and the other be 401 token_used",
                outcome(&ra),
                outcome(&rb)
            );
            if opened > 1 || (nats.is_some() && world.nats_whole() == nats) {
                world.violation(what);
            } else {
                world.note(format!("{what} (a NATS server was down)"));
            }
        }
    }
}

/// Probes the per-account cap until `stop`.
pub async fn cap_probes(world: Arc<World>, mut rng: Rng, stop: CancellationToken, per_account: usize) {
    let mut n = 0u64;
    while nap(&stop, rng.millis(1500, 3000)).await {
        n += 1;
        let before = world.nodes();
        if before.iter().any(|(s, _)| *s != NodeState::Up) {
            bump(&world.stats.cap_probes_skipped);
            continue;
        }
        let nats = world.nats_whole();
        let p = probe_principal("globex", format!("capper-{n}"), format!("cs-{n}"));
        let jwt = user_jwt(&p);
        let url = |i: usize| format!("{}/v1/events?{}", world.direct[i], query(&p.selectors, None));
        // Every node, then more on random ones, one past the cap.
        let mut targets: Vec<usize> = (0..world.direct.len()).collect();
        while targets.len() <= per_account {
            targets.push(rng.range(0, world.direct.len() as u64) as usize);
        }
        targets.truncate(per_account + 1);
        let concurrent = n % 2 == 0;
        let opens: Vec<Open> = if concurrent {
            let urls: Vec<String> = targets.iter().map(|&i| url(i)).collect();
            futures_util::future::join_all(urls.iter().map(|u| open(&world.http, u, Some(&jwt), None, ANSWER))).await
        } else {
            let mut held = Vec::new();
            for &i in &targets {
                held.push(open(&world.http, &url(i), Some(&jwt), None, ANSWER).await);
            }
            held
        };
        let disturbed = world.nodes() != before;
        let answered = opens.iter().all(|o| matches!(o, Open::Stream(_) | Open::Refused(..)));
        if disturbed || !answered {
            bump(&world.stats.cap_probes_skipped);
            continue;
        }
        bump(&world.stats.cap_probes);
        let admitted = opens.iter().filter(|o| matches!(o, Open::Stream(_))).count();
        let report = || {
            targets
                .iter()
                .zip(&opens)
                .map(|(i, o)| format!("h{i}: {}", outcome(o)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mode = if concurrent { "concurrent" } else { "one after another" };
        if admitted > per_account {
            world.violation(format!(
                "cap probe #{n} ({mode}): {admitted} streams of one account admitted with per_account = {per_account}: {}",
                report()
            ));
        }
        // Refused streams must be refused by the cap.
        let odd_refusal = opens
            .iter()
            .any(|o| matches!(o, Open::Refused(s, code, _) if *s != 429 || !code.ends_with("_stream_cap")));
        if odd_refusal {
            let what = format!(
                "cap probe #{n} ({mode}): a stream refused otherwise than 429 with a cap code: {}",
                report()
            );
            if nats.is_some() && world.nats_whole() == nats {
                world.violation(what);
            } else {
                world.note(format!("{what} (a NATS server was down)"));
            }
        } else if admitted < per_account {
            world.note(format!(
                "cap probe #{n} ({mode}): fewer than {per_account} admitted: {}",
                report()
            ));
        }
        drop(opens);
    }
}
