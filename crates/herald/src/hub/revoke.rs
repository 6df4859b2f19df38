//! Revocation: closing the streams a revocation matches and keeping the
//! deny rule that refuses the old credential afterwards, on this node and,
//! in a cluster, on every node.

use super::{now_ms, HubInner};
use crate::audit::AuditEntry;
use crate::queue::CloseReason;
use crate::registry::Lookup;
use herald_core::{DenyRule, Principal, Revocation};
use serde_json::json;
use std::collections::HashSet;

/// A revocation applied on this node but not yet shared with the cluster.
#[derive(Debug, Clone, thiserror::Error)]
#[error("applied on this node but not yet shared with the cluster: {0}")]
pub struct NotShared(pub String);

impl HubInner {
    /// Applies a revocation; `by` is the admin or key that posted it, and
    /// `within_tenant` limits it to one tenant's principals. Returns how
    /// many streams closed on this node; in a cluster, an error when the
    /// rule could not be shared with the other nodes in time (it is applied
    /// here, and sharing goes on in the background).
    pub async fn revoke(
        &self,
        revocation: Revocation,
        within_tenant: Option<String>,
        by: Option<&Principal>,
    ) -> Result<usize, NotShared> {
        let now = now_ms();
        let rule = DenyRule {
            seen: Vec::new(),
            revocation,
            within_tenant,
            at_ms: now,
            expires_at_ms: now + (self.config.max_token_lifetime_secs + self.config.jwt_leeway_secs) * 1000,
        };
        let (closed, stored) = self.apply_rule(rule, by);
        // Streams are closed first (the in-memory rule already refuses
        // reconnects); the answer waits until the rule and its audit record
        // are durable (the writer commits jobs in order) and, in a cluster,
        // shared with every node.
        if let Some(store) = &self.store {
            store.persist_deny(&stored).await;
        }
        if let Some(cluster) = &self.cluster {
            // A NATS server dying elects new stream leaders for a few
            // seconds: retried through that, and beyond it in the
            // background, so the rule reaches every node in the end.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                match cluster.broadcast_rule(&stored).await {
                    Ok(()) => break,
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::warn!(error = %e, "revocation not shared with the cluster yet; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "revocation not shared with the cluster; retrying in the background");
                        let (cluster, rule) = (cluster.clone(), stored.clone());
                        tokio::spawn(async move {
                            while cluster.broadcast_rule(&rule).await.is_err() {
                                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            }
                        });
                        return Err(NotShared(e.to_string()));
                    }
                }
            }
        }
        Ok(closed)
    }

    /// How many live streams on this node `revocation` would close, changing
    /// nothing: what an operator is told before confirming one.
    pub fn revocation_reach(&self, revocation: Revocation, within_tenant: Option<String>) -> usize {
        let rule = DenyRule {
            seen: Vec::new(),
            revocation,
            within_tenant,
            at_ms: 0,
            expires_at_ms: 0,
        };
        self.matching(&rule).len()
    }

    /// The live streams a rule closes.
    fn matching(&self, rule: &DenyRule) -> Vec<std::sync::Arc<crate::registry::Subscriber>> {
        // Start from the index the revocation names, so the cost is
        // proportional to the streams it touches, not to all streams.
        let lookup = match &rule.revocation {
            Revocation::RoleGrantRevoke { account, .. } | Revocation::AccountRevoke { account, .. } => {
                Lookup::Account(account)
            }
            Revocation::SessionRevoke { session, .. } => Lookup::Session(*session),
            Revocation::TokenRevoke { jti } => Lookup::Jti(jti),
            Revocation::TenantRevoke { tenant } => Lookup::Tenant(tenant),
        };
        self.registry.find(lookup, |s| rule.applies_to(&s.principal))
    }

    /// Applies a deny rule on this node: closes the matching live streams,
    /// drops SSE tokens it covers, keeps the rule, audits. Returns how many
    /// streams closed and the rule as kept (with the credentials it saw).
    pub fn apply_rule(&self, mut rule: DenyRule, by: Option<&Principal>) -> (usize, DenyRule) {
        let now = now_ms();
        let matching = self.matching(&rule);
        rule.seen.extend(matching.iter().map(|s| s.principal.fingerprint));
        let reason = rule.revocation.reason();
        // The rule goes in before the streams close, so a client that
        // reconnects the instant its stream ends is already refused.
        self.auth.sse_tokens.revoke_where(|p| rule.denies(p));
        let detail = describe(&rule.revocation);
        let rule_tenant = rule.within_tenant.clone();
        self.deny.add(rule.clone());
        // A stream admitted between the lookup above and the rule going in
        // passed admission's last deny check without the rule: look again,
        // now that no new stream can pass it, and close those too.
        // Sets, not scans: a tenant's revocation can match ten thousand
        // streams twice.
        let found: HashSet<u64> = matching.iter().map(|s| s.id).collect();
        let late: Vec<_> = self
            .matching(&rule)
            .into_iter()
            .filter(|s| !found.contains(&s.id))
            .collect();
        let mut seen: HashSet<[u8; 16]> = rule.seen.iter().copied().collect();
        let unseen: Vec<[u8; 16]> = late
            .iter()
            .map(|s| s.principal.fingerprint)
            .filter(|f| seen.insert(*f))
            .collect();
        if !unseen.is_empty() {
            // Their credentials are refused from now on, as the first ones.
            let mut more = rule.clone();
            more.seen = unseen.clone();
            self.deny.add(more);
            rule.seen.extend(unseen);
        }
        let mut closed = 0;
        for s in matching.into_iter().chain(late) {
            if self.registry.close(s.id, CloseReason::Revoked(reason)).is_some() {
                closed += 1;
            }
        }
        metrics::counter!("herald_revocations_total").increment(1);
        let mut entry = by.map_or_else(AuditEntry::default, |p| AuditEntry::about("revocation_applied", p));
        entry.kind = "revocation_applied";
        entry.detail = json!({"closed": closed, "revocation": detail, "within_tenant": rule_tenant});
        self.audit.record(entry, now);
        (closed, rule)
    }
}

/// A revocation as audit JSON (session ids only as a hash prefix).
fn describe(r: &Revocation) -> serde_json::Value {
    match r {
        Revocation::RoleGrantRevoke { account, role } => {
            json!({"type": r.reason(), "account": account, "role": role})
        }
        Revocation::SessionRevoke { account, session } => {
            json!({"type": r.reason(), "account": account, "session": session.prefix()})
        }
        Revocation::AccountRevoke { account, .. } => {
            json!({"type": r.reason(), "account": account})
        }
        Revocation::TokenRevoke { jti } => json!({"type": r.reason(), "jti": jti}),
        Revocation::TenantRevoke { tenant } => json!({"type": r.reason(), "tenant": tenant}),
    }
}
