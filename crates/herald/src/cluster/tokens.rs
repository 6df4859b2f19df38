//! SSE tokens across the cluster: minted on one node, redeemable once on
//! any node.
//!
//! The ledger is a JetStream key-value bucket; no consensus of Herald's
//! own. Two of its primitives carry every rule:
//!
//! * **compare-and-set** (`update` with the revision read): a single-use
//!   token is spent by writing `used = true` over the revision that said
//!   it was unused. Two nodes racing to spend it both read the same
//!   revision; JetStream accepts one write and refuses the other
//!   (`wrong last sequence`), so exactly one stream opens.
//! * **create** (fails if the key exists) and the same compare-and-set on a
//!   per-minter list count the outstanding tokens of a minter and subject
//!   cluster-wide.
//!
//! The bucket's age limit is the longest credential lifetime: a token can
//! never live longer than that (it is clamped to its parent), so JetStream
//! forgets records no one can redeem. Expiry itself is checked against the
//! record's `expires_at_ms` on every redemption.
//!
//! Revocation needs no write here: every node holds every deny rule (the
//! control stream), and a token's principal carries its parent's session,
//! `jti` and issue time, so the deny check that follows every redemption
//! refuses a token whose credential was revoked, on any node.

use super::{is_conflict, ClusterError};
use crate::auth::sse_token::{LedgerError, TokenLedger};
use crate::store::codec::TokenRecord;
use async_nats::jetstream::kv;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often a compare-and-set is retried when another node wrote the
/// same key in between (each retry reads the newer value first).
const CAS_ATTEMPTS: usize = 16;

/// The cluster-wide SSE token ledger.
pub struct ClusterTokens {
    kv: kv::Store,
}

/// The outstanding tokens of one minter and subject: token hash (hex) and
/// expiry. Kept short by pruning expired and spent tokens on every write.
#[derive(Default, Serialize, Deserialize)]
struct Outstanding(Vec<(String, u64)>);

fn token_key(hash: &[u8; 32]) -> String {
    format!("t.{}", hex::encode(hash))
}

/// Minter keys hold arbitrary `sub`s: hashed, so any of them is a valid
/// KV key and none can reach another key's namespace.
fn minter_key(minter: &str) -> String {
    format!("o.{}", hex::encode(&blake3::hash(minter.as_bytes()).as_bytes()[..16]))
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

impl ClusterTokens {
    /// Opens (or creates) the bucket `{prefix}_TOKENS`.
    pub(super) async fn open(
        js: &async_nats::jetstream::Context,
        prefix: &str,
        replicas: usize,
        max_age: Duration,
    ) -> Result<ClusterTokens, ClusterError> {
        let config = kv::Config {
            bucket: format!("{prefix}_TOKENS"),
            description: "Herald SSE tokens (hashes only)".into(),
            history: 1,
            max_age,
            num_replicas: replicas,
            ..Default::default()
        };
        let kv = super::retry_forming(|| js.create_key_value(config.clone())).await?;
        Ok(ClusterTokens { kv })
    }

    async fn record(&self, hash: &[u8; 32]) -> Result<Option<(TokenRecord, u64)>, LedgerError> {
        let entry = super::answered(|| self.kv.entry(token_key(hash)))
            .await
            .map_err(unavailable)?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let record: TokenRecord = serde_json::from_slice(&e.value).map_err(unavailable)?;
                Ok(Some((record, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Changes the outstanding list of `minter` with compare-and-set.
    /// `change` returns `false` to refuse (the list is left as it was).
    async fn with_outstanding(
        &self,
        minter: &str,
        mut change: impl FnMut(&mut Outstanding) -> bool,
    ) -> Result<bool, LedgerError> {
        let key = minter_key(minter);
        for _ in 0..CAS_ATTEMPTS {
            let entry = super::answered(|| self.kv.entry(key.clone()))
                .await
                .map_err(unavailable)?;
            let (mut list, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (serde_json::from_slice(&e.value).unwrap_or_default(), e.revision)
                }
                Some(e) => (Outstanding::default(), e.revision),
                None => (Outstanding::default(), 0),
            };
            if !change(&mut list) {
                return Ok(false);
            }
            let value = serde_json::to_vec(&list).map_err(unavailable)?;
            match super::answered(|| self.kv.update(&key, value.clone().into(), revision)).await {
                Ok(_) => return Ok(true),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(LedgerError::Unavailable(
            "the token ledger is too contended; retry".into(),
        ))
    }
}

impl TokenLedger for ClusterTokens {
    fn mint<'a>(
        &'a self,
        hash: [u8; 32],
        record: TokenRecord,
        max_outstanding: usize,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            let me = hex::encode(hash);
            let expires = record.expires_at_ms;
            // The cap first: a token that does not fit is never written.
            let fits = self
                .with_outstanding(&record.minter, |list| {
                    list.0.retain(|(_, exp)| *exp > now_ms);
                    if list.0.len() >= max_outstanding {
                        return false;
                    }
                    list.0.push((me.clone(), expires));
                    true
                })
                .await?;
            if !fits {
                return Err(LedgerError::TooMany(max_outstanding));
            }
            let value = serde_json::to_vec(&record).map_err(unavailable)?;
            if let Err(e) = super::answered(|| self.kv.create(token_key(&hash), value.clone().into())).await {
                // Give the counted place back; the token was never handed out.
                let _ = self
                    .with_outstanding(&record.minter, |list| {
                        list.0.retain(|(h, _)| *h != me);
                        true
                    })
                    .await;
                return Err(unavailable(e));
            }
            Ok(())
        })
    }

    fn fetch(&self, hash: [u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>, LedgerError>> {
        Box::pin(async move { Ok(self.record(&hash).await?.map(|(r, _)| r)) })
    }

    fn spend(&self, hash: [u8; 32]) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            let Some((mut record, revision)) = self.record(&hash).await? else {
                return Err(LedgerError::Unknown);
            };
            // A multi-use token is redeemable until it expires.
            if !record.single_use {
                return Ok(());
            }
            if record.used {
                return Err(LedgerError::Used);
            }
            record.used = true;
            let value = serde_json::to_vec(&record).map_err(unavailable)?;
            match super::answered(|| self.kv.update(token_key(&hash), value.clone().into(), revision)).await {
                Ok(_) => {}
                // Another node spent it between our read and our write.
                Err(e) if is_conflict(&e) => return Err(LedgerError::Used),
                Err(e) => return Err(unavailable(e)),
            }
            // A spent token no longer counts against its minter. Off the
            // stream-open path: the spend itself is what must be atomic.
            let me = hex::encode(hash);
            let minter = record.minter.clone();
            let kv = self.kv.clone();
            tokio::spawn(async move {
                let ledger = ClusterTokens { kv };
                let _ = ledger
                    .with_outstanding(&minter, |list| {
                        list.0.retain(|(h, _)| *h != me);
                        true
                    })
                    .await;
            });
            Ok(())
        })
    }
}
