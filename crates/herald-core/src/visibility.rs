//! The visibility rule: the one place that decides whether a principal may
//! see an event. Every delivery path (live fan-out, history replay, retained
//! snapshots, every protocol) calls [`is_visible`] and nothing else.

use crate::audience::Audience;
use crate::event::Event;
use crate::principal::Principal;
use crate::selector::SelectorSet;

/// Whether `principal`, subscribed with `subscription`, may receive `event`.
///
/// A topic of the event must match both the subscription (what the client
/// asked for) and the principal's own subscribe selectors (what its
/// credential allows): selectors route, they never authorize on their own.
/// Then the audience must admit the principal. The event carries who may
/// see it whatever protocol published it, so this holds for native events,
/// Mercure updates and the hub's own events alike.
pub fn is_visible(principal: &Principal, subscription: &SelectorSet, event: &Event) -> bool {
    let topic_ok = event
        .topics
        .iter()
        .any(|t| subscription.matches(t) && principal.subscribe.matches(t));
    topic_ok && audience_admits(&event.audience, principal) && private_admits(event, principal)
}

/// A Mercure private update reaches only a subscriber that holds a Mercure
/// grant for private updates (`mercure.subscribe`) matching one of its
/// topics. Native credentials carry no such grant (`private_updates` is
/// `None`), so no native stream ever sees one, whatever its selectors.
fn private_admits(event: &Event, principal: &Principal) -> bool {
    !event.audience.private
        || principal
            .private_updates
            .as_ref()
            .is_some_and(|gate| event.topics.iter().any(|t| gate.matches(t)))
}

/// Whether every restricting field of `audience` admits `principal`.
pub fn audience_admits(audience: &Audience, principal: &Principal) -> bool {
    // Tenant isolation is structural: a tenant-bound principal sees its own
    // tenant's events and hub-wide ones, never another tenant's; a hub-wide
    // principal does not see tenant events.
    let tenant_ok = match (&audience.tenant, &principal.tenant) {
        (None, _) => true,
        (Some(e), Some(p)) => e == p,
        (Some(_), None) => false,
    };
    // `users` and `sessions` name accounts, and an account is (tenant, sub):
    // they name accounts of the event's own tenant, so a hub-wide event for
    // `alice` reaches the hub-wide `alice`, not `alice` of every tenant.
    let names_accounts = audience.users.is_some() || audience.sessions.is_some();
    let same_tenant = audience.tenant == principal.tenant;
    tenant_ok
        && (!names_accounts || same_tenant)
        && audience
            .users
            .as_ref()
            .is_none_or(|users| users.contains(&principal.sub))
        && audience
            .sessions
            .as_ref()
            .is_none_or(|s| principal.session.is_some_and(|own| s.contains(&own)))
        && audience
            .roles
            .as_ref()
            .is_none_or(|roles| roles.iter().any(|r| principal.roles.contains(r)))
        && audience
            .groups
            .as_ref()
            .is_none_or(|groups| groups.iter().any(|g| principal.groups.contains(g)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionKey;
    use crate::EventDraft;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const LABELS: [&str; 3] = ["a", "b", "c"];

    fn opt_list() -> impl Strategy<Value = Option<Vec<String>>> {
        proptest::option::of(proptest::collection::vec(
            proptest::sample::select(LABELS.to_vec()).prop_map(String::from),
            0..3,
        ))
    }

    /// The naive oracle, written from the prose of the design document,
    /// field by field, with no shared helper.
    fn oracle(
        aud: &Value,
        p_tenant: &Option<String>,
        sub: &str,
        sid: &Option<String>,
        roles: &[String],
        groups: &[String],
    ) -> bool {
        if aud == "public" {
            return true;
        }
        if let Some(t) = aud.get("tenant").and_then(Value::as_str) {
            if p_tenant.as_deref() != Some(t) {
                return false;
            }
        }
        let list = |k: &str| {
            aud.get(k).map(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
        };
        let event_tenant = aud.get("tenant").and_then(Value::as_str);
        if let Some(users) = list("users") {
            if event_tenant != p_tenant.as_deref() || !users.contains(&sub.to_string()) {
                return false;
            }
        }
        if let Some(sessions) = list("sessions") {
            if event_tenant != p_tenant.as_deref() {
                return false;
            }
            match sid {
                Some(s) if sessions.contains(s) => {}
                _ => return false,
            }
        }
        if let Some(rs) = list("roles") {
            if !rs.iter().any(|r| roles.contains(r)) {
                return false;
            }
        }
        if let Some(gs) = list("groups") {
            if !gs.iter().any(|g| groups.contains(g)) {
                return false;
            }
        }
        true
    }

    proptest! {
        #[test]
        fn visibility_matches_the_oracle(
            e_tenant in proptest::option::of(proptest::sample::select(vec!["t1", "t2"])),
            users in opt_list(), sessions in opt_list(), roles in opt_list(), groups in opt_list(),
            public in any::<bool>(),
            p_tenant in proptest::option::of(proptest::sample::select(vec!["t1", "t2"]).prop_map(String::from)),
            sub in proptest::sample::select(LABELS.to_vec()),
            sid in proptest::option::of(proptest::sample::select(LABELS.to_vec()).prop_map(String::from)),
            p_roles in proptest::collection::vec(proptest::sample::select(LABELS.to_vec()).prop_map(String::from), 0..3),
            p_groups in proptest::collection::vec(proptest::sample::select(LABELS.to_vec()).prop_map(String::from), 0..3),
            topic_ok in any::<bool>(),
        ) {
            let mut aud = serde_json::Map::new();
            if let Some(t) = e_tenant { aud.insert("tenant".into(), json!(t)); }
            for (k, v) in [("users", &users), ("sessions", &sessions), ("roles", &roles), ("groups", &groups)] {
                if let Some(v) = v { aud.insert(k.into(), json!(v)); }
            }
            let aud = if public || aud.is_empty() { json!("public") } else { Value::Object(aud) };
            let key = SessionKey::new([3; 32]);
            let draft = EventDraft::from_json(&json!({"topics": ["x.y"], "data": "d", "audience": aud}), &key, &Default::default()).unwrap();
            let event = draft.into_event(1, 0);
            let mut p = Principal::new(sub);
            p.tenant = p_tenant.clone();
            p.session = sid.as_ref().map(|s| key.hash(s));
            p.roles = p_roles.clone();
            p.groups = p_groups.clone();
            let subscription = SelectorSet::parse([if topic_ok { "x.*" } else { "z.>" }]).unwrap();
            let expected = topic_ok && oracle(&aud, &p_tenant, sub, &sid, &p_roles, &p_groups);
            prop_assert_eq!(is_visible(&p, &subscription, &event), expected);
        }
    }

    #[test]
    fn private_updates_need_a_mercure_grant() {
        let key = SessionKey::new([3; 32]);
        let mut e = EventDraft::from_json(
            &json!({"topics": ["x"], "data": "d", "audience": "public"}),
            &key,
            &Default::default(),
        )
        .unwrap();
        e.audience.private = true;
        let e = e.into_event(1, 0);
        // A native credential that may subscribe to everything still has no
        // grant for private updates.
        let native = Principal::new("u");
        assert!(!is_visible(&native, &SelectorSet::all(), &e));
        let mut mercure = Principal::new("m");
        mercure.private_updates = Some(SelectorSet::default());
        assert!(!is_visible(&mercure, &SelectorSet::all(), &e));
        mercure.private_updates = Some(SelectorSet::parse(["x"]).unwrap());
        assert!(is_visible(&mercure, &SelectorSet::all(), &e));
    }

    #[test]
    fn credential_selectors_also_gate() {
        let key = SessionKey::new([3; 32]);
        let e = EventDraft::from_json(
            &json!({"topics": ["x"], "data": "d", "audience": "public"}),
            &key,
            &Default::default(),
        )
        .unwrap()
        .into_event(1, 0);
        let mut p = Principal::new("u");
        p.subscribe = SelectorSet::parse(["y"]).unwrap();
        assert!(!is_visible(&p, &SelectorSet::all(), &e));
        p.subscribe = SelectorSet::parse(["x"]).unwrap();
        assert!(is_visible(&p, &SelectorSet::all(), &e));
    }
}
