//! The model: who must receive what, written from Herald's documented rules
//! and nothing else. It shares no code with the hub on purpose: a rule
//! implemented twice the same wrong way would agree with itself.

use super::world::{Credential, Label, Publish, Publisher, Revoke, RevokeKind, Subscriber};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Whether `selector` matches `topic`: `*` everything; a selector with `{`
/// is a URI template whose expressions each stand for one non-empty path
/// segment; a selector with a `*` or `>` segment is a NATS subject pattern
/// (`*` one segment, a final `>` one or more); anything else is exact.
pub fn selector_matches(selector: &str, topic: &str) -> bool {
    if selector == "*" {
        return true;
    }
    if selector.contains('{') {
        return template(selector.as_bytes(), topic.as_bytes());
    }
    let pattern: Vec<&str> = selector.split('.').collect();
    if pattern.iter().any(|s| *s == "*" || *s == ">") {
        let topic: Vec<&str> = topic.split('.').collect();
        return subject(&pattern, &topic);
    }
    selector == topic
}

fn subject(pattern: &[&str], topic: &[&str]) -> bool {
    match (pattern.first(), topic.first()) {
        (None, None) => true,
        (Some(&">"), Some(_)) => pattern.len() == 1,
        (Some(&"*"), Some(_)) => subject(&pattern[1..], &topic[1..]),
        (Some(p), Some(t)) if p == t => subject(&pattern[1..], &topic[1..]),
        _ => false,
    }
}

fn template(tpl: &[u8], topic: &[u8]) -> bool {
    match tpl.first() {
        None => topic.is_empty(),
        Some(b'{') => {
            let close = tpl.iter().position(|&b| b == b'}').expect("closed expression");
            let rest = &tpl[close + 1..];
            // One or more characters of a single segment, then the rest.
            (1..=topic.len())
                .take_while(|&n| !matches!(topic[n - 1], b'/' | b'?' | b'#'))
                .any(|n| template(rest, &topic[n..]))
        }
        Some(&c) => topic.first() == Some(&c) && template(&tpl[1..], &topic[1..]),
    }
}

fn any_matches(selectors: &[Label], topic: &str) -> bool {
    selectors.iter().any(|s| selector_matches(s, topic))
}

/// The audience an accepted event carries: the published one, bound to the
/// publisher's tenant, lists as sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Carried {
    pub tenant: Option<Label>,
    pub users: Option<BTreeSet<Label>>,
    pub sessions: Option<BTreeSet<Label>>,
    pub roles: Option<BTreeSet<Label>>,
    pub groups: Option<BTreeSet<Label>>,
    /// A Mercure private update.
    pub private: bool,
}

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Carried::default() {
            return write!(f, "public");
        }
        let mut parts = Vec::new();
        if self.private {
            parts.push("mercure-private".to_string());
        }
        parts.push(format!("tenant:{}", self.tenant.unwrap_or("hub")));
        for (k, v) in [
            ("users", &self.users),
            ("sessions", &self.sessions),
            ("roles", &self.roles),
            ("groups", &self.groups),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}:[{}]", v.iter().copied().collect::<Vec<_>>().join(",")));
            }
        }
        write!(f, "{{{}}}", parts.join(" "))
    }
}

/// What the hub must do with a publish: accept it carrying this audience,
/// or refuse it (`403 tenant_forbidden`) because a tenant-bound publisher
/// named another tenant.
pub fn carried(p: &Publish) -> Result<Carried, &'static str> {
    if p.by == Publisher::Mercure {
        return Ok(Carried {
            private: p.private,
            ..Carried::default()
        });
    }
    let set = |v: &Option<Vec<Label>>| v.as_ref().map(|v| v.iter().copied().collect::<BTreeSet<_>>());
    let spec = p.audience.clone().unwrap_or_default();
    let tenant = match (p.by.tenant(), spec.tenant) {
        (Some(own), Some(named)) if own != named => return Err("tenant_forbidden"),
        (Some(own), _) => Some(own),
        (None, named) => named,
    };
    Ok(Carried {
        tenant,
        users: set(&spec.users),
        sessions: set(&spec.sessions),
        roles: set(&spec.roles),
        groups: set(&spec.groups),
        private: false,
    })
}

/// The identity behind a stream, as the rules see it.
#[derive(Clone, Debug)]
pub struct Who {
    pub tenant: Option<Label>,
    /// `None` when no listed name can ever be it (anonymous, a Mercure
    /// token without `sub`).
    pub sub: Option<Label>,
    pub sid: Option<Label>,
    pub roles: Vec<Label>,
    pub groups: Vec<Label>,
    /// The credential's subscribe selectors; `None` = everything.
    pub may: Option<Vec<Label>>,
    /// Mercure subscribers with a token: their `mercure.subscribe`.
    pub private_gate: Option<Vec<Label>>,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Native,
    Mercure,
    Anonymous,
}

impl Who {
    pub fn of(s: &Subscriber) -> Who {
        match &s.cred {
            Credential::Native {
                sub,
                tenant,
                sid,
                roles,
                groups,
                may,
            } => Who {
                tenant: *tenant,
                sub: Some(sub),
                sid: *sid,
                roles: roles.clone(),
                groups: groups.clone(),
                may: Some(may.clone()),
                private_gate: None,
                kind: Kind::Native,
            },
            // A Mercure token is a hub-wide account named by its `sub`,
            // with no session, roles or groups.
            Credential::Mercure { sub, private } => Who {
                tenant: None,
                sub: *sub,
                sid: None,
                roles: Vec::new(),
                groups: Vec::new(),
                may: None,
                private_gate: Some(private.clone()),
                kind: Kind::Mercure,
            },
            Credential::Anonymous => Who {
                tenant: None,
                sub: None,
                sid: None,
                roles: Vec::new(),
                groups: Vec::new(),
                may: None,
                private_gate: None,
                kind: Kind::Anonymous,
            },
        }
    }
}

/// Why the model keeps an event from a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Denial {
    /// A Mercure private update, and the stream is native.
    PrivateToNative,
    /// A Mercure private update, and the subscriber is anonymous.
    PrivateToAnonymous,
    /// A Mercure private update none of whose topics the token's
    /// `mercure.subscribe` matches.
    PrivateOutsideGrant,
    /// A hub subscription event (`/.well-known/mercure/...`) on a native stream.
    SubscriptionEventToNative,
    /// A tenant event, and the principal is of another tenant or hub-wide.
    OtherTenant,
    /// `users`/`sessions` name accounts of the event's own tenant, and the
    /// principal is of another tenant (or hub-wide vs. tenant).
    AccountOfOtherTenant,
    NotInUsers,
    NotInSessions,
    NoSharedRole,
    NoSharedGroup,
    /// No topic of the event matches what the stream asked for.
    TopicNotAsked,
    /// The asked-for topics are outside the credential's own selectors.
    TopicNotAllowed,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denial::PrivateToNative => "a Mercure private update reached a native stream",
            Denial::PrivateToAnonymous => "a Mercure private update reached an anonymous subscriber",
            Denial::PrivateOutsideGrant => "a Mercure private update outside the token's mercure.subscribe",
            Denial::SubscriptionEventToNative => "a Mercure subscription event reached a native stream",
            Denial::OtherTenant => "a tenant event reached a principal of another tenant or a hub-wide one",
            Denial::AccountOfOtherTenant => {
                "a users/sessions list matched an account of another tenant than the event's"
            }
            Denial::NotInUsers => "the principal's sub is not in `users`",
            Denial::NotInSessions => "the principal's session is not in `sessions`",
            Denial::NoSharedRole => "the principal holds none of `roles`",
            Denial::NoSharedGroup => "the principal is in none of `groups`",
            Denial::TopicNotAsked => "no topic matches the stream's selectors",
            Denial::TopicNotAllowed => "the matching topics are outside the credential's subscribe selectors",
        })
    }
}

/// Every reason the model keeps an event with these topics and this
/// audience from `who` asking for `asks`; empty when it is visible.
pub fn denials(who: &Who, asks: &[Label], topics: &[&str], aud: &Carried) -> Vec<Denial> {
    let mut out = Vec::new();
    if aud.private {
        match who.kind {
            Kind::Native => out.push(Denial::PrivateToNative),
            Kind::Anonymous => out.push(Denial::PrivateToAnonymous),
            Kind::Mercure => {
                let gate = who.private_gate.as_deref().unwrap_or_default();
                if !topics.iter().any(|t| any_matches(gate, t)) {
                    out.push(Denial::PrivateOutsideGrant);
                }
            }
        }
    }
    if who.kind == Kind::Native && topics.iter().any(|t| t.starts_with("/.well-known/mercure/")) {
        out.push(Denial::SubscriptionEventToNative);
    }
    let asked: Vec<&&str> = topics.iter().filter(|t| any_matches(asks, t)).collect();
    if asked.is_empty() {
        out.push(Denial::TopicNotAsked);
    } else if let Some(may) = &who.may {
        if !asked.iter().any(|t| any_matches(may, t)) {
            out.push(Denial::TopicNotAllowed);
        }
    }
    if let Some(t) = aud.tenant {
        if who.tenant != Some(t) {
            out.push(Denial::OtherTenant);
        }
    }
    if (aud.users.is_some() || aud.sessions.is_some()) && who.tenant != aud.tenant {
        out.push(Denial::AccountOfOtherTenant);
    }
    if let Some(users) = &aud.users {
        if !who.sub.is_some_and(|s| users.contains(s)) {
            out.push(Denial::NotInUsers);
        }
    }
    if let Some(sessions) = &aud.sessions {
        if !who.sid.is_some_and(|s| sessions.contains(s)) {
            out.push(Denial::NotInSessions);
        }
    }
    if let Some(roles) = &aud.roles {
        if !who.roles.iter().any(|r| roles.contains(r)) {
            out.push(Denial::NoSharedRole);
        }
    }
    if let Some(groups) = &aud.groups {
        if !who.groups.iter().any(|g| groups.contains(g)) {
            out.push(Denial::NoSharedGroup);
        }
    }
    out
}

/// Whether a revocation closes (and keeps out) `who`'s streams: the same
/// account name, of the named tenant (any tenant, and hub-wide, when none
/// is named), with the session or role it names.
pub fn revokes(r: &Revoke, who: &Who) -> bool {
    if who.kind == Kind::Anonymous || who.sub != Some(r.account) {
        return false;
    }
    if r.tenant.is_some() && who.tenant != r.tenant {
        return false;
    }
    match r.kind {
        RevokeKind::Session(s) => who.sid == Some(s),
        RevokeKind::Logout => true,
        RevokeKind::Role(role) => who.roles.contains(&role),
    }
}

/// An event the hub accepted, as the model remembers it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// The id the hub answered with.
    pub id: String,
    pub data: String,
    pub topics: Vec<Label>,
    pub aud: Carried,
    pub retain: bool,
    /// Which action published it.
    pub action: usize,
}

/// The retained snapshot over `log`: for each (topic, audience) slot the
/// latest retained event, in publish order. (Retained events hold a single
/// topic, so each holds one slot.)
pub fn snapshot(log: &[Logged]) -> Vec<usize> {
    let mut slots: BTreeMap<(Label, Carried), usize> = BTreeMap::new();
    for (i, e) in log.iter().enumerate() {
        if e.retain {
            for t in &e.topics {
                slots.insert((t, e.aud.clone()), i);
            }
        }
    }
    let mut v: Vec<usize> = slots.into_values().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Where a stream starts.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    /// No `Last-Event-ID`: the retained snapshot, then live events.
    Fresh,
    /// `Last-Event-ID` = the id of log entry `after`.
    Resume { after: usize },
    /// `Last-Event-ID` the hub does not know for this subscriber:
    /// `event: reset`, then as fresh.
    Reset { presented: usize },
}

/// Where a stream presenting the id of log entry `after` starts. A
/// client-chosen id is known within its event's tenant (hub-wide events
/// are a scope of their own) so that one tenant's ids neither collide with
/// nor reveal another's: presented by a principal of another tenant, it is
/// an unknown id, which starts with `event: reset` and the snapshot. The
/// hub's own ids (sequence numbers) are known to everyone.
pub fn resume_from(who: &Who, after: usize, log: &[Logged]) -> Start {
    let e = &log[after];
    let hub_assigned = e.id.bytes().all(|b| b.is_ascii_digit());
    if hub_assigned || e.aud.tenant.is_none() || e.aud.tenant == who.tenant {
        Start::Resume { after }
    } else {
        Start::Reset { presented: after }
    }
}

/// Which part of a stream an expected event belongs to (for reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Snapshot,
    Replay,
    Live,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Snapshot => "retained snapshot",
            Part::Replay => "Last-Event-ID replay",
            Part::Live => "live",
        })
    }
}

/// One thing a stream must receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Event { index: usize, part: Part },
    Reset,
    Revoked { reason: &'static str },
    End,
}

/// Everything a stream opened when the log held `opened_at` events must
/// receive, in order, given the log now and, if a revocation ended it, how
/// long the log was then.
pub fn expected(
    who: &Who,
    asks: &[Label],
    start: Start,
    opened_at: usize,
    log: &[Logged],
    revoked: Option<(usize, &'static str)>,
) -> Vec<Expect> {
    let end = revoked.map_or(log.len(), |(at, _)| at);
    let visible = |i: usize| denials(who, asks, &log[i].topics, &log[i].aud).is_empty();
    let mut out = Vec::new();
    let from = match start {
        Start::Fresh | Start::Reset { .. } => {
            if matches!(start, Start::Reset { .. }) {
                out.push(Expect::Reset);
            }
            for i in snapshot(&log[..opened_at]) {
                if visible(i) {
                    out.push(Expect::Event {
                        index: i,
                        part: Part::Snapshot,
                    });
                }
            }
            opened_at
        }
        Start::Resume { after } => after + 1,
    };
    for i in from..end {
        if visible(i) {
            let part = if i < opened_at { Part::Replay } else { Part::Live };
            out.push(Expect::Event { index: i, part });
        }
    }
    if let Some((_, reason)) = revoked {
        out.push(Expect::Revoked { reason });
        out.push(Expect::End);
    }
    out
}
