//! The world the oracle draws from, and the scenarios it plays.
//!
//! Every vocabulary here is deliberately tiny: two tenants plus the hub-wide
//! space, two account names that exist in every one of them, two sessions,
//! roles and groups, a handful of topics. Small sets make coincidences (the
//! same `alice` in two tenants, a selector that happens to match a URI)
//! frequent, and coincidences are where visibility bugs hide.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use std::fmt;

/// A name from the world's vocabulary.
pub type Label = &'static str;

/// Tenants; `None` stands for hub-wide.
pub const TENANTS: [Label; 2] = ["acme", "globex"];
/// Account names, present on purpose in every tenant and hub-wide.
pub const SUBS: [Label; 2] = ["alice", "bob"];
/// Session ids.
pub const SIDS: [Label; 2] = ["s1", "s2"];
/// Roles.
pub const ROLES: [Label; 2] = ["r1", "r2"];
/// Groups.
pub const GROUPS: [Label; 2] = ["g1", "g2"];

/// Every topic events are published on: dotted subjects for the NATS-style
/// wildcards and URIs for the templates, few enough that most selectors
/// match something.
pub const TOPICS: [Label; 8] = [
    "a",
    "a.b",
    "a.c",
    "a.b.c",
    "x.y",
    "https://ex.test/items/1",
    "https://ex.test/items/2",
    "https://ex.test/users/1",
];

/// Every selector kind: everything, exact topics, one-segment and
/// many-segment wildcards (leading and trailing), and URI templates.
pub const SELECTORS: [Label; 11] = [
    "*",
    "a",
    "a.b",
    "x.y",
    "a.*",
    "a.>",
    "*.b",
    "x.*",
    "https://ex.test/items/1",
    "https://ex.test/items/{id}",
    "https://ex.test/{kind}/1",
];

/// What a subscriber authenticates with.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A native HS256 JWT.
    Native {
        sub: Label,
        tenant: Option<Label>,
        sid: Option<Label>,
        roles: Vec<Label>,
        groups: Vec<Label>,
        /// `herald.subscribe`: what the credential may see.
        may: Vec<Label>,
    },
    /// A Mercure subscriber JWT; `private` is its `mercure.subscribe` claim.
    Mercure { sub: Option<Label>, private: Vec<Label> },
    /// A Mercure subscriber without a token.
    Anonymous,
}

/// One subscriber: a credential and the selectors it asks for.
#[derive(Clone, Debug)]
pub struct Subscriber {
    pub cred: Credential,
    pub asks: Vec<Label>,
}

/// Who publishes an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publisher {
    /// The hub-wide API key (publish, tokens, revoke, admin).
    AdminKey,
    /// An API key bound to tenant `acme`.
    AcmeKey,
    /// A JWT with `herald.publish: ["*"]`, of a tenant or hub-wide.
    Jwt { tenant: Option<Label> },
    /// A Mercure publisher JWT (form POST).
    Mercure,
}

impl Publisher {
    /// The tenant a publisher is bound to: its events always carry it.
    pub fn tenant(self) -> Option<Label> {
        match self {
            Publisher::AcmeKey => Some("acme"),
            Publisher::Jwt { tenant } => tenant,
            Publisher::AdminKey | Publisher::Mercure => None,
        }
    }
}

/// An audience object as published (`None` lists are absent fields).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudienceSpec {
    pub tenant: Option<Label>,
    pub users: Option<Vec<Label>>,
    pub sessions: Option<Vec<Label>>,
    pub roles: Option<Vec<Label>>,
    pub groups: Option<Vec<Label>>,
}

/// One publish.
#[derive(Clone, Debug)]
pub struct Publish {
    pub by: Publisher,
    pub topics: Vec<Label>,
    /// `None` is `"public"`; ignored for Mercure publishes.
    pub audience: Option<AudienceSpec>,
    /// Mercure `private=on`.
    pub private: bool,
    /// Native `retain: true` (always a single topic, see the model).
    pub retain: bool,
    /// Whether the publisher chooses the id instead of the hub.
    pub client_id: bool,
}

/// What a revocation revokes.
#[derive(Clone, Copy, Debug)]
pub enum RevokeKind {
    Session(Label),
    Logout,
    Role(Label),
}

/// A revocation posted with the hub-wide admin key.
#[derive(Clone, Copy, Debug)]
pub struct Revoke {
    pub kind: RevokeKind,
    pub account: Label,
    /// The `"tenant"` field scoping it; `None` means every tenant.
    pub tenant: Option<Label>,
}

impl Revoke {
    /// The wire type, which is also the `reason` of `event: revoked`.
    pub fn wire_type(&self) -> &'static str {
        match self.kind {
            RevokeKind::Session(_) => "session_revoke",
            RevokeKind::Logout => "logout",
            RevokeKind::Role(_) => "role_grant_revoke",
        }
    }
}

/// One step of a scenario. References are indices taken modulo what exists
/// when the step runs, so removing steps while shrinking never breaks one.
#[derive(Clone, Debug)]
pub enum Action {
    Publish(Publish),
    /// Opens a stream for a subscriber; `resume` picks an accepted event
    /// whose id is sent as `Last-Event-ID`.
    Open {
        subscriber: usize,
        resume: Option<usize>,
    },
    /// Drops a stream and reopens it with the same credential and the id of
    /// the last event it received (or fresh when it received none).
    Reconnect {
        stream: usize,
    },
    Revoke(Revoke),
}

/// A whole case: who subscribes, and what happens in which order.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub subscribers: Vec<Subscriber>,
    pub actions: Vec<Action>,
}

fn some_of(rng: &mut StdRng, from: &[Label], max: usize) -> Vec<Label> {
    let n = rng.random_range(0..=max);
    let mut v: Vec<Label> = (0..n).map(|_| *from.choose(rng).expect("non-empty")).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn opt_tenant(rng: &mut StdRng) -> Option<Label> {
    if rng.random_bool(0.35) {
        None
    } else {
        Some(*TENANTS.choose(rng).expect("tenants"))
    }
}

fn subscriber(rng: &mut StdRng) -> Subscriber {
    let kind = rng.random_range(0..10);
    if kind < 6 {
        // A credential that may see everything, or a few selectors.
        let may = if rng.random_bool(0.35) {
            vec!["*"]
        } else {
            let mut v = some_of(rng, &SELECTORS[1..], 3);
            if v.is_empty() {
                v.push(*SELECTORS[1..].choose(rng).expect("selectors"));
            }
            v
        };
        let asks = native_asks(rng, &may);
        Subscriber {
            cred: Credential::Native {
                sub: SUBS.choose(rng).expect("subs"),
                tenant: opt_tenant(rng),
                sid: if rng.random_bool(0.7) {
                    Some(SIDS.choose(rng).expect("sids"))
                } else {
                    None
                },
                roles: some_of(rng, &ROLES, 2),
                groups: some_of(rng, &GROUPS, 2),
                may,
            },
            asks,
        }
    } else {
        let asks = {
            let mut v = some_of(rng, &SELECTORS, 2);
            if v.is_empty() {
                v.push("*");
            }
            v
        };
        let cred = if kind < 9 {
            Credential::Mercure {
                sub: if rng.random_bool(0.8) {
                    Some(SUBS.choose(rng).expect("subs"))
                } else {
                    None
                },
                private: some_of(rng, &SELECTORS, 2),
            }
        } else {
            Credential::Anonymous
        };
        Subscriber { cred, asks }
    }
}

/// Selectors a native stream asks for. The hub refuses (`403`) a selector
/// its credential does not cover, and "covers" between two wildcards is the
/// hub's business, not the model's: so a native stream asks only for `*`
/// (always allowed), one of its credential's own selectors, an exact topic
/// one of them matches, or anything when its credential has `*`.
fn native_asks(rng: &mut StdRng, may: &[Label]) -> Vec<Label> {
    let n = rng.random_range(1..=2);
    let mut v = Vec::new();
    for _ in 0..n {
        let pick = match rng.random_range(0..4) {
            0 => "*",
            1 => *may.choose(rng).expect("may"),
            2 => {
                let covered: Vec<Label> = TOPICS
                    .iter()
                    .copied()
                    .filter(|t| may.iter().any(|m| super::model::selector_matches(m, t)))
                    .collect();
                covered.choose(rng).copied().unwrap_or("*")
            }
            _ if may.contains(&"*") => *SELECTORS.choose(rng).expect("selectors"),
            _ => *may.choose(rng).expect("may"),
        };
        v.push(pick);
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn audience(rng: &mut StdRng) -> Option<AudienceSpec> {
    if rng.random_bool(0.25) {
        return None;
    }
    let list = |rng: &mut StdRng, from: &[Label], p: f64| {
        rng.random_bool(p).then(|| {
            // Now and then an empty list, which matches nobody.
            if rng.random_bool(0.08) {
                Vec::new()
            } else {
                let mut v = some_of(rng, from, 2);
                if v.is_empty() {
                    v.push(*from.choose(rng).expect("labels"));
                }
                v
            }
        })
    };
    let mut a = AudienceSpec {
        tenant: if rng.random_bool(0.45) {
            Some(*TENANTS.choose(rng).expect("tenants"))
        } else {
            None
        },
        users: list(rng, &SUBS, 0.45),
        sessions: list(rng, &SIDS, 0.25),
        roles: list(rng, &ROLES, 0.25),
        groups: list(rng, &GROUPS, 0.25),
    };
    if a == AudienceSpec::default() {
        // `{}` is refused as ambiguous; an object always restricts.
        a.users = Some(vec![SUBS.choose(rng).expect("subs")]);
    }
    Some(a)
}

fn publish(rng: &mut StdRng) -> Publish {
    let by = match rng.random_range(0..20) {
        0..=6 => Publisher::AdminKey,
        7..=10 => Publisher::AcmeKey,
        11..=14 => Publisher::Jwt {
            tenant: opt_tenant(rng),
        },
        _ => Publisher::Mercure,
    };
    // Retained events hold one topic each so that the snapshot has one
    // unambiguous meaning (see the model).
    let retain = by != Publisher::Mercure && rng.random_bool(0.3);
    let n = if !retain && rng.random_bool(0.3) { 2 } else { 1 };
    let mut topics: Vec<Label> = (0..n).map(|_| *TOPICS.choose(rng).expect("topics")).collect();
    topics.dedup();
    Publish {
        by,
        topics,
        audience: if by == Publisher::Mercure { None } else { audience(rng) },
        private: by == Publisher::Mercure && rng.random_bool(0.5),
        retain,
        client_id: rng.random_bool(0.15),
    }
}

fn revoke(rng: &mut StdRng) -> Revoke {
    Revoke {
        kind: match rng.random_range(0..3) {
            0 => RevokeKind::Session(SIDS.choose(rng).expect("sids")),
            1 => RevokeKind::Logout,
            _ => RevokeKind::Role(ROLES.choose(rng).expect("roles")),
        },
        account: SUBS.choose(rng).expect("subs"),
        tenant: if rng.random_bool(0.5) {
            None
        } else {
            Some(*TENANTS.choose(rng).expect("tenants"))
        },
    }
}

impl Scenario {
    /// Draws a scenario from `seed`.
    pub fn generate(seed: u64) -> Scenario {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(seed);
        let subscribers: Vec<Subscriber> = (0..rng.random_range(1..=5)).map(|_| subscriber(&mut rng)).collect();
        let mut actions = Vec::new();
        // Some publishes before anyone listens, so snapshots and resumes
        // have something to replay.
        for _ in 0..rng.random_range(0..=4) {
            actions.push(Action::Publish(publish(&mut rng)));
        }
        for _ in 0..rng.random_range(4..=22) {
            let a = match rng.random_range(0..100) {
                0..=49 => Action::Publish(publish(&mut rng)),
                50..=72 => Action::Open {
                    subscriber: rng.random_range(0..subscribers.len()),
                    resume: rng.random_bool(0.3).then(|| rng.random_range(0..64)),
                },
                73..=84 => Action::Reconnect {
                    stream: rng.random_range(0..64),
                },
                _ => Action::Revoke(revoke(&mut rng)),
            };
            actions.push(a);
        }
        // Everyone listens at least once.
        for s in 0..subscribers.len() {
            if !actions
                .iter()
                .any(|a| matches!(a, Action::Open { subscriber, .. } if *subscriber == s))
            {
                let at = rng.random_range(0..=actions.len());
                actions.insert(
                    at,
                    Action::Open {
                        subscriber: s,
                        resume: None,
                    },
                );
            }
        }
        Scenario {
            seed,
            subscribers,
            actions,
        }
    }
}

fn list(v: &[Label]) -> String {
    format!("[{}]", v.join(","))
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Native {
                sub,
                tenant,
                sid,
                roles,
                groups,
                may,
            } => write!(
                f,
                "native {sub}@{} sid={} roles={} groups={} may={}",
                tenant.unwrap_or("hub"),
                sid.unwrap_or("-"),
                list(roles),
                list(groups),
                list(may)
            ),
            Credential::Mercure { sub, private } => write!(
                f,
                "mercure sub={} mercure.subscribe={}",
                sub.unwrap_or("(none)"),
                list(private)
            ),
            Credential::Anonymous => write!(f, "anonymous mercure"),
        }
    }
}

impl fmt::Display for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} asks={}", self.cred, list(&self.asks))
    }
}

impl fmt::Display for AudienceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = self.tenant {
            parts.push(format!("tenant:{t}"));
        }
        for (k, v) in [
            ("users", &self.users),
            ("sessions", &self.sessions),
            ("roles", &self.roles),
            ("groups", &self.groups),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}:{}", list(v)));
            }
        }
        write!(f, "{{{}}}", parts.join(" "))
    }
}

impl fmt::Display for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Publisher::AdminKey => write!(f, "hub-wide admin key"),
            Publisher::AcmeKey => write!(f, "acme-bound key"),
            Publisher::Jwt { tenant } => write!(f, "JWT of {}", tenant.unwrap_or("hub")),
            Publisher::Mercure => write!(f, "Mercure publisher"),
        }
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "publish by {} topics={}", self.by, list(&self.topics))?;
        if self.by == Publisher::Mercure {
            write!(f, " {}", if self.private { "private" } else { "public" })?;
        } else {
            match &self.audience {
                None => write!(f, " audience=public")?,
                Some(a) => write!(f, " audience={a}")?,
            }
        }
        if self.retain {
            write!(f, " retain")?;
        }
        if self.client_id {
            write!(f, " client-id")?;
        }
        Ok(())
    }
}

impl fmt::Display for Revoke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "revoke {} account={}", self.wire_type(), self.account)?;
        match self.kind {
            RevokeKind::Session(s) => write!(f, " session={s}")?,
            RevokeKind::Role(r) => write!(f, " role={r}")?,
            RevokeKind::Logout => {}
        }
        write!(f, " tenant={}", self.tenant.unwrap_or("(every tenant)"))
    }
}
