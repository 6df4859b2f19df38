//! A bounded chaos test: a Herald cluster under failure keeps the promises
//! of a single node.
//!
//! Real processes, no mocks: three `nats-server`s clustered with JetStream
//! (streams with 3 replicas), three `herald` nodes on fixed ports, and an
//! in-test TCP proxy in front of them standing in for a load balancer
//! (round robin, skipping nodes that refuse connections). Publishers and
//! subscribers of two tenants use only the proxy. For `HERALD_CHAOS_SECS`
//! (default 60) a seeded scheduler (`HERALD_CHAOS_SEED`, printed) SIGKILLs
//! and restarts Herald nodes, SIGSTOPs and SIGCONTs them, SIGKILLs and
//! restarts NATS servers one at a time, and revokes victim accounts whose
//! streams are open. Meanwhile probes race SSE token redemptions on two
//! nodes and try to exceed the per-account stream cap across nodes.
//!
//! Then everything is restored, subscribers catch up, and the run is
//! checked against an independent model (`chaos/model.rs`):
//!
//! * every publish answered 2xx (or `409 duplicate_id` on a retry) reached
//!   every subscriber that may see it exactly once, in `seq` order, across
//!   kills, pauses, NATS restarts and resumes on other nodes;
//! * no subscriber received an event its principal may not see, or an
//!   event with other data than published (multi-line data, CR/LF/CRLF);
//! * no `reset`: a resume point is never lost;
//! * every revocation closed the victim's streams (within a generous 30 s)
//!   and its old credential is refused on every node (within 20 s; events
//!   that still reached a victim after the revocation was answered are
//!   counted and reported, since how fast a revocation crosses the cluster
//!   is latency, not a promise this test can time);
//! * no SSE token opened two streams, and no account held more streams
//!   than `per_account` across the cluster.
//!
//! Run it alone (it takes one to two minutes and most of two cores):
//!
//! ```sh
//! cargo test -p herald --test chaos -- --nocapture
//! HERALD_CHAOS_SEED=42 HERALD_CHAOS_SECS=30 cargo test -p herald --test chaos -- --nocapture
//! ```
//!
//! The processes' logs are kept (and their directory printed) when the
//! run fails or `HERALD_CHAOS_KEEP=1` is set.

#[path = "chaos/model.rs"]
mod model;
#[path = "chaos/probes.rs"]
mod probes;
#[path = "chaos/procs.rs"]
mod procs;
#[path = "chaos/proxy.rs"]
mod proxy;
#[path = "chaos/publisher.rs"]
mod publisher;
#[path = "chaos/rng.rs"]
mod rng;
#[path = "chaos/scheduler.rs"]
mod scheduler;
#[path = "chaos/sse.rs"]
mod sse;
#[path = "chaos/subscriber.rs"]
mod subscriber;
#[path = "chaos/world.rs"]
mod world;

use model::Principal;
use parking_lot::Mutex;
use procs::{free_port, Herald, Nats};
use publisher::PublisherSpec;
use rng::Rng;
use scheduler::Victim;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subscriber::Subscriber;
use tokio_util::sync::CancellationToken;
use world::{get, Keys, NodeState, World};

/// Streams per account on every node (and, with cluster caps, cluster-wide).
const PER_ACCOUNT: usize = 3;

/// A `u64` from the environment, if set.
fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// The API key hashes in a node's config.
struct KeyHashes {
    admin: String,
    acme: String,
    globex: String,
}

/// One node's configuration: the same secrets, keys and cluster on every
/// node; its own port and data dir.
fn herald_config(port: u16, dir: &Path, nats: &str, stream: &str, h: &KeyHashes) -> String {
    format!(
        r#"
listen = "127.0.0.1:{port}"
data_dir = "{dir}"
jwt_secret = "{secret}"
session_hash_key = "{session}"
cluster = "{nats}"
cluster_stream = "{stream}"
cluster_replicas = 3

[limits]
per_account = {PER_ACCOUNT}
keepalive_secs = 1
auth_failures_per_minute = 1000000
sse_tokens_outstanding = 1000

[[api_keys]]
id = "admin"
hash = "{admin}"
scopes = ["publish", "tokens", "revoke", "admin"]

[[api_keys]]
id = "acme-backend"
hash = "{acme}"
scopes = ["publish", "tokens"]
tenant = "acme"

[[api_keys]]
id = "globex-backend"
hash = "{globex}"
scopes = ["publish", "tokens"]
tenant = "globex"
"#,
        dir = dir.display(),
        secret = world::SECRET,
        session = world::SESSION_KEY,
        admin = h.admin,
        acme = h.acme,
        globex = h.globex,
    )
}

/// A principal of the test's world.
fn principal(tenant: &str, sub: &str, roles: &[&str], may: &[&str], selectors: &[&str]) -> Principal {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Principal {
        tenant: tenant.into(),
        sub: sub.into(),
        sid: format!("sid-{sub}"),
        roles: strings(roles),
        may_subscribe: strings(may),
        selectors: strings(selectors),
    }
}

/// The regular subscribers: two tenants, several users with different
/// roles, credential selectors and stream selectors; half open with the
/// JWT header, half with SSE tokens.
fn regular_subscribers() -> Vec<Arc<Subscriber>> {
    let header = |p: Principal| Subscriber::new(p, false, false);
    let token = |p: Principal| Subscriber::new(p, true, false);
    vec![
        header(principal("acme", "alice", &["ops"], &["orders.>", "chat.*"], &["*"])),
        token(principal("acme", "bob", &["dev"], &["*"], &["orders.*", "alerts.>"])),
        token(principal(
            "acme",
            "carol",
            &["ops", "dev"],
            &["chat.*", "alerts.>"],
            &["*"],
        )),
        header(principal("acme", "dan", &[], &["*"], &["chat.a", "orders.1"])),
        token(principal("globex", "gina", &["ops"], &["*"], &["*"])),
        header(principal("globex", "hank", &["dev"], &["orders.>"], &["orders.>"])),
        header(principal("globex", "ivy", &[], &["chat.*", "alerts.>"], &["*"])),
        token(principal(
            "globex",
            "jack",
            &["ops", "temp"],
            &["*"],
            &["orders.2", "chat.b", "alerts.*.cpu"],
        )),
    ]
}

/// The victims, one per revocation the scheduler may post, each with a
/// header stream (`*`) and a token stream (`orders.>`, `chat.*`).
fn victims() -> Vec<Victim> {
    const KINDS: [&str; 3] = ["logout", "role_grant_revoke", "session_revoke"];
    (1..=6)
        .map(|k| {
            let tenant = if k % 2 == 1 { "acme" } else { "globex" };
            let p = principal(tenant, &format!("victim-{k}"), &["temp", "ops"], &["*"], &["*"]);
            let header = Subscriber::new(p.clone(), false, true);
            let mut narrow = p.clone();
            narrow.selectors = vec!["orders.>".into(), "chat.*".into()];
            let token = Subscriber::new(narrow, true, true);
            Victim {
                // Both streams share the account, session and JWT claims.
                jwt: header.jwt.clone(),
                principal: p,
                kind: KINDS[(k - 1) % KINDS.len()],
                subs: vec![header, token],
            }
        })
        .collect()
}

/// Starts the three NATS servers, waits for JetStream, starts the three
/// Herald nodes and the proxy in front of them.
async fn start_cluster(rng: &mut Rng, run_dir: &Path) -> Arc<World> {
    let mut taken = Vec::new();
    let mut nats = Nats::cluster(run_dir, rng, &mut taken);
    for n in &mut nats {
        n.start();
    }
    for n in &nats {
        assert!(n.wait_port(Duration::from_secs(20)), "nats-server did not listen");
    }
    let nats_urls = nats.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    let nats: Vec<Arc<Mutex<Nats>>> = nats.into_iter().map(|n| Arc::new(Mutex::new(n))).collect();

    let (admin, admin_hash) = herald::auth::api_key::generate();
    let (acme, acme_hash) = herald::auth::api_key::generate();
    let (globex, globex_hash) = herald::auth::api_key::generate();
    let hashes = KeyHashes {
        admin: admin_hash,
        acme: acme_hash,
        globex: globex_hash,
    };
    let stream = format!("CHAOS{:08X}", rng.next_u64() as u32);
    let ports: Vec<u16> = (0..3).map(|_| free_port(rng, &mut taken)).collect();
    let herald: Vec<Arc<Mutex<Herald>>> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let node = Herald::new(i, port, run_dir, |port, dir| {
                herald_config(port, dir, &nats_urls, &stream, &hashes)
            });
            Arc::new(Mutex::new(node))
        })
        .collect();
    let proxy = proxy::start(ports).await;
    let world = Arc::new(World::new(proxy, herald, nats, Keys { admin, acme, globex }));
    // JetStream needs its meta leader before Herald can create replicated
    // streams.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !scheduler::nats_healthy(&world).await {
        assert!(Instant::now() < deadline, "JetStream never became healthy");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for h in &world.herald {
        let h = h.clone();
        tokio::task::spawn_blocking(move || h.lock().start())
            .await
            .expect("start a node")
            .expect("a Herald node starts");
    }
    world.log(format!(
        "cluster up: nats {nats_urls}, herald {:?}, proxy {}; logs in {}",
        world.direct,
        world.proxy,
        run_dir.display()
    ));
    world
}

/// Waits (bounded) until every subscriber has a stream open.
async fn wait_connected(world: &World, subs: &[Arc<Subscriber>]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while subs.iter().any(|s| !s.state.lock().connected) {
        if Instant::now() > deadline {
            let waiting: Vec<&str> = subs
                .iter()
                .filter(|s| !s.state.lock().connected)
                .map(|s| s.name.as_str())
                .collect();
            world.note(format!(
                "still connecting after 60 s: {waiting:?} (they start from seq 0 anyway)"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.log(format!("{} subscribers connected", subs.len()));
}

/// Starts the publishers: one per tenant with its tenant-bound key, one
/// with the hub-wide admin key. Audiences name the subscribers' accounts.
fn spawn_publishers(
    world: &Arc<World>,
    subs: &[Arc<Subscriber>],
    rng: &mut Rng,
    stop: &CancellationToken,
    give_up: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in subs {
        let names = users.entry(s.principal.tenant.clone()).or_default();
        if !names.contains(&s.principal.sub) {
            names.push(s.principal.sub.clone());
        }
    }
    [
        (world.keys.acme.clone(), Some("acme")),
        (world.keys.globex.clone(), Some("globex")),
        (world.keys.admin.clone(), None),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (key, bound))| {
        let spec = PublisherSpec {
            n: i + 1,
            key,
            bound: bound.map(String::from),
            users: users.clone(),
        };
        tokio::spawn(publisher::run(
            world.clone(),
            spec,
            rng.fork(),
            stop.clone(),
            give_up.clone(),
        ))
    })
    .collect()
}

/// Waits for the chaos actions still in flight (each puts back what it
/// broke), then makes sure every node is running and ready.
async fn restore(world: &World, mut actions: tokio::task::JoinSet<()>) {
    let finished = async {
        while let Some(done) = actions.join_next().await {
            done.expect("a chaos action");
        }
    };
    if tokio::time::timeout(Duration::from_secs(150), finished).await.is_err() {
        world.violation("chaos actions did not finish within 150 s");
    }
    for (i, node) in world.herald.iter().enumerate() {
        match world.node(i).0 {
            NodeState::Up => {}
            NodeState::Paused => {
                node.lock().resume();
                world.set_node(i, NodeState::Up);
            }
            NodeState::Down => scheduler::restart_herald(world, i).await,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for base in &world.direct {
        while !world::ready(&world.http, base).await {
            if Instant::now() > deadline {
                world.violation(format!("{base}/readyz not 200 60 s after the chaos"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    world.log("every node ready");
}

/// Lets subscribers catch up: until each has every answered event it may
/// see, or nothing arrived for [`QUIET`] (counted from now at the
/// earliest), or 45 s passed; then 2 s more, so a late duplicate would be
/// seen.
/// How long catch-up waits with nothing delivered. A node whose lease
/// lapsed at the end of the chaos closed its streams and took a new epoch;
/// the old epoch's places count against the account caps until its
/// heartbeat expires (2 × `cluster_lease_secs` = 20 s, docs/cluster.md),
/// so a reconnecting subscriber may be refused with a cap code that long.
const QUIET: Duration = Duration::from_secs(25);

async fn catch_up(world: &World, subs: &[Arc<Subscriber>], published: &BTreeMap<String, model::Published>) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(45);
    loop {
        // A victim owes everything until it is revoked (the chaos may end
        // before its revocation), so only revoked ones are not waited for.
        let behind = subs
            .iter()
            .filter(|s| {
                let st = s.state.lock();
                st.revoked_at.is_none()
                    && published
                        .values()
                        .any(|e| e.answer.is_some() && e.visible_to(&s.principal) && !st.received.contains(&e.id))
            })
            .count();
        let quiet = world.last_delivery.lock().elapsed().min(started.elapsed());
        if behind == 0 || quiet > QUIET || Instant::now() > deadline {
            world.log(format!(
                "catch-up over: {behind} subscribers behind, quiet for {quiet:?}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Every revoked victim ended, and every node refuses its old JWT now.
async fn check_revocations(world: &World, victims: &[Victim]) {
    let revocations = world.revocations.lock().clone();
    for r in &revocations {
        for s in &victims[r.victim].subs {
            if s.state.lock().closed.is_none() {
                world.violation(format!(
                    "{} never ended, {:?} after {} was answered",
                    s.name,
                    r.answered.elapsed(),
                    r.body
                ));
            }
        }
    }
    let probes = revocations.iter().flat_map(|r| {
        let victim = &victims[r.victim];
        (0..world.direct.len()).map(move |i| scheduler::refused_on(world, i, victim, Duration::from_secs(10)))
    });
    futures_util::future::join_all(probes).await;
}

/// Checks every subscriber against the model; returns how many events
/// reached victims after their revocation was answered.
fn check_model(world: &World, subs: &[Arc<Subscriber>], published: &BTreeMap<String, model::Published>) -> usize {
    let mut broken = Vec::new();
    publisher::check_unique_seqs(published, &mut broken);
    let mut after_revocation = 0;
    for s in subs {
        let st = s.state.lock();
        for (after, what) in &st.lost_resumes {
            let seq = published.get(after).and_then(model::Published::seq);
            broken.push(format!(
                "{}: resuming after {after} (seq {}) {what}",
                s.name,
                seq.map_or_else(|| "?".into(), |s| s.to_string())
            ));
        }
        let after = model::check_subscriber(
            &s.name,
            &s.principal,
            st.revoked_at,
            &st.deliveries,
            published,
            &mut broken,
        );
        if after.count > 0 {
            after_revocation += after.count;
            world.note(format!(
                "{}: {} events published up to {:?} after its revocation was answered still reached it, from {:?}",
                s.name, after.count, after.max_lag, after.nodes
            ));
        }
    }
    for b in broken {
        world.violation(b);
    }
    after_revocation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeps_single_node_promises_under_chaos() {
    let seed = env_u64("HERALD_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64
    });
    let secs = env_u64("HERALD_CHAOS_SECS").unwrap_or(60);
    eprintln!("chaos: seed {seed}, {secs} s of chaos (replay: HERALD_CHAOS_SEED={seed})");
    let mut rng = Rng::new(seed);
    // Kept until the run passes, so a failure (or a panic) leaves the logs.
    let run_dir = tempfile::Builder::new()
        .prefix("herald-chaos-")
        .tempdir()
        .expect("a run directory")
        .keep();
    let world = start_cluster(&mut rng, &run_dir).await;

    // Subscribers first, all connected before the first publish.
    let victims = Arc::new(victims());
    let mut subs = regular_subscribers();
    subs.extend(victims.iter().flat_map(|v| v.subs.iter().cloned()));
    let subs_stop = CancellationToken::new();
    let sub_tasks: Vec<_> = subs
        .iter()
        .map(|s| tokio::spawn(subscriber::run(world.clone(), s.clone(), subs_stop.clone())))
        .collect();
    wait_connected(&world, &subs).await;

    // The chaos window: publishers, probes and the scheduler.
    let chaos = CancellationToken::new();
    let give_up = CancellationToken::new();
    let publishers = spawn_publishers(&world, &subs, &mut rng, &chaos, &give_up);
    let races = tokio::spawn(probes::token_races(world.clone(), rng.fork(), chaos.clone()));
    let caps = tokio::spawn(probes::cap_probes(
        world.clone(),
        rng.fork(),
        chaos.clone(),
        PER_ACCOUNT,
    ));
    let scheduler = tokio::spawn(scheduler::run(
        world.clone(),
        victims.clone(),
        rng.fork(),
        chaos.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(secs)).await;

    // Stop the chaos, put everything back, let publishers finish their
    // retries and subscribers catch up.
    world.log("chaos window over: stopping the scheduler and restoring every process");
    chaos.cancel();
    restore(&world, scheduler.await.expect("the scheduler")).await;
    races.await.expect("token races");
    caps.await.expect("cap probes");
    let grace = give_up.clone();
    tokio::spawn(async move {
        tokio::time::sleep(publisher::RETRY_GRACE).await;
        grace.cancel();
    });
    for p in publishers {
        p.await.expect("a publisher");
    }
    give_up.cancel();
    let published = world.published.lock().clone();
    catch_up(&world, &subs, &published).await;
    subs_stop.cancel();
    for t in sub_tasks {
        t.await.expect("a subscriber");
    }

    // The checks.
    check_revocations(&world, &victims).await;
    let after_revocation = check_model(&world, &subs, &published);
    for h in &world.herald {
        h.lock().kill();
    }
    for n in &world.nats {
        n.lock().kill();
    }
    let violations = world.violations();
    let s = &world.stats;
    let summary = format!(
        "chaos summary: seed={seed} secs={secs} events_answered={} retries={} deliveries={} kills={} pauses={} nats_restarts={} resumes={} abandoned={} revocations={} after_revocation={} late_admissions={} token_races={} (skipped {}) cap_probes={} (skipped {}) notes={} violations={}",
        get(&s.answered),
        get(&s.retries),
        get(&s.deliveries),
        get(&s.kills),
        get(&s.pauses),
        get(&s.nats_restarts),
        get(&s.resumes),
        get(&s.abandoned),
        get(&s.revocations),
        after_revocation,
        get(&s.late_admissions),
        get(&s.token_races),
        get(&s.token_races_skipped),
        get(&s.cap_probes),
        get(&s.cap_probes_skipped),
        world.notes().len(),
        violations.len(),
    );
    println!("{summary}");
    eprintln!("{summary}");
    if violations.is_empty() && std::env::var_os("HERALD_CHAOS_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&run_dir);
    } else {
        eprintln!("chaos: logs kept in {}", run_dir.display());
    }
    let shown = violations.iter().take(60).cloned().collect::<Vec<_>>().join("\n  ");
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}):\n  {shown}{}",
        violations.len(),
        if violations.len() > 60 { "\n  ..." } else { "" }
    );
}
