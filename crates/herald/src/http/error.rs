//! The one error type of the HTTP surface: every failure is
//! `{"error": {"code": "snake_case", "message": "human sentence"}}` with the
//! status docs/api.md assigns to it. Nothing here can panic.

use crate::auth::AuthError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::Invalid;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` value (401).
    pub www_authenticate: Option<String>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// `400`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `403`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// `404`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `429` with `Retry-After`.
    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
        e.retry_after = Some(retry_after);
        e
    }

    /// `503` while draining.
    pub fn draining() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the hub is shutting down; retry on another node or in a moment",
        );
        e.retry_after = Some(1);
        e
    }

    /// `503` when the cluster cannot be reached for a decision that must
    /// be cluster-wide (a cap, a token): refused rather than guessed.
    pub fn cluster_unavailable(why: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable", why);
        e.retry_after = Some(1);
        e
    }

    /// `503 store_unavailable` (retry after a second): the embedded store
    /// could not be written or read.
    pub fn store_unavailable(why: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", why);
        e.retry_after = Some(1);
        e
    }

    /// `401` for a request that carried no credential.
    pub fn missing_credential() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_credential",
            "send a credential: Authorization: Bearer <JWT or API key>, the herald_token cookie, or ?token=<SSE token> on a stream",
        );
        e.www_authenticate = Some("Bearer realm=\"herald\"".into());
        e
    }
}

impl From<AuthError> for ApiError {
    fn from(a: AuthError) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, a.code, a.description.clone());
        // The description is ours (never the token), but quotes and
        // backslashes would break the header's quoted-string.
        let desc = a.description.replace(['"', '\\'], "'");
        e.www_authenticate = Some(format!(
            "Bearer realm=\"herald\", error=\"invalid_token\", error_description=\"{desc}\""
        ));
        e
    }
}

impl From<crate::hub::VerifyError> for ApiError {
    fn from(e: crate::hub::VerifyError) -> ApiError {
        use crate::hub::VerifyError;
        match e {
            VerifyError::Missing => ApiError::missing_credential(),
            VerifyError::RateLimited { retry_after } => ApiError::too_many(
                "auth_rate_limited",
                "too many failed authentications from this address",
                retry_after,
            ),
            VerifyError::Refused(a) => ApiError::from(a),
        }
    }
}

impl From<crate::hub::AdmitError> for ApiError {
    fn from(e: crate::hub::AdmitError) -> ApiError {
        use crate::hub::AdmitError;
        use crate::registry::CapExceeded;
        match e {
            AdmitError::Draining => ApiError::draining(),
            AdmitError::Token(a) => ApiError::from(a),
            AdmitError::Unavailable(why) => ApiError::cluster_unavailable(why),
            AdmitError::Cap(cap) => {
                let message = match cap {
                    CapExceeded::Session => "this session has as many streams open as it may",
                    CapExceeded::Account => "this account has as many streams open as it may",
                    CapExceeded::Ip => "this address has as many streams open as it may",
                    CapExceeded::Hub => "the hub is at its stream capacity",
                    CapExceeded::Audit => "this session has as many audit streams open as it may",
                };
                ApiError::too_many(cap.code(), message, 5)
            }
        }
    }
}

impl From<crate::hub::PublishError> for ApiError {
    fn from(e: crate::hub::PublishError) -> ApiError {
        use crate::hub::PublishError;
        match e {
            PublishError::Invalid(i) => ApiError::from(i),
            PublishError::Draining => ApiError::draining(),
            PublishError::DuplicateId(id) => ApiError::new(
                StatusCode::CONFLICT,
                "duplicate_id",
                format!("an event with id `{id}` was already published"),
            ),
            PublishError::Unavailable(why) => ApiError::store_unavailable(why),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(i: Invalid) -> ApiError {
        let status = match i.code {
            "event_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            c if c.ends_with("_forbidden") => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, i.code, i.message)
    }
}

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` member of an [`ErrorBody`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: what a client branches on. Each operation of the
    /// OpenAPI document lists the codes each of its statuses can carry.
    #[schema(pattern = "^[a-z][a-z0-9_]*$")]
    pub code: &'static str,
    /// A sentence for a human; its wording may change.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(v) = self.www_authenticate.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}
