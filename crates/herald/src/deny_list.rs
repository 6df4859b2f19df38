//! Sticky deny rules: the half of a revocation that outlives the streams it
//! closed. Indexed by the key each rule names (account, session, token id,
//! tenant), so checking a credential costs a few hash lookups however many
//! revocations are in force.

use herald_core::{DenyRule, Principal, Revocation, SessionHash};
use parking_lot::RwLock;
use std::collections::HashMap;

#[derive(Default)]
struct Rules {
    by_account: HashMap<String, Vec<DenyRule>>,
    by_session: HashMap<SessionHash, Vec<DenyRule>>,
    by_jti: HashMap<String, Vec<DenyRule>>,
    by_tenant: HashMap<String, Vec<DenyRule>>,
}

/// The deny rules in force.
#[derive(Default)]
pub struct DenyList {
    rules: RwLock<Rules>,
}

impl DenyList {
    /// Adds a rule.
    pub fn add(&self, rule: DenyRule) {
        let mut r = self.rules.write();
        match &rule.revocation {
            Revocation::RoleGrantRevoke { account, .. } | Revocation::AccountRevoke { account, .. } => {
                r.by_account.entry(account.clone()).or_default().push(rule)
            }
            Revocation::SessionRevoke { session, .. } => r.by_session.entry(*session).or_default().push(rule),
            Revocation::TokenRevoke { jti } => r.by_jti.entry(jti.clone()).or_default().push(rule),
            Revocation::TenantRevoke { tenant } => r.by_tenant.entry(tenant.clone()).or_default().push(rule),
        }
    }

    /// The first rule refusing `p`, if any (its wire type, for the message).
    pub fn denies(&self, p: &Principal, now_ms: u64) -> Option<&'static str> {
        let r = self.rules.read();
        let live = |rules: Option<&Vec<DenyRule>>| -> Option<&'static str> {
            rules?
                .iter()
                .find(|rule| rule.expires_at_ms > now_ms && rule.denies(p))
                .map(|rule| rule.revocation.reason())
        };
        live(r.by_account.get(&p.sub))
            .or_else(|| p.session.and_then(|h| live(r.by_session.get(&h))))
            .or_else(|| p.jti.as_ref().and_then(|j| live(r.by_jti.get(j))))
            .or_else(|| p.tenant.as_ref().and_then(|t| live(r.by_tenant.get(t))))
    }

    /// Forgets rules that can no longer match a valid credential.
    pub fn purge(&self, now_ms: u64) {
        fn prune<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Vec<DenyRule>>, now_ms: u64) {
            m.retain(|_, v| {
                v.retain(|r| r.expires_at_ms > now_ms);
                !v.is_empty()
            });
        }
        let mut r = self.rules.write();
        prune(&mut r.by_account, now_ms);
        prune(&mut r.by_session, now_ms);
        prune(&mut r.by_jti, now_ms);
        prune(&mut r.by_tenant, now_ms);
    }

    /// Rules in force (for metrics).
    pub fn len(&self) -> usize {
        let r = self.rules.read();
        r.by_account.values().map(Vec::len).sum::<usize>()
            + r.by_session.values().map(Vec::len).sum::<usize>()
            + r.by_jti.values().map(Vec::len).sum::<usize>()
            + r.by_tenant.values().map(Vec::len).sum::<usize>()
    }

    /// Whether no rule is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
