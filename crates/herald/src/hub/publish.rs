//! Publishing: validation and authorization of drafts, then sequencing,
//! storage and dispatch through the history. Publishes in flight hold the
//! shutdown gate shared, so shutdown can wait for them.

use super::{now_ms, HubInner};
use crate::history::HistoryError;
use herald_core::Invalid;
use herald_core::{Event, EventDraft, Principal};
use std::sync::Arc;

/// Why a publish was not stored. The protocol adapters turn it into their
/// answer (`400`/`403`/`413`, `409`, `503`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// An event is invalid or not allowed for its publisher.
    #[error("{} ({})", .0.message, .0.code)]
    Invalid(Invalid),
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Draining,
    /// An event with this client id is already in history (in its tenant).
    #[error("an event with id `{0}` was already published")]
    DuplicateId(String),
    /// History cannot take writes now (store or cluster unavailable).
    #[error("history unavailable: {0}")]
    Unavailable(String),
}

impl From<Invalid> for PublishError {
    fn from(e: Invalid) -> PublishError {
        PublishError::Invalid(e)
    }
}

impl HubInner {
    /// Validates, authorizes, sequences, stores and dispatches events.
    pub async fn publish_json(
        &self,
        publisher: &Principal,
        inputs: Vec<serde_json::Value>,
    ) -> Result<Vec<Arc<Event>>, PublishError> {
        let batch = inputs.len() > 1;
        let mut drafts = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let mut d = EventDraft::from_json(input, &self.auth.session_key, &self.limits)
                .and_then(|mut d| d.authorize(publisher).map(|_| d))
                .map_err(|mut e| {
                    if batch {
                        e.message = format!("events[{i}]: {}", e.message);
                    }
                    PublishError::Invalid(e)
                })?;
            d.topics.shrink_to_fit();
            drafts.push(d);
        }
        self.publish_drafts(drafts).await
    }

    /// Sequences, stores and dispatches already-validated drafts.
    pub async fn publish_drafts(&self, drafts: Vec<EventDraft>) -> Result<Vec<Arc<Event>>, PublishError> {
        let started = std::time::Instant::now();
        let _in_flight = self.in_flight.read().await;
        if self.is_draining() {
            return Err(PublishError::Draining);
        }
        let events = self.history.append(drafts, now_ms()).await.map_err(|e| match e {
            HistoryError::DuplicateId(id) => PublishError::DuplicateId(id),
            HistoryError::Unavailable(why) => PublishError::Unavailable(why),
        })?;
        metrics::counter!("herald_events_published_total").increment(events.len() as u64);
        self.stats
            .published(events.iter().map(|e| e.audience.tenant.as_deref()), started.elapsed());
        Ok(events)
    }
}
