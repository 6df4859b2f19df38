//! SSE tokens: short-lived, narrow credentials for `?token=`.
//!
//! `EventSource` cannot set headers, so browsers end up putting credentials
//! in URLs, and URLs end up in logs. An SSE token makes that harmless: it is
//! minted by `POST /v1/tokens` for one principal and a subset of its
//! selectors, lives minutes, and by default works once. A URL copied out of
//! a log is worthless by the time anyone reads it.
//!
//! A token never outlives the credential that minted it: its expiry is
//! clamped to its parent's. Only a hash of each token is kept.

use super::{fingerprint, AuthError};
use crate::store::codec::{PrincipalRecord, TokenRecord};
use crate::store::Store;
use futures_util::future::BoxFuture;
use herald_core::{CredentialKind, Principal};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Every SSE token starts with this.
pub const PREFIX: &str = "st_";

struct Record {
    principal: Principal,
    expires_at_ms: u64,
    minter: String,
    single_use: bool,
    used: bool,
}

impl Record {
    fn to_stored(&self) -> TokenRecord {
        TokenRecord {
            principal: PrincipalRecord::from_principal(&self.principal),
            expires_at_ms: self.expires_at_ms,
            minter: self.minter.clone(),
            single_use: self.single_use,
            used: self.used,
        }
    }

    fn outstanding(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms && !(self.single_use && self.used)
    }
}

/// Why a mint was refused.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The minter already has the maximum of outstanding tokens.
    #[error("at most {0} SSE tokens may be outstanding per minter and subject")]
    TooMany(usize),
    /// The credential the token would be minted from has expired.
    #[error("the credential minting this SSE token has expired")]
    ParentExpired,
    /// The shared ledger (a cluster's) cannot be reached: the token would
    /// work on this node only, so none is minted.
    #[error("SSE tokens cannot be minted now: {0}")]
    Unavailable(String),
}

/// Why the shared ledger refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The minter already has this many tokens outstanding, cluster-wide.
    #[error("at most {0} SSE tokens may be outstanding per minter and subject")]
    TooMany(usize),
    /// The token was already spent (here or on another node).
    #[error("the SSE token was already used")]
    Used,
    /// No such token.
    #[error("unknown SSE token")]
    Unknown,
    /// The ledger cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a single-use token could not be spent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpendError {
    /// Refused: spent already, expired or unknown.
    #[error("{0}")]
    Refused(AuthError),
    /// The shared ledger cannot be reached, so whether it was spent
    /// elsewhere is unknown: the stream is refused (deny when unsure).
    #[error("{0}")]
    Unavailable(String),
}

/// Where SSE tokens are shared between the nodes of a cluster, so a token
/// minted on one node opens a stream on any node, once. The local
/// [`SseTokens`] stays the cache and the single node's ledger; this is the
/// source of truth for what is spent and how many are outstanding.
pub trait TokenLedger: Send + Sync {
    /// Records a freshly minted token, refusing it when its minter already
    /// has `max_outstanding` tokens outstanding for the same subject.
    fn mint<'a>(
        &'a self,
        hash: [u8; 32],
        record: TokenRecord,
        max_outstanding: usize,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// The token's record, if any node minted it.
    fn fetch(&self, hash: [u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>, LedgerError>>;
    /// Spends a single-use token, atomically: of two nodes racing, one wins.
    fn spend(&self, hash: [u8; 32]) -> BoxFuture<'_, Result<(), LedgerError>>;
}

/// The key the outstanding-token cap counts under: the minter's account and
/// the subject's account (see [`herald_core::Account::key`]), so `bob` in
/// one tenant never counts against `bob` in another. The minter's part is
/// length-prefixed: no choice of `sub` can make one pair spell another.
pub fn minter_key(minter: &Principal, subject: &Principal) -> String {
    let by = minter.account().key();
    format!("{}:{by}|{}", by.len(), subject.account().key())
}

fn used() -> AuthError {
    AuthError::new(
        "token_used",
        "this SSE token was already used; mint a fresh one for each connection",
    )
}

#[derive(Default)]
struct State {
    by_hash: HashMap<[u8; 32], Record>,
    by_minter: HashMap<String, Vec<[u8; 32]>>,
}

/// The outstanding SSE tokens.
pub struct SseTokens {
    state: Mutex<State>,
    max_outstanding: usize,
    store: OnceLock<Arc<Store>>,
    ledger: OnceLock<Arc<dyn TokenLedger>>,
}

/// A freshly minted token.
pub struct Minted {
    /// The token itself, returned to the minter once and never stored.
    pub token: String,
    /// Unix time (ms) it expires.
    pub expires_at_ms: u64,
}

fn hash(raw: &str) -> [u8; 32] {
    *blake3::hash(raw.as_bytes()).as_bytes()
}

/// The context under which the reconnect-grant key is derived from the
/// session key ([`herald_core::SessionKey::subkey`]).
pub const GRANT_CONTEXT: &str = "herald 2026 sse-token reconnect grant";

/// The cookie that carries `raw`'s reconnect grant. Each token has its
/// own, so two streams on one page never overwrite each other's grant.
///
/// A reconnect grant lets the browser that opened a stream with a
/// single-use token reopen it with the same URL (a plain `EventSource`
/// reconnects with the URL it was given): the token alone is spent, and a
/// URL copied out of a log stays worthless, but the token together with
/// this `HttpOnly`, `SameSite=Strict` cookie, which only that browser holds,
/// opens it again until the token expires or is revoked.
pub fn grant_cookie_name(raw: &str) -> String {
    format!("herald_rg_{}", hex::encode(&hash(raw)[..6]))
}

/// `raw`'s reconnect grant under `key`: a MAC of the token's hash, so it
/// needs no storage, survives a restart and holds on every node that
/// shares the key; nobody without the key can compute it from the token.
pub fn grant_value(key: &[u8; 32], raw: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blake3::keyed_hash(key, &hash(raw)).as_bytes())
}

/// Whether `presented` is `raw`'s reconnect grant under `key` (compared in
/// constant time).
pub fn grant_matches(key: &[u8; 32], raw: &str, presented: &str) -> bool {
    use base64::Engine;
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(presented.trim()) else {
        return false;
    };
    let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return false;
    };
    blake3::Hash::from(bytes) == blake3::keyed_hash(key, &hash(raw))
}

impl SseTokens {
    /// An empty store allowing `max_outstanding` tokens per minter+subject.
    pub fn new(max_outstanding: usize) -> SseTokens {
        SseTokens {
            state: Mutex::new(State::default()),
            max_outstanding,
            store: OnceLock::new(),
            ledger: OnceLock::new(),
        }
    }

    /// Shares tokens through `ledger` from now on (a cluster node).
    pub fn attach_ledger(&self, ledger: Arc<dyn TokenLedger>) {
        let _ = self.ledger.set(ledger);
    }

    /// Mints a token ([`SseTokens::mint`]) and, on a cluster node, records
    /// it in the shared ledger before it is handed out, so it works on
    /// every node and counts against the cluster-wide cap.
    pub async fn mint_shared(
        &self,
        principal: Principal,
        minter: String,
        expires_at_ms: u64,
        single_use: bool,
        now_ms: u64,
    ) -> Result<Minted, MintError> {
        let minted = self.mint(principal, minter, expires_at_ms, single_use, now_ms)?;
        let Some(ledger) = self.ledger.get() else {
            return Ok(minted);
        };
        let h = hash(&minted.token);
        let record = self.state.lock().by_hash.get(&h).map(Record::to_stored);
        if let Some(record) = record {
            if let Err(e) = ledger.mint(h, record, self.max_outstanding, now_ms).await {
                self.drop_local(h);
                return Err(match e {
                    LedgerError::TooMany(n) => MintError::TooMany(n),
                    other => MintError::Unavailable(other.to_string()),
                });
            }
        }
        Ok(minted)
    }

    /// On a cluster node, fetches a token minted on another node into this
    /// node's cache, so [`SseTokens::redeem`] knows it. A token already
    /// known here, or unknown everywhere, is left alone.
    pub async fn prefetch(&self, raw: &str) {
        let Some(ledger) = self.ledger.get() else {
            return;
        };
        let h = hash(raw);
        if self.state.lock().by_hash.contains_key(&h) {
            return;
        }
        // A record just written on another node may not have reached the
        // replica that answers this read yet, and NATS may be electing a
        // leader: look again for a moment before calling the token unknown.
        let mut rec = None;
        for attempt in 0..10u64 {
            match ledger.fetch(h).await {
                Ok(Some(found)) => {
                    rec = Some(found);
                    break;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "the cluster's SSE token ledger is unreachable"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 * (attempt + 1))).await;
        }
        let Some(rec) = rec else { return };
        let principal = match rec.principal.into_principal() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "dropping an undecodable shared SSE token");
                return;
            }
        };
        let mut state = self.state.lock();
        if state.by_hash.contains_key(&h) {
            return;
        }
        state.by_minter.entry(rec.minter.clone()).or_default().push(h);
        state.by_hash.entry(h).or_insert(Record {
            principal,
            expires_at_ms: rec.expires_at_ms,
            minter: rec.minter,
            single_use: rec.single_use,
            used: rec.used,
        });
    }

    /// Spends a single-use token for a stream being opened: here, and on a
    /// cluster node in the shared ledger too, where of two nodes racing
    /// only one succeeds.
    pub async fn spend(&self, raw: &str, now_ms: u64) -> Result<(), SpendError> {
        self.redeem(raw, now_ms, true).map_err(SpendError::Refused)?;
        let Some(ledger) = self.ledger.get() else {
            return Ok(());
        };
        match ledger.spend(hash(raw)).await {
            Ok(()) => Ok(()),
            Err(LedgerError::Used) => Err(SpendError::Refused(used())),
            Err(LedgerError::Unknown) => Err(SpendError::Refused(AuthError::new(
                "invalid_token",
                "unknown SSE token",
            ))),
            Err(e) => Err(SpendError::Unavailable(e.to_string())),
        }
    }

    fn drop_local(&self, h: [u8; 32]) {
        let mut state = self.state.lock();
        state.by_hash.remove(&h);
        for hashes in state.by_minter.values_mut() {
            hashes.retain(|x| *x != h);
        }
        drop(state);
        self.forget(h);
    }

    /// Keeps token bookkeeping in `store` from now on, after loading what it
    /// holds (tokens outstanding before a restart stay valid, spent ones
    /// stay spent).
    pub fn attach_store(&self, store: Arc<Store>) -> Result<(), crate::store::OpenError> {
        let stored = store.load_tokens()?;
        let mut state = self.state.lock();
        for (hash, rec) in stored {
            let principal = match rec.principal.into_principal() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping an undecodable stored SSE token");
                    continue;
                }
            };
            state.by_minter.entry(rec.minter.clone()).or_default().push(hash);
            state.by_hash.insert(
                hash,
                Record {
                    principal,
                    expires_at_ms: rec.expires_at_ms,
                    minter: rec.minter,
                    single_use: rec.single_use,
                    used: rec.used,
                },
            );
        }
        drop(state);
        let _ = self.store.set(store);
        Ok(())
    }

    fn persist(&self, hash: [u8; 32], record: &Record) {
        if let Some(store) = self.store.get() {
            store.persist_token(hash, &record.to_stored());
        }
    }

    fn forget(&self, hash: [u8; 32]) {
        if let Some(store) = self.store.get() {
            store.forget_token(hash);
        }
    }

    /// Mints a token for `principal` (already narrowed by the caller).
    /// `minter` identifies who is minting for whom ([`minter_key`]). The
    /// token expires at `expires_at_ms` or when `principal` does, whichever
    /// is first; a principal already expired cannot mint.
    pub fn mint(
        &self,
        mut principal: Principal,
        minter: String,
        expires_at_ms: u64,
        single_use: bool,
        now_ms: u64,
    ) -> Result<Minted, MintError> {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        let token = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let h = hash(&token);
        // Never outlive the parent credential: a JWT with seconds left must
        // not mint an hour-long token.
        let expires_at_ms = principal.expires_at_ms.map_or(expires_at_ms, |e| e.min(expires_at_ms));
        if expires_at_ms <= now_ms {
            return Err(MintError::ParentExpired);
        }
        let mut state = self.state.lock();
        let State { by_hash, by_minter } = &mut *state;
        let mine = by_minter.entry(minter.clone()).or_default();
        mine.retain(|h| by_hash.get(h).is_some_and(|r| r.outstanding(now_ms)));
        // On a cluster node the shared ledger counts (tokens minted here
        // may be spent elsewhere, unseen by this node's cache).
        if self.ledger.get().is_none() && mine.len() >= self.max_outstanding {
            return Err(MintError::TooMany(self.max_outstanding));
        }
        mine.push(h);
        principal.expires_at_ms = Some(expires_at_ms);
        principal.fingerprint = fingerprint(&token);
        principal.kind = CredentialKind::SseToken {
            token_id: hex::encode(&h[..6]),
        };
        let record = Record {
            principal,
            expires_at_ms,
            minter,
            single_use,
            used: false,
        };
        self.persist(h, &record);
        by_hash.insert(h, record);
        Ok(Minted { token, expires_at_ms })
    }

    /// Looks a token up; with `consume`, a single-use token is spent.
    pub fn redeem(&self, raw: &str, now_ms: u64, consume: bool) -> Result<Principal, AuthError> {
        let mut state = self.state.lock();
        let record = state
            .by_hash
            .get_mut(&hash(raw))
            .ok_or_else(|| AuthError::new("invalid_token", "unknown SSE token"))?;
        // The principal's own expiry is checked too: it is the parent's,
        // and a record restored from an older store may predate the clamp.
        if now_ms >= record.expires_at_ms || record.principal.is_expired(now_ms) {
            return Err(AuthError::new(
                "token_expired",
                "the SSE token has expired; mint a fresh one",
            ));
        }
        if record.single_use && record.used {
            return Err(used());
        }
        if consume && !record.used {
            record.used = true;
            let p = record.principal.clone();
            let h = hash(raw);
            if let Some(r) = state.by_hash.get(&h) {
                self.persist(h, r);
            }
            return Ok(p);
        }
        Ok(record.principal.clone())
    }

    /// Looks a token up for a stream reopened with its reconnect grant
    /// (already checked by the caller): a spent single-use token is
    /// accepted, an expired or revoked (forgotten) one is not. Returns the
    /// principal and whether the token still has to be spent (a grant for
    /// a token never used yet does not skip its spend).
    pub fn redeem_granted(&self, raw: &str, now_ms: u64) -> Result<(Principal, bool), AuthError> {
        let state = self.state.lock();
        let record = state
            .by_hash
            .get(&hash(raw))
            .ok_or_else(|| AuthError::new("invalid_token", "unknown SSE token"))?;
        if now_ms >= record.expires_at_ms || record.principal.is_expired(now_ms) {
            return Err(AuthError::new(
                "token_expired",
                "the SSE token has expired; mint a fresh one",
            ));
        }
        Ok((record.principal.clone(), record.single_use && !record.used))
    }

    /// Forgets tokens that can no longer be redeemed.
    pub fn purge(&self, now_ms: u64) {
        let mut state = self.state.lock();
        let State { by_hash, by_minter } = &mut *state;
        by_hash.retain(|_, r| r.outstanding(now_ms));
        by_minter.retain(|_, hashes| {
            hashes.retain(|h| by_hash.contains_key(h));
            !hashes.is_empty()
        });
    }

    /// Drops every token whose principal matches `dead` (revocation).
    pub fn revoke_where(&self, dead: impl Fn(&Principal) -> bool) -> usize {
        let mut state = self.state.lock();
        let gone: Vec<[u8; 32]> = state
            .by_hash
            .iter()
            .filter(|(_, r)| dead(&r.principal))
            .map(|(h, _)| *h)
            .collect();
        for h in &gone {
            state.by_hash.remove(h);
            self.forget(*h);
        }
        gone.len()
    }

    /// Tokens currently outstanding.
    pub fn outstanding(&self, now_ms: u64) -> usize {
        self.state
            .lock()
            .by_hash
            .values()
            .filter(|r| r.outstanding(now_ms))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn subject(sub: &str, tenant: Option<&str>) -> Principal {
        let mut p = Principal::new(sub);
        p.tenant = tenant.map(str::to_string);
        p
    }

    #[test]
    fn a_token_never_outlives_its_parent() {
        let tokens = SseTokens::new(10);
        let mut parent = subject("alice", None);
        parent.expires_at_ms = Some(NOW + 2_000);
        let key = minter_key(&parent, &parent);
        let minted = tokens.mint(parent, key, NOW + 3_600_000, true, NOW).expect("mint");
        assert_eq!(minted.expires_at_ms, NOW + 2_000, "clamped to the parent");
        let p = tokens.redeem(&minted.token, NOW + 1_999, false).expect("valid before");
        assert_eq!(p.expires_at_ms, Some(NOW + 2_000));
        let e = tokens
            .redeem(&minted.token, NOW + 2_000, true)
            .expect_err("expired after");
        assert_eq!(e.code, "token_expired");
    }

    #[test]
    fn an_expired_parent_cannot_mint() {
        let tokens = SseTokens::new(10);
        let mut parent = subject("alice", None);
        parent.expires_at_ms = Some(NOW);
        let key = minter_key(&parent, &parent);
        assert!(matches!(
            tokens.mint(parent, key, NOW + 60_000, true, NOW),
            Err(MintError::ParentExpired)
        ));
        assert_eq!(tokens.outstanding(NOW), 0);
    }

    #[test]
    fn a_parent_without_expiry_gets_the_asked_lifetime() {
        let tokens = SseTokens::new(10);
        let p = subject("alice", None);
        let key = minter_key(&p, &p);
        let minted = tokens.mint(p, key, NOW + 60_000, true, NOW).expect("mint");
        assert_eq!(minted.expires_at_ms, NOW + 60_000);
    }

    #[test]
    fn the_cap_counts_per_account_not_per_sub() {
        let tokens = SseTokens::new(2);
        let mut minter = Principal::new("apikey:backend");
        minter.kind = CredentialKind::ApiKey {
            key_id: "backend".into(),
        };
        let acme = subject("capx", Some("acme"));
        let globex = subject("capx", Some("globex"));
        for _ in 0..2 {
            tokens
                .mint(acme.clone(), minter_key(&minter, &acme), NOW + 60_000, true, NOW)
                .expect("acme");
        }
        assert!(matches!(
            tokens.mint(acme.clone(), minter_key(&minter, &acme), NOW + 60_000, true, NOW),
            Err(MintError::TooMany(2))
        ));
        tokens
            .mint(globex.clone(), minter_key(&minter, &globex), NOW + 60_000, true, NOW)
            .expect("globex does not count against acme");
        let hub_wide = subject("capx", None);
        tokens
            .mint(
                hub_wide.clone(),
                minter_key(&hub_wide, &hub_wide),
                NOW + 60_000,
                true,
                NOW,
            )
            .expect("the hub-wide capx is another account");
    }

    #[test]
    fn a_grant_is_bound_to_its_token_and_key() {
        let key = [7; 32];
        let g = grant_value(&key, "st_a");
        assert!(grant_matches(&key, "st_a", &g));
        assert!(!grant_matches(&key, "st_b", &g), "another token's grant");
        assert!(!grant_matches(&[8; 32], "st_a", &g), "another hub's key");
        assert!(!grant_matches(&key, "st_a", "not base64 !"));
        assert!(!grant_matches(&key, "st_a", &g[..20]));
        assert_ne!(grant_cookie_name("st_a"), grant_cookie_name("st_b"));
    }

    #[test]
    fn a_granted_redeem_accepts_a_spent_token_until_it_expires() {
        let tokens = SseTokens::new(10);
        let p = subject("alice", None);
        let key = minter_key(&p, &p);
        let minted = tokens.mint(p, key, NOW + 60_000, true, NOW).expect("mint");
        let (_, must_spend) = tokens.redeem_granted(&minted.token, NOW).expect("unused");
        assert!(must_spend, "a grant never skips a first spend");
        tokens.redeem(&minted.token, NOW, true).expect("spend");
        assert_eq!(
            tokens.redeem(&minted.token, NOW, false).expect_err("spent").code,
            "token_used"
        );
        let (_, must_spend) = tokens.redeem_granted(&minted.token, NOW + 1).expect("granted");
        assert!(!must_spend);
        let e = tokens.redeem_granted(&minted.token, NOW + 60_000).expect_err("expired");
        assert_eq!(e.code, "token_expired");
        tokens.revoke_where(|_| true);
        let e = tokens.redeem_granted(&minted.token, NOW + 1).expect_err("revoked");
        assert_eq!(e.code, "invalid_token");
    }

    #[test]
    fn minter_keys_are_unambiguous() {
        let a = subject("a|h:b", None);
        let b = subject("b", None);
        let c = subject("a", None);
        let d = subject("b|h:b", None);
        assert_ne!(minter_key(&a, &b), minter_key(&c, &d));
        assert_ne!(
            minter_key(&subject("x", Some("acme")), &subject("x", Some("acme"))),
            minter_key(&subject("x", Some("globex")), &subject("x", Some("globex")))
        );
    }
}
