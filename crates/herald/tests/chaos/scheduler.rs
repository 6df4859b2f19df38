//! The chaos scheduler: every few seconds (seeded) it SIGKILLs a Herald
//! node and restarts it 1-3 s later, SIGSTOPs one and SIGCONTs it later,
//! SIGKILLs a NATS server and restarts it on the same port and store
//! (never a second before the first is back and JetStream healthy), or
//! revokes a victim's account and checks that its streams close and its
//! old credential is refused on every live node.

use super::model::Principal;
use super::rng::Rng;
use super::sse::{open, query, Open};
use super::subscriber::Subscriber;
use super::world::{bump, mint_token, post, NodeState, Refusal, Revocation, World, ANSWER};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A user whose account the scheduler revokes while its streams are open.
pub struct Victim {
    /// The account.
    pub principal: Principal,
    /// Its JWT (the same one its subscribers use).
    pub jwt: String,
    /// `logout`, `role_grant_revoke` (role `temp`) or `session_revoke`.
    pub kind: &'static str,
    /// Its streams (one with the JWT header, one with SSE tokens).
    pub subs: Vec<Arc<Subscriber>>,
}

impl Victim {
    /// The revocation body (scoped to the victim's tenant).
    pub fn body(&self) -> Value {
        let p = &self.principal;
        match self.kind {
            "role_grant_revoke" => {
                json!({"type": "role_grant_revoke", "account": p.sub, "role": "temp", "tenant": p.tenant})
            }
            "session_revoke" => {
                json!({"type": "session_revoke", "account": p.sub, "session": p.sid, "tenant": p.tenant})
            }
            kind => json!({"type": kind, "account": p.sub, "tenant": p.tenant}),
        }
    }

    /// `sub@tenant`
    pub fn name(&self) -> String {
        format!("{}@{}", self.principal.sub, self.principal.tenant)
    }
}

/// Runs chaos until `stop`; returns the actions still in flight (each puts
/// back what it broke: the caller awaits them).
pub async fn run(world: Arc<World>, victims: Arc<Vec<Victim>>, mut rng: Rng, stop: CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let mut next_victim = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(rng.millis(1500, 4000)) => {}
        }
        let up = world.up_nodes();
        let roll = rng.range(0, 100);
        if roll < 30 && up.len() >= 2 {
            let i = *rng.pick(&up);
            let down_for = rng.millis(1000, 3000);
            tasks.spawn(kill_herald(world.clone(), i, down_for));
        } else if roll < 55 && up.len() >= 2 {
            let i = *rng.pick(&up);
            // Mostly 1-3 s (streams survive it); sometimes long enough that
            // clients give up on the silent node and resume elsewhere.
            let paused_for = if rng.chance(25) {
                rng.millis(6500, 8000)
            } else {
                rng.millis(1000, 3000)
            };
            tasks.spawn(pause_herald(world.clone(), i, paused_for));
        } else if roll < 75 {
            if world.nats_down().is_some() || !nats_healthy(&world).await {
                continue;
            }
            let j = rng.range(0, world.nats.len() as u64) as usize;
            world.set_nats_down(Some(j));
            let down_for = rng.millis(1000, 3000);
            tasks.spawn(restart_nats(world.clone(), j, down_for));
        } else if next_victim < victims.len() {
            tasks.spawn(revoke(world.clone(), victims.clone(), next_victim));
            next_victim += 1;
        }
    }
    tasks
}

/// SIGKILLs node `i`, and starts it again `down_for` later.
async fn kill_herald(world: Arc<World>, i: usize, down_for: Duration) {
    world.set_node(i, NodeState::Down);
    bump(&world.stats.kills);
    world.log(format!("SIGKILL h{i} (back in {down_for:?})"));
    let h = world.herald[i].clone();
    tokio::task::spawn_blocking(move || h.lock().kill())
        .await
        .expect("kill a Herald node");
    tokio::time::sleep(down_for).await;
    restart_herald(&world, i).await;
}

/// Starts node `i` again on its port (a few attempts).
pub async fn restart_herald(world: &World, i: usize) {
    for attempt in 1..=5 {
        let h = world.herald[i].clone();
        let started = tokio::task::spawn_blocking(move || h.lock().start())
            .await
            .expect("start a Herald node");
        match started {
            Ok(()) => {
                world.set_node(i, NodeState::Up);
                world.log(format!("h{i} listening again"));
                return;
            }
            Err(e) => {
                world.note(format!("restart attempt {attempt}: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    world.violation(format!("h{i} could not be started again"));
}

/// SIGSTOPs node `i` and SIGCONTs it `paused_for` later.
async fn pause_herald(world: Arc<World>, i: usize, paused_for: Duration) {
    world.set_node(i, NodeState::Paused);
    bump(&world.stats.pauses);
    world.log(format!("SIGSTOP h{i} for {paused_for:?}"));
    if !world.herald[i].lock().pause() {
        world.note(format!("SIGSTOP h{i} failed"));
    }
    tokio::time::sleep(paused_for).await;
    if !world.herald[i].lock().resume() {
        world.note(format!("SIGCONT h{i} failed"));
    }
    world.set_node(i, NodeState::Up);
    world.log(format!("SIGCONT h{i}"));
}

/// Whether every NATS server reports JetStream healthy.
pub async fn nats_healthy(world: &World) -> bool {
    for n in &world.nats {
        let url = n.lock().health_url();
        let ok = matches!(
            world.http.get(url).timeout(Duration::from_secs(2)).send().await,
            Ok(r) if r.status() == 200
        );
        if !ok {
            return false;
        }
    }
    true
}

/// How long after every NATS server reports healthy a `503` still counts
/// as the outage's.
const NATS_SETTLE: Duration = Duration::from_secs(3);

/// SIGKILLs NATS server `j`, restarts it `down_for` later on the same port
/// and store, and clears `nats_down` once the whole cluster is healthy.
async fn restart_nats(world: Arc<World>, j: usize, down_for: Duration) {
    bump(&world.stats.nats_restarts);
    world.log(format!("SIGKILL nats n{j} (back in {down_for:?})"));
    let n = world.nats[j].clone();
    tokio::task::spawn_blocking(move || n.lock().kill())
        .await
        .expect("kill a NATS server");
    tokio::time::sleep(down_for).await;
    let n = world.nats[j].clone();
    let listening = tokio::task::spawn_blocking(move || {
        let mut n = n.lock();
        n.start();
        n.wait_port(Duration::from_secs(20))
    })
    .await
    .expect("start a NATS server");
    if !listening {
        world.violation(format!("nats n{j} did not listen again"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !nats_healthy(&world).await {
        if Instant::now() > deadline {
            world.note(format!("JetStream not healthy 60 s after restarting n{j}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // JetStream reports healthy a moment before every stream has a server
    // answering for it again; nodes refuse with `503` meanwhile, past the
    // 1.5 s they ask again (docs/cluster.md). Judged as part of the outage
    // for a few seconds more, and strictly after.
    tokio::time::sleep(NATS_SETTLE).await;
    world.log(format!("nats n{j} back, JetStream healthy"));
    world.set_nats_down(None);
}

/// Revokes victim `v`, then checks that its streams closed and that its
/// old credential is refused on every live node.
async fn revoke(world: Arc<World>, victims: Arc<Vec<Victim>>, v: usize) {
    let victim = &victims[v];
    for s in &victim.subs {
        s.state.lock().revocation_sent = true;
    }
    let body = victim.body();
    world.log(format!("revoke {}: {body}", victim.name()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let answered = loop {
        match post(&world.http, &world.proxy, "/v1/revocations", &world.keys.admin, &body).await {
            Ok(v) => {
                if v["applied"] != json!(true) {
                    world.violation(format!("revocation {body} answered {v}"));
                }
                break Instant::now();
            }
            Err(Refusal::Status(s, code, message)) if s < 500 => {
                world.violation(format!("revocation {body} answered {s} {code}: {message}"));
                return;
            }
            Err(e) => {
                if Instant::now() > deadline {
                    world.violation(format!("revocation {body} never answered: {e}"));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    for s in &victim.subs {
        s.state.lock().revoked_at = Some(answered);
    }
    world.revocations.lock().push(Revocation {
        victim: v,
        body: body.clone(),
        answered,
    });
    bump(&world.stats.revocations);
    // Its streams end, and the old credential is refused on every live
    // node (checked at the same time, so a node that never learns the
    // revocation is named while it is happening).
    let probes = futures_util::future::join_all(
        (0..world.direct.len()).map(|i| refused_on(&world, i, victim, Duration::from_secs(20))),
    );
    tokio::join!(closed(&world, victim, answered, &body), probes);
}

/// Waits until every stream of `victim` ended for good (`event: revoked`,
/// or an end and a refused reconnect), at most 30 s after `answered`.
async fn closed(world: &World, victim: &Victim, answered: Instant, body: &Value) {
    let deadline = answered + Duration::from_secs(30);
    loop {
        let open: Vec<&str> = victim
            .subs
            .iter()
            .filter(|s| s.state.lock().closed.is_none())
            .map(|s| s.name.as_str())
            .collect();
        if open.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let p = &victim.principal;
            let listed = world.streams_of(&p.tenant, &p.sub).await;
            world.violation(format!(
                "{open:?} still streaming 30 s after the revocation {body} was answered ({listed})"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks that node `i` (directly, bypassing the proxy) refuses the
/// victim's JWT for a stream and for minting an SSE token, allowing
/// `within` for the revocation to reach it. Skipped while the node is not up.
pub async fn refused_on(world: &World, i: usize, victim: &Victim, within: Duration) {
    let start = Instant::now();
    let p = &victim.principal;
    let url = format!("{}/v1/events?{}", world.direct[i], query(&p.selectors, None));
    // Admissions of the revoked JWT seen while waiting, and the last answer
    // that was neither an admission nor a refusal (e.g. `503`).
    let mut admitted = 0u32;
    let mut other_answer = None;
    let refused = loop {
        let (state, generation) = world.node(i);
        if state != NodeState::Up {
            return;
        }
        match open(&world.http, &url, Some(&victim.jwt), None, ANSWER).await {
            Open::Refused(401 | 403, ..) => break true,
            Open::Stream(_) => {
                admitted += 1;
                bump(&world.stats.late_admissions);
            }
            other => {
                if world.node(i).1 != generation {
                    return;
                }
                other_answer = Some(match other {
                    Open::Refused(s, code, message) => format!("{s} {code}: {message}"),
                    Open::BadStart(w) | Open::Failed(w) => w,
                    Open::Stream(_) => unreachable!("handled above"),
                });
            }
        }
        if start.elapsed() > within {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let name = victim.name();
    match (refused, admitted) {
        (true, 0) => {}
        (true, n) => world.note(format!(
            "h{i} admitted {name}'s revoked JWT {n} times, refusing it only {:?} after the revocation was answered",
            start.elapsed()
        )),
        (false, n) if n > 0 => world.violation(format!(
            "h{i} still admits {name}'s JWT {within:?} after the revocation was answered"
        )),
        (false, _) => world.note(format!(
            "h{i} neither refused nor admitted {name}'s revoked JWT within {within:?}: {}",
            other_answer.unwrap_or_default()
        )),
    }
    if !refused {
        return;
    }
    match mint_token(&world.http, &world.direct[i], &victim.jwt, &p.may_subscribe).await {
        Err(Refusal::Status(401 | 403, ..)) => {}
        Ok(_) => world.violation(format!("h{i} minted an SSE token with {name}'s revoked JWT")),
        Err(e) => world.note(format!("minting with {name}'s revoked JWT on h{i}: {e}")),
    }
}
