//! The independent model the run is checked against: who may see an event
//! (the audience rule of docs/api.md and docs/security.md, written here
//! from the documentation, not taken from Herald), what each published
//! event looks like on the wire, and the final per-subscriber check
//! (exactly once, in `seq` order, nothing invisible, nothing after a
//! revocation).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Does `selector` match the exact `topic`? `*` alone is everything the
/// credential allows; otherwise NATS-style wildcards: `*` one segment,
/// `>` (last) one or more segments; anything else is an exact topic.
pub fn selector_matches(selector: &str, topic: &str) -> bool {
    if selector == "*" {
        return true;
    }
    let sel: Vec<&str> = selector.split('.').collect();
    let top: Vec<&str> = topic.split('.').collect();
    for (i, part) in sel.iter().enumerate() {
        match *part {
            ">" if i + 1 == sel.len() => return top.len() > i,
            "*" if i < top.len() => {}
            p if top.get(i) == Some(&p) => {}
            _ => return false,
        }
    }
    sel.len() == top.len()
}

/// Who a stream is: the account and what its credential allows, plus the
/// selectors the stream asked for.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Tenant (every subscriber of the test is tenant-bound).
    pub tenant: String,
    /// `sub`.
    pub sub: String,
    /// `sid`.
    pub sid: String,
    /// `roles`.
    pub roles: Vec<String>,
    /// The credential's `herald.subscribe`.
    pub may_subscribe: Vec<String>,
    /// The stream's `?topic=` selectors.
    pub selectors: Vec<String>,
}

/// An event's audience, restricted to the fields the test publishes.
#[derive(Clone, Debug)]
pub enum Audience {
    /// `"public"`: everyone allowed on the topic (in the event's tenant, or
    /// everyone when the event is hub-wide).
    Public,
    /// An object: every field set must match.
    Only {
        /// `users`: `sub` in the list and in the event's own tenant.
        users: Option<Vec<String>>,
        /// `roles`: at least one held.
        roles: Option<Vec<String>>,
    },
}

/// How a publish was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `2xx` with this `seq`.
    Stored(u64),
    /// A retry answered `409 duplicate_id`: an earlier attempt was stored
    /// (its `seq` is unknown to the publisher).
    Duplicate,
}

/// One event a publisher tried to publish.
#[derive(Clone, Debug)]
pub struct Published {
    /// The client id (`p{n}-{k}`), also its SSE `id:`.
    pub id: String,
    /// The event's tenant; `None` for a hub-wide event.
    pub tenant: Option<String>,
    /// Its topics.
    pub topics: Vec<String>,
    /// Its audience.
    pub audience: Audience,
    /// The SSE `event:` a subscriber must see.
    pub event_type: String,
    /// The data a subscriber must reassemble (lines joined with `\n`).
    pub data: String,
    /// When its first attempt was sent.
    pub first_sent: Instant,
    /// How it was answered (`None`: never answered).
    pub answer: Option<Answer>,
}

impl Published {
    /// Whether `p` may see this event (and its stream selected it).
    pub fn visible_to(&self, p: &Principal) -> bool {
        let on_topic = self.topics.iter().any(|t| {
            p.selectors.iter().any(|s| selector_matches(s, t)) && p.may_subscribe.iter().any(|s| selector_matches(s, t))
        });
        // Tenants are structural: a tenant-bound principal sees its own
        // tenant's events and hub-wide ones, never another tenant's.
        let tenant_ok = self.tenant.as_ref().is_none_or(|t| *t == p.tenant);
        let audience_ok = match &self.audience {
            Audience::Public => true,
            Audience::Only { users, roles } => {
                users
                    .as_ref()
                    .is_none_or(|u| u.contains(&p.sub) && self.tenant.as_deref() == Some(p.tenant.as_str()))
                    && roles.as_ref().is_none_or(|r| r.iter().any(|x| p.roles.contains(x)))
            }
        };
        on_topic && tenant_ok && audience_ok
    }

    /// The `seq` it was answered with, if known.
    pub fn seq(&self) -> Option<u64> {
        match self.answer {
            Some(Answer::Stored(seq)) => Some(seq),
            _ => None,
        }
    }
}

/// One event received by a subscriber.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Its `id:`.
    pub id: String,
    /// Its `event:`.
    pub event: String,
    /// Its data.
    pub data: String,
    /// Which connection of the subscriber (1 = the first) carried it.
    pub conn: u32,
    /// The node behind that connection (`h0`..., `h?` if unknown).
    pub node: String,
}

/// Events a revoked account still received that were published after its
/// revocation was answered: the revocation had not yet reached the node
/// serving the stream. Reported, not failed on: how fast a revocation
/// crosses the cluster is latency; that the stream ends at all is checked
/// by the scheduler (`scheduler.rs`).
#[derive(Debug, Default)]
pub struct AfterRevocation {
    /// How many.
    pub count: usize,
    /// The latest publish among them, counted from the answer.
    pub max_lag: Duration,
    /// The nodes that delivered them.
    pub nodes: BTreeSet<String>,
}

/// Checks one subscriber's deliveries against the model, appending every
/// broken promise to `out`. `revoked_at`: when a revocation of this
/// subscriber's account was answered (a victim is owed only the events up
/// to the last one it received).
pub fn check_subscriber(
    name: &str,
    p: &Principal,
    revoked_at: Option<Instant>,
    deliveries: &[Delivery],
    published: &BTreeMap<String, Published>,
    out: &mut Vec<String>,
) -> AfterRevocation {
    let mut after = AfterRevocation::default();
    let mut count: HashMap<&str, usize> = HashMap::new();
    let mut last_seq = 0u64;
    let mut last_id = String::new();
    for d in deliveries {
        let n = count.entry(d.id.as_str()).or_default();
        *n += 1;
        if *n == 2 {
            out.push(format!(
                "{name}: received {} twice (second on connection {} to {})",
                d.id, d.conn, d.node
            ));
        }
        let Some(e) = published.get(&d.id) else {
            out.push(format!("{name}: received {:?}, an id no publisher used", d.id));
            continue;
        };
        if !e.visible_to(p) {
            out.push(format!(
                "{name}: received {} on {} which it may not see (tenant {:?}, topics {:?}, audience {:?})",
                e.id, d.node, e.tenant, e.topics, e.audience
            ));
        }
        if d.data != e.data || d.event != e.event_type {
            out.push(format!(
                "{name}: {} arrived as event {:?} data {:?}, published as {:?} {:?}",
                e.id, d.event, d.data, e.event_type, e.data
            ));
        }
        if let Some(at) = revoked_at {
            if e.first_sent > at {
                after.count += 1;
                after.max_lag = after.max_lag.max(e.first_sent - at);
                after.nodes.insert(d.node.clone());
            }
        }
        if let Some(seq) = e.seq() {
            if seq <= last_seq && *n == 1 {
                out.push(format!(
                    "{name}: {} (seq {seq}) arrived after {last_id} (seq {last_seq}) on connection {} to {}",
                    e.id, d.conn, d.node
                ));
            }
            last_seq = last_seq.max(seq);
            last_id.clone_from(&e.id);
        }
    }
    // What was owed: every answered event it may see; for a revoked
    // account only those up to the last one it received.
    let owed_up_to = if revoked_at.is_some() { last_seq } else { u64::MAX };
    let mut missing = Vec::new();
    for e in published.values() {
        let owed = match e.answer {
            Some(Answer::Stored(seq)) => seq <= owed_up_to,
            Some(Answer::Duplicate) => revoked_at.is_none(),
            None => false,
        };
        if owed && e.visible_to(p) && !count.contains_key(e.id.as_str()) {
            missing.push(format!("{}(seq {:?})", e.id, e.seq()));
        }
    }
    if !missing.is_empty() {
        let shown = missing.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
        out.push(format!(
            "{name}: {} owed events never arrived: {shown}{}",
            missing.len(),
            if missing.len() > 12 { ", ..." } else { "" }
        ));
    }
    after
}

#[cfg(test)]
mod tests {
    use super::selector_matches;

    #[test]
    fn selectors_match_as_documented() {
        assert!(selector_matches("*", "orders.1"));
        assert!(selector_matches("orders.*", "orders.1"));
        assert!(!selector_matches("orders.*", "orders.1.x"));
        assert!(selector_matches("orders.>", "orders.1.x"));
        assert!(!selector_matches("orders.>", "orders"));
        assert!(selector_matches("chat.a", "chat.a"));
        assert!(!selector_matches("chat.a", "chat.b"));
        assert!(selector_matches("alerts.*.cpu", "alerts.sys.cpu"));
    }
}
