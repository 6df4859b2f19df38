//! The HTTP surface (DESIGN.md §4): one module per resource, one error type,
//! one place that extracts the client address and the credential.

pub mod admin;
pub mod error;
pub mod events;
pub mod invalidation;
pub mod ops;
pub mod publish;
pub mod request;
pub mod revocations;
pub mod tokens;

use crate::hub::Hub;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::routing::{delete, get, post};
use axum::Router;
use error::ApiError;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Builds the router for `hub`.
pub fn router(hub: Hub) -> Router {
    let limits = &hub.inner.config.limits;
    // A batch may hold many events, each up to the event limit; the body
    // limit only bounds memory, the per-event limit answers 413 precisely.
    let body_limit = limits
        .max_event_bytes
        .saturating_mul(2)
        .saturating_add(64 * 1024)
        .max(8 << 20);
    let mut app = Router::new()
        .route("/", get(ops::landing))
        .route("/admin/", get(ops::admin_page))
        .route(
            "/admin",
            get(|| async { axum::response::Redirect::permanent("/admin/") }),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/events", get(events::subscribe))
        .route("/v1/publish", post(publish::publish))
        .route("/v1/tokens", post(tokens::mint))
        .route("/v1/revocations", post(revocations::revoke))
        .route("/v1/audit", get(admin::audit_page))
        .route("/v1/audit/events", get(admin::audit_stream))
        .route("/v1/connections", get(admin::connections))
        .route("/v1/connections/{id}", delete(admin::kick))
        .route("/v1/invalidate", post(invalidation::invalidate))
        .route("/v1/invalidation", get(invalidation::state))
        .route("/v1/invalidation/{action}", post(invalidation::control))
        .route("/v1/invalidation/tags/{action}", post(invalidation::tags))
        .merge(if hub.inner.config.mercure.enabled {
            crate::mercure::router(hub.clone())
        } else {
            Router::new()
        })
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        // A bug must not drop the connection silently: answer a JSON 500
        // (and log it) instead.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            axum::response::IntoResponse::into_response(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the hub hit an internal error; it has been logged",
            ))
        }))
        // Mercure discovery: every response names the hub.
        .layer(axum::middleware::map_response(
            |mut resp: axum::response::Response| async move {
                if !resp.headers().contains_key(header::LINK) {
                    resp.headers_mut().insert(header::LINK, crate::mercure::link_header());
                }
                resp
            },
        ))
        .with_state(hub.clone());
    let origins: Vec<HeaderValue> = hub
        .inner
        .config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if !origins.is_empty() {
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::CACHE_CONTROL,
                    HeaderName::from_static("last-event-id"),
                ]),
        );
    }
    app
}
