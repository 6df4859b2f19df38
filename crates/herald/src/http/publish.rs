//! `POST /v1/publish`: one event, or `{"events": [...]}`.

use super::error::ApiError;
use super::request::{client_ip, header_credential};
use crate::hub::Hub;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Handler for `POST /v1/publish`.
pub async fn publish(State(hub): State<Hub>, req: Request<Body>) -> Result<Response, ApiError> {
    let inner = hub.inner.clone();
    if inner.is_draining() {
        return Err(ApiError::draining());
    }
    let ip = client_ip(&req, &inner.config);
    let principal = inner.authenticate_api(header_credential(req.headers()), ip)?;
    if !principal.scopes.publish {
        return Err(ApiError::forbidden(
            "publish_forbidden",
            "this credential may not publish",
        ));
    }
    let body = super::request::json_body(req, super::publish_body_limit(&inner.config.limits)).await?;
    let (inputs, batch) = match body {
        Value::Object(mut o) if o.contains_key("events") => {
            if o.len() > 1 {
                return Err(ApiError::bad_request("invalid_event", "a batch holds only `events`"));
            }
            match o.remove("events") {
                Some(Value::Array(events)) if !events.is_empty() => (events, true),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_event",
                        "`events` must be a non-empty array",
                    ))
                }
            }
        }
        other @ Value::Object(_) => (vec![other], false),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_event",
                "the body must be an event object or {\"events\": [...]}",
            ))
        }
    };
    if inputs.len() > inner.config.limits.max_batch {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!("at most {} events per publish", inner.config.limits.max_batch),
        ));
    }
    let events = inner.publish_json(&principal, inputs).await?;
    let answers: Vec<Value> = events.iter().map(|e| json!({"id": e.id, "seq": e.seq})).collect();
    let body = if batch {
        json!({"events": answers})
    } else {
        answers.into_iter().next().unwrap_or(Value::Null)
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}
