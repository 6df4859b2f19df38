//! Publishers: each posts events through the proxy with a unique client id
//! (`p{n}-{k}`), random topics, audiences and multi-line data, and retries
//! the very same body until it is answered. A `409 duplicate_id` on a retry
//! means an earlier attempt was stored; on a first attempt it is a broken
//! promise.

use super::model::{Answer, Audience, Published};
use super::rng::Rng;
use super::world::{bump, post, Refusal, World};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The topics events are published on.
pub const TOPICS: &[&str] = &[
    "orders.1",
    "orders.2",
    "orders.3",
    "orders.4",
    "chat.a",
    "chat.b",
    "alerts.sys.cpu",
    "alerts.db",
];

/// The roles audiences name (`none` is held by nobody).
const ROLES: &[&str] = &["ops", "dev", "temp", "none"];

/// One publisher.
pub struct PublisherSpec {
    /// Its number (the `n` of `p{n}-{k}`).
    pub n: usize,
    /// Its API key.
    pub key: String,
    /// The tenant its key is bound to (`None`: the hub-wide admin key,
    /// which names the tenant in each audience).
    pub bound: Option<String>,
    /// Tenant → the account names audiences pick from.
    pub users: BTreeMap<String, Vec<String>>,
}

/// A random event: the JSON body and its model.
fn event(spec: &PublisherSpec, rng: &mut Rng, id: &str) -> (Value, Published) {
    let tenants: Vec<&String> = spec.users.keys().collect();
    let tenant = match &spec.bound {
        Some(t) => Some(t.clone()),
        None if rng.chance(12) => None, // hub-wide
        None => Some((*rng.pick(&tenants)).clone()),
    };
    let mut topics = vec![rng.pick(TOPICS).to_string()];
    if rng.chance(20) {
        let second = rng.pick(TOPICS).to_string();
        if second != topics[0] {
            topics.push(second);
        }
    }
    // Anyone's name, so some `users` audiences name another tenant's user
    // (who must not see it) or nobody at all.
    let mut names: Vec<String> = spec.users.values().flatten().cloned().collect();
    names.push("nobody".into());
    let (audience, model) = match (&tenant, rng.range(0, 100)) {
        (None, 0..50) => (json!("public"), Audience::Public),
        (None, _) => {
            // A hub-wide event's `users` names hub-wide accounts only.
            let u = rng.pick(&names).clone();
            (
                json!({"users": [u]}),
                Audience::Only {
                    users: Some(vec![u]),
                    roles: None,
                },
            )
        }
        (Some(t), 0..30) => (
            json!({"tenant": t}),
            Audience::Only {
                users: None,
                roles: None,
            },
        ),
        (Some(t), 30..55) => {
            let u = rng.pick(&names).clone();
            (
                json!({"tenant": t, "users": [u]}),
                Audience::Only {
                    users: Some(vec![u]),
                    roles: None,
                },
            )
        }
        (Some(t), 55..80) => {
            let r = rng.pick(ROLES).to_string();
            (
                json!({"tenant": t, "roles": [r]}),
                Audience::Only {
                    users: None,
                    roles: Some(vec![r]),
                },
            )
        }
        (Some(t), 80..92) => {
            let users = vec![rng.pick(&names).clone(), rng.pick(&names).clone()];
            let r = rng.pick(ROLES).to_string();
            (
                json!({"tenant": t, "users": users, "roles": [r]}),
                Audience::Only {
                    users: Some(users),
                    roles: Some(vec![r]),
                },
            )
        }
        (Some(t), _) => {
            // A tenant-bound key's "public" is its tenant's; the admin key
            // says so explicitly.
            let a = if spec.bound.is_some() {
                json!("public")
            } else {
                json!({"tenant": t})
            };
            (a, Audience::Public)
        }
    };
    // Multi-line data with every line ending the spec allows, a `: ` inside
    // a line, a leading space and sometimes an empty line.
    let mut lines = vec![
        id.to_string(),
        format!("line two of {id}"),
        format!("key: value {}", rng.range(0, 1000)),
        " leading space".to_string(),
    ];
    if rng.chance(30) {
        lines.insert(2, String::new());
    }
    lines.push("end".into());
    let mut data = lines[0].clone();
    let mut prev = "";
    for l in &lines[1..] {
        // A CR, an empty line, then an LF would read as one CRLF.
        let sep = if prev == "\r" && data.ends_with('\r') {
            *rng.pick(&["\r", "\r\n"])
        } else {
            *rng.pick(&["\n", "\r\n", "\r"])
        };
        data.push_str(sep);
        data.push_str(l);
        prev = sep;
    }
    let typed = rng.chance(50);
    let mut body = json!({"topics": topics, "data": data, "id": id, "audience": audience});
    if typed {
        body["type"] = json!("chaos.tick");
    }
    let model = Published {
        id: id.to_string(),
        tenant,
        topics,
        audience: model,
        event_type: if typed { "chaos.tick" } else { "message" }.into(),
        data: lines.join("\n"),
        first_sent: Instant::now(),
        answer: None,
    };
    (body, model)
}

/// Publishes until `stop`, then finishes the retries in flight; a retry
/// still unanswered at `give_up` is left unanswered (so owed to nobody).
pub async fn run(
    world: Arc<World>,
    spec: PublisherSpec,
    mut rng: Rng,
    stop: CancellationToken,
    give_up: CancellationToken,
) {
    let mut k = 0u64;
    while !stop.is_cancelled() {
        k += 1;
        let id = format!("p{}-{k}", spec.n);
        let (body, model) = event(&spec, &mut rng, &id);
        world.published.lock().insert(id.clone(), model);
        let mut attempt = 0u32;
        let answer = loop {
            attempt += 1;
            if attempt > 1 {
                bump(&world.stats.retries);
            }
            match post(&world.http, &world.proxy, "/v1/publish", &spec.key, &body).await {
                Ok(v) => {
                    if v["id"].as_str() != Some(id.as_str()) {
                        world.violation(format!("publish {id} answered with id {}", v["id"]));
                    }
                    match v["seq"].as_u64() {
                        Some(seq) => break Some(Answer::Stored(seq)),
                        None => {
                            world.violation(format!("publish {id} answered without a seq: {v}"));
                            break None;
                        }
                    }
                }
                Err(Refusal::Status(409, code, _)) if code == "duplicate_id" && attempt > 1 => {
                    break Some(Answer::Duplicate);
                }
                // Unavailable (or the node is busy): retry the same body.
                Err(Refusal::Status(s, ..)) if s >= 500 || s == 429 => {}
                Err(Refusal::Status(s, code, message)) => {
                    world.violation(format!(
                        "publish {id} (attempt {attempt}) answered {s} {code}: {message}"
                    ));
                    break None;
                }
                Err(Refusal::Transport(_)) => {}
            }
            if give_up.is_cancelled() {
                world.note(format!("publish {id} never answered after {attempt} attempts"));
                break None;
            }
            tokio::time::sleep(rng.millis(100, 400)).await;
        };
        if answer.is_some() {
            bump(&world.stats.answered);
        }
        if let Some(e) = world.published.lock().get_mut(&id) {
            e.answer = answer;
        }
        tokio::time::sleep(rng.millis(40, 100)).await;
    }
}

/// The seq of every stored event must be unique.
pub fn check_unique_seqs(published: &BTreeMap<String, Published>, out: &mut Vec<String>) {
    let mut by_seq: BTreeMap<u64, &str> = BTreeMap::new();
    for e in published.values() {
        if let Some(seq) = e.seq() {
            if let Some(other) = by_seq.insert(seq, &e.id) {
                out.push(format!("{other} and {} were both answered with seq {seq}", e.id));
            }
        }
    }
}

/// How long a publisher keeps retrying after the chaos window.
pub const RETRY_GRACE: Duration = Duration::from_secs(30);
