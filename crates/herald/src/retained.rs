//! Retained snapshots: the latest retained event per topic *and audience*,
//! bounded per tenant.
//!
//! A retained event is what a subscriber receives first when it connects
//! without `Last-Event-ID` ("the current state of this topic"). Keying the
//! snapshot by topic alone lets one tenant's retain wipe another's and a
//! user-scoped retain hide the public one from everybody else, so a slot is
//! a (tenant, topic, audience) triple: each audience keeps its own latest
//! state, and visibility still decides, per subscriber, which slots it sees.
//!
//! Slots are bounded per tenant (hub-wide events count as one more tenant):
//! a publisher can mint as many audiences as it likes, but past the bound its
//! tenant's oldest slot gives way, never another tenant's, and restricted
//! slots (users, sessions, roles, groups, private) give way before the
//! tenant-wide state, so narrow audiences cannot flush what everyone sees. The embedded
//! store also expires slots with the retention age, as it does history.
//!
//! [`RetainedIndex`] is the bookkeeping shared by the in-memory history and
//! the embedded store; each keeps the events themselves in its own way,
//! under the keys given by [`slot_key`].

use herald_core::{Audience, Event, Selector, SelectorSet};
use std::collections::{BTreeSet, HashMap};

/// The part of a slot key that names the tenant
/// ([`herald_core::principal::tenant_key`]).
pub use herald_core::principal::tenant_key as tenant_prefix;

/// The key of the slot an event retained on `topic` occupies:
/// `<tenant prefix>\0<topic>\0<audience>`. Topics never contain control
/// characters, so the separators are unambiguous and every slot of one
/// tenant and topic shares the prefix `<tenant prefix>\0<topic>\0` (see
/// [`topic_range`]).
pub fn slot_key(topic: &str, audience: &Audience) -> String {
    format!(
        "{}\0{topic}\0{}",
        tenant_prefix(audience.tenant.as_deref()),
        audience_key(audience)
    )
}

/// The topic of a slot key (see [`slot_key`]). A snapshot shows a retained
/// event for the slots whose topic the subscriber selected: an event
/// retained on `a` and `b`, since replaced on `a`, is still `b`'s state but
/// no longer `a`'s.
pub fn slot_topic(key: &str) -> Option<&str> {
    let mut parts = key.splitn(3, '\0');
    parts.next()?;
    parts.next()
}

/// Whether the slot under `key` is one a subscriber with `selectors` asked
/// for: judged by the slot's own topic ([`slot_topic`]), not by any topic
/// of the event holding it.
pub fn selected(key: &str, selectors: &SelectorSet) -> bool {
    slot_topic(key).is_some_and(|t| selectors.matches(t))
}

/// A canonical form of everything in an audience but its tenant (which
/// the prefix holds): lists compared as sets, so `["a","b"]` and `["b","a"]`
/// share a slot.
fn audience_key(a: &Audience) -> String {
    fn set(list: &Option<Vec<String>>) -> Option<Vec<&str>> {
        list.as_ref().map(|l| {
            let mut v: Vec<&str> = l.iter().map(String::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
    }
    let sessions = a.sessions.as_ref().map(|l| {
        let mut v: Vec<String> = l.iter().map(|h| h.to_hex()).collect();
        v.sort_unstable();
        v.dedup();
        v
    });
    serde_json::json!([set(&a.users), sessions, set(&a.roles), set(&a.groups), a.private]).to_string()
}

/// The key range holding every slot of `tenant` (or of hub-wide events).
pub fn tenant_range(tenant: Option<&str>) -> (String, String) {
    let p = tenant_prefix(tenant);
    (format!("{p}\0"), format!("{p}\u{1}"))
}

/// The key range holding every slot of `tenant` on exactly `topic`.
pub fn topic_range(tenant: Option<&str>, topic: &str) -> (String, String) {
    let p = tenant_prefix(tenant);
    (format!("{p}\0{topic}\0"), format!("{p}\0{topic}\u{1}"))
}

/// The key ranges a subscriber of `tenant` with `selectors` must read: its
/// tenant's slots and the hub-wide ones (the only events it can see),
/// narrowed to the selected topics when every selector is an exact topic.
pub fn ranges_for(tenant: Option<&str>, selectors: &SelectorSet) -> Vec<(String, String)> {
    let mut tenants = vec![None];
    if tenant.is_some() {
        tenants.push(tenant);
    }
    let exact: Option<Vec<&str>> = selectors
        .0
        .iter()
        .map(|s| match s {
            Selector::Exact(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for t in tenants {
        match &exact {
            Some(topics) => out.extend(topics.iter().map(|topic| topic_range(t, topic))),
            None => out.push(tenant_range(t)),
        }
    }
    out
}

/// Where one slot's event came from, for eviction.
#[derive(Clone, Debug)]
struct Slot {
    seq: u64,
    tenant: Option<String>,
    published_at_ms: u64,
    /// Whether the audience restricts nothing beyond the tenant: the state
    /// everyone in the tenant shares, evicted only when nothing else is left.
    shared: bool,
}

/// Whether `a` restricts nothing beyond its tenant.
fn is_shared(a: &Audience) -> bool {
    a.users.is_none() && a.sessions.is_none() && a.roles.is_none() && a.groups.is_none() && !a.private
}

/// Which slots exist, which event holds each, and the per-tenant bound.
#[derive(Debug)]
pub struct RetainedIndex {
    slots: HashMap<String, Slot>,
    /// Per tenant, its slots oldest first (by the holding event's `seq`):
    /// `false` before `true` in the key, so restricted slots are evicted
    /// before the tenant-wide state any publisher of narrow audiences could
    /// otherwise flush.
    by_tenant: HashMap<Option<String>, BTreeSet<(bool, u64, String)>>,
    per_tenant: usize,
}

/// What an update of the index asks the owner to do with its stored events.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SlotChanges {
    /// Slots to (over)write with the new event.
    pub written: Vec<String>,
    /// Slots to delete: evicted by the per-tenant bound or expired.
    pub removed: Vec<String>,
}

impl RetainedIndex {
    /// An empty index keeping at most `per_tenant` slots per tenant.
    pub fn new(per_tenant: usize) -> RetainedIndex {
        RetainedIndex {
            slots: HashMap::new(),
            by_tenant: HashMap::new(),
            per_tenant: per_tenant.max(1),
        }
    }

    /// Records that `event` (a retained one) now holds its slots. Returns
    /// the slots to write and those to delete.
    pub fn retain(&mut self, event: &Event) -> SlotChanges {
        let mut changes = SlotChanges::default();
        for topic in &event.topics {
            let key = slot_key(topic, &event.audience);
            self.put(
                key.clone(),
                Slot {
                    seq: event.seq,
                    tenant: event.audience.tenant.clone(),
                    published_at_ms: event.published_at_ms,
                    shared: is_shared(&event.audience),
                },
            );
            changes.written.push(key);
        }
        changes.removed = self.enforce_bound(event.audience.tenant.as_ref());
        changes.written.retain(|k| !changes.removed.contains(k));
        changes
    }

    /// Records a slot found in storage at start-up (in any order). Returns
    /// the slots to delete if the bound was lowered since they were written.
    pub fn load(&mut self, key: String, event: &Event) -> Vec<String> {
        self.put(
            key,
            Slot {
                seq: event.seq,
                tenant: event.audience.tenant.clone(),
                published_at_ms: event.published_at_ms,
                shared: is_shared(&event.audience),
            },
        );
        self.enforce_bound(event.audience.tenant.as_ref())
    }

    fn put(&mut self, key: String, slot: Slot) {
        if let Some(old) = self.slots.remove(&key) {
            if let Some(set) = self.by_tenant.get_mut(&old.tenant) {
                set.remove(&(old.shared, old.seq, key.clone()));
            }
        }
        self.by_tenant
            .entry(slot.tenant.clone())
            .or_default()
            .insert((slot.shared, slot.seq, key.clone()));
        self.slots.insert(key, slot);
    }

    fn enforce_bound(&mut self, tenant: Option<&String>) -> Vec<String> {
        let tenant = tenant.cloned();
        let mut removed = Vec::new();
        if let Some(set) = self.by_tenant.get_mut(&tenant) {
            while set.len() > self.per_tenant {
                let Some((_, _, key)) = set.pop_first() else { break };
                self.slots.remove(&key);
                removed.push(key);
            }
            if set.is_empty() {
                self.by_tenant.remove(&tenant);
            }
        }
        removed
    }

    /// Forgets slots whose event was published before `cut_ms` (retention
    /// by age) and returns their keys.
    pub fn expire(&mut self, cut_ms: u64) -> Vec<String> {
        let old: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.published_at_ms < cut_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &old {
            if let Some(slot) = self.slots.remove(key) {
                if let Some(set) = self.by_tenant.get_mut(&slot.tenant) {
                    set.remove(&(slot.shared, slot.seq, key.clone()));
                    if set.is_empty() {
                        self.by_tenant.remove(&slot.tenant);
                    }
                }
            }
        }
        old
    }

    /// Slots held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{EventDraft, Limits, SessionKey};
    use serde_json::json;

    fn event(seq: u64, topic: &str, audience: serde_json::Value) -> Event {
        EventDraft::from_json(
            &json!({"topic": topic, "data": "d", "audience": audience, "retain": true}),
            &SessionKey::new([0; 32]),
            &Limits::default(),
        )
        .unwrap()
        .into_event(seq, seq)
    }

    #[test]
    fn tenants_and_audiences_keep_their_own_slots() {
        let acme = event(1, "t", json!({"tenant": "acme"}));
        let globex = event(2, "t", json!({"tenant": "globex"}));
        let alice = event(3, "t", json!({"tenant": "acme", "users": ["alice"]}));
        let keys: Vec<String> = [&acme, &globex, &alice]
            .iter()
            .map(|e| slot_key("t", &e.audience))
            .collect();
        assert_eq!(keys.iter().collect::<std::collections::HashSet<_>>().len(), 3);
        let reordered = event(4, "t", json!({"tenant": "acme", "roles": ["b", "a"]}));
        let ordered = event(5, "t", json!({"tenant": "acme", "roles": ["a", "b"]}));
        assert_eq!(slot_key("t", &reordered.audience), slot_key("t", &ordered.audience));
        let (lo, hi) = topic_range(Some("acme"), "t");
        assert!(keys[0] > lo && keys[0] < hi && keys[2] > lo && keys[2] < hi);
        assert!(!(keys[1] > lo && keys[1] < hi));
        // A topic that extends another is not in its range.
        let longer = slot_key("t.x", &acme.audience);
        assert!(!(longer > lo && longer < hi));
        assert_eq!(slot_topic(&longer), Some("t.x"));
    }

    #[test]
    fn restricted_slots_give_way_before_the_tenant_wide_state() {
        let mut idx = RetainedIndex::new(2);
        let public = event(1, "orders", json!({"tenant": "acme"}));
        idx.retain(&public);
        for (seq, user) in [(2, "u1"), (3, "u2"), (4, "u3")] {
            let c = idx.retain(&event(seq, "chat", json!({"tenant": "acme", "users": [user]})));
            assert!(!c.removed.contains(&slot_key("orders", &public.audience)), "{c:?}");
        }
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn the_bound_evicts_the_tenants_own_oldest() {
        let mut idx = RetainedIndex::new(2);
        assert!(idx.retain(&event(1, "a", json!({"tenant": "acme"}))).removed.is_empty());
        idx.retain(&event(2, "x", json!({"tenant": "globex"})));
        idx.retain(&event(3, "b", json!({"tenant": "acme"})));
        let c = idx.retain(&event(4, "c", json!({"tenant": "acme"})));
        assert_eq!(
            c.removed,
            vec![slot_key("a", &event(1, "a", json!({"tenant": "acme"})).audience)]
        );
        assert_eq!(idx.len(), 3);
        // Overwriting a slot does not count twice.
        assert!(idx.retain(&event(5, "c", json!({"tenant": "acme"}))).removed.is_empty());
        assert_eq!(idx.expire(3).len(), 1);
        assert_eq!(idx.len(), 2);
    }
}
