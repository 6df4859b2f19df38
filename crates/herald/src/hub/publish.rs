//! Publishing: validation and authorization of drafts, then sequencing,
//! storage and dispatch through the history. Publishes in flight hold the
//! shutdown gate shared, so shutdown can wait for them.

use super::{now_ms, HubInner};
use crate::history::HistoryError;
use crate::http::error::ApiError;
use herald_core::{Event, EventDraft, Principal};
use std::sync::Arc;

impl HubInner {
    /// Validates, authorizes, sequences, stores and dispatches events.
    pub async fn publish_json(
        &self,
        publisher: &Principal,
        inputs: Vec<serde_json::Value>,
    ) -> Result<Vec<Arc<Event>>, ApiError> {
        let batch = inputs.len() > 1;
        let mut drafts = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let mut d = EventDraft::from_json(input, &self.auth.session_key, &self.limits)
                .and_then(|mut d| d.authorize(publisher).map(|_| d))
                .map_err(|mut e| {
                    if batch {
                        e.message = format!("events[{i}]: {}", e.message);
                    }
                    ApiError::from(e)
                })?;
            d.topics.shrink_to_fit();
            drafts.push(d);
        }
        self.publish_drafts(drafts).await
    }

    /// Sequences, stores and dispatches already-validated drafts.
    pub async fn publish_drafts(&self, drafts: Vec<EventDraft>) -> Result<Vec<Arc<Event>>, ApiError> {
        let _in_flight = self.in_flight.read().await;
        if self.is_draining() {
            return Err(ApiError::draining());
        }
        let events = self.history.append(drafts, now_ms()).await.map_err(|e| match e {
            HistoryError::DuplicateId(id) => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "duplicate_id",
                format!("an event with id `{id}` was already published"),
            ),
            HistoryError::Unavailable(why) => {
                let mut e = ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", why);
                e.retry_after = Some(1);
                e
            }
        })?;
        metrics::counter!("herald_events_published_total").increment(events.len() as u64);
        Ok(events)
    }
}
