//! The no-leak oracle: randomized worlds of tenants, accounts, sessions,
//! roles and groups; native, Mercure and anonymous subscribers; publishers
//! of every kind; retained events, resumes and revocations — played against
//! a real hub through its real router, with every delivery checked against
//! an independent model of who may see what (`oracle/model.rs`).
//!
//! `HERALD_ORACLE_CASES` sets how many cases run (default 2000);
//! `HERALD_ORACLE_SEED` the first case's seed (default fixed, so a run is
//! reproducible; each case's seed is printed with its failure, and
//! `HERALD_ORACLE_SEED=<seed> HERALD_ORACLE_CASES=1` replays it).
//!
//! A failing case is shrunk (steps and subscribers removed while the same
//! rule still breaks) before it is printed, and every case runs even after
//! a failure, so one run reports each broken rule once, with its count.

#[path = "oracle/drive.rs"]
mod drive;
#[path = "oracle/model.rs"]
mod model;
#[path = "oracle/world.rs"]
mod world;

use drive::{Env, Finding};
use std::collections::BTreeMap;
use world::{Action, Scenario};

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
        Err(_) => default,
    }
}

/// Removes what a failure does not need, keeping the same rule broken.
/// Greedy and bounded: a case has a few dozen steps at most.
fn shrink(rt: &tokio::runtime::Runtime, env: &Env, sc: Scenario, rule: &str) -> (Scenario, Finding) {
    let fails = |c: &Scenario| match rt.block_on(drive::run(env, c)) {
        Err(f) if f.rule == rule => Some(f),
        _ => None,
    };
    let mut best = sc;
    let mut finding = fails(&best).expect("a failing case fails again when replayed");
    let mut budget = 400;
    loop {
        let mut progressed = false;
        // Steps, last first: later steps depend on earlier ones.
        let mut i = best.actions.len();
        while i > 0 && budget > 0 {
            i -= 1;
            let mut c = best.clone();
            c.actions.remove(i);
            budget -= 1;
            if let Some(f) = fails(&c) {
                best = c;
                finding = f;
                progressed = true;
            }
        }
        // Subscribers, renumbering the steps that name them.
        let mut s = best.subscribers.len();
        while s > 1 && budget > 0 {
            s -= 1;
            let mut c = best.clone();
            c.subscribers.remove(s);
            c.actions
                .retain(|a| !matches!(a, Action::Open { subscriber, .. } if *subscriber == s));
            for a in &mut c.actions {
                if let Action::Open { subscriber, .. } = a {
                    if *subscriber > s {
                        *subscriber -= 1;
                    }
                }
            }
            budget -= 1;
            if let Some(f) = fails(&c) {
                best = c;
                finding = f;
                progressed = true;
            }
        }
        // Simpler publishes: one topic, no client id, fewer audience fields.
        for i in 0..best.actions.len() {
            let Action::Publish(p) = &best.actions[i] else { continue };
            let mut variants = Vec::new();
            if p.topics.len() > 1 {
                let mut q = p.clone();
                q.topics.truncate(1);
                variants.push(q);
            }
            if p.client_id {
                let mut q = p.clone();
                q.client_id = false;
                variants.push(q);
            }
            if p.retain {
                let mut q = p.clone();
                q.retain = false;
                variants.push(q);
            }
            if let Some(a) = &p.audience {
                for field in 0..4 {
                    let mut b = a.clone();
                    let removed = match field {
                        0 => b.users.take(),
                        1 => b.sessions.take(),
                        2 => b.roles.take(),
                        _ => b.groups.take(),
                    };
                    if removed.is_some() && b != world::AudienceSpec::default() {
                        let mut q = p.clone();
                        q.audience = Some(b);
                        variants.push(q);
                    }
                }
            }
            for q in variants {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                let mut c = best.clone();
                c.actions[i] = Action::Publish(q);
                if let Some(f) = fails(&c) {
                    best = c;
                    finding = f;
                    progressed = true;
                    break;
                }
            }
        }
        if !progressed || budget == 0 {
            return (best, finding);
        }
    }
}

struct Broken {
    count: usize,
    seed: u64,
    scenario: Option<Scenario>,
    finding: Finding,
}

#[test]
fn every_delivery_matches_the_model() {
    let cases = env_u64("HERALD_ORACLE_CASES", 2000);
    let first_seed = env_u64("HERALD_ORACLE_SEED", 0x4845_5241_4c44);
    // One single-threaded runtime for every case: each case is sequential by
    // design, and the hub's own tasks run at the yields of the stream reader.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let env = Env::new();
    let started = std::time::Instant::now();
    let mut broken: BTreeMap<String, Broken> = BTreeMap::new();
    let mut stats = drive::Stats::default();
    for n in 0..cases {
        let seed = first_seed.wrapping_add(n);
        let sc = Scenario::generate(seed);
        match rt.block_on(drive::run(&env, &sc)) {
            Ok(s) => stats.add(&s),
            Err(f) => {
                let entry = broken.entry(f.rule.clone()).or_insert(Broken {
                    count: 0,
                    seed,
                    scenario: Some(sc),
                    finding: f,
                });
                entry.count += 1;
            }
        }
    }
    let ran_for = started.elapsed();
    // Shrink one case per broken rule, after the run, so the run's time
    // says what the checks cost.
    for (rule, b) in broken.iter_mut() {
        if let Some(sc) = b.scenario.take() {
            let (small, f) = shrink(&rt, &env, sc, rule);
            b.finding = f;
            b.scenario = Some(small);
        }
    }
    eprintln!(
        "oracle: {cases} cases from seed {first_seed} in {:.1}s, {} rule(s) broken",
        ran_for.as_secs_f64(),
        broken.len()
    );
    eprintln!(
        "oracle: passing cases checked {} streams, {} deliveries ({} from retained snapshots, {} replayed after Last-Event-ID), \
         {} resets, {} revoked streams, {} refused reconnects, {} subscription events",
        stats.streams,
        stats.delivered,
        stats.from_snapshot,
        stats.from_replay,
        stats.resets,
        stats.revoked,
        stats.refused_reopens,
        stats.subscription_events
    );
    eprintln!("oracle: events withheld from streams that asked for their topic, by the rule that withheld them:");
    for (why, n) in &stats.withheld {
        eprintln!("  {n:>7}  {why}");
    }
    if broken.is_empty() {
        return;
    }
    let mut report = String::new();
    for (rule, b) in &broken {
        report.push_str(&format!(
            "\n=== {rule}\n    {} case(s); first seed {} (replay: HERALD_ORACLE_SEED={} HERALD_ORACLE_CASES=1), shrunk:\n",
            b.count, b.seed, b.seed
        ));
        for line in b.finding.detail.lines() {
            report.push_str("    ");
            report.push_str(line);
            report.push('\n');
        }
    }
    panic!("the hub broke {} visibility rule(s):{report}", broken.len());
}
