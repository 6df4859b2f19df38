//! The HTTP surface (docs/api.md): one module per resource, one error type,
//! one place that extracts the client address and the credential.

pub mod admin;
pub mod error;
pub mod error_catalog;
pub mod events;
pub mod invalidation;
pub mod openapi;
pub mod ops;
pub mod publish;
pub mod request;
pub mod revocations;
pub mod tokens;

use crate::auth::Source;
use crate::hub::Hub;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::ApiError;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Paths whose `GET` answers an event stream.
pub const STREAM_PATHS: [&str; 3] = ["/v1/events", crate::mercure::PATH, "/v1/audit/events"];

impl Hub {
    /// The axum router serving the whole HTTP surface (native API, Mercure,
    /// admin). Nest it into an app with `Router::nest_service` / `merge`.
    ///
    /// Defined here, with the adapters, so the hub itself never depends on
    /// a protocol.
    pub fn router(&self) -> axum::Router {
        router(self.clone())
    }
}

/// The largest request body the hub reads: a batch may hold many events,
/// each up to the event limit, so this only bounds memory; the per-event
/// limit answers `413` precisely.
pub fn publish_body_limit(limits: &crate::config::LimitsConfig) -> usize {
    limits
        .max_event_bytes
        .saturating_mul(2)
        .saturating_add(64 * 1024)
        .max(8 << 20)
}

/// Builds the router for `hub`.
pub fn router(hub: Hub) -> Router {
    let body_limit = publish_body_limit(&hub.inner.config.limits);
    let mut app = Router::new()
        .route("/", get(ops::landing))
        .route("/admin/", get(ops::admin_page))
        .route("/admin/console.js", get(ops::console_js))
        .route("/admin/console.css", get(ops::console_css))
        .route("/admin", get(ops::admin_redirect))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/events", get(events::subscribe))
        .route("/v1/publish", post(publish::publish))
        .route("/v1/tokens", post(tokens::mint))
        .route("/v1/revocations", post(revocations::revoke))
        .route("/v1/audit", get(admin::audit_page))
        .route("/v1/audit/events", get(admin::audit_stream))
        .route("/v1/connections", get(admin::connections))
        .route("/v1/connections/{id}", get(admin::connection).delete(admin::kick))
        .route("/v1/overview", get(admin::overview))
        .route("/v1/invalidate", post(invalidation::invalidate))
        .route("/v1/invalidation", get(invalidation::state))
        .route("/v1/invalidation/{action}", post(invalidation::control))
        .route("/v1/invalidation/tags/{action}", post(invalidation::tags))
        // Native routes only: Mercure publish checks its own cookie
        // (`mercureAuthorization`) against `publish_origins`.
        .route_layer(axum::middleware::from_fn_with_state(hub.clone(), cookie_write_guard))
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
        .layer(axum::middleware::from_fn_with_state(hub.clone(), request_bounds))
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
        // Mercure discovery: every response names the hub. A JSON answer
        // is about the credential that asked (audit records, connections,
        // tokens): never cached, never sniffed as something else.
        .layer(axum::middleware::map_response(
            |mut resp: axum::response::Response| async move {
                let headers = resp.headers_mut();
                if !headers.contains_key(header::LINK) {
                    headers.insert(header::LINK, crate::mercure::link_header());
                }
                let json = headers
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                if json {
                    headers
                        .entry(header::CACHE_CONTROL)
                        .or_insert(HeaderValue::from_static("no-store"));
                    headers
                        .entry(header::X_CONTENT_TYPE_OPTIONS)
                        .or_insert(HeaderValue::from_static("nosniff"));
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

/// Refuses a native write authenticated by the `herald_token` cookie unless
/// it comes from an allowed origin: one of `cors_origins`, or the hub's own
/// ([`request::check_cookie_write`]). A browser attaches the cookie to
/// requests any site makes, so without this a page elsewhere could publish,
/// revoke or mint tokens as the signed-in user. Credentials in the
/// `Authorization` header are never sent by a browser on its own and pass.
///
/// A native stream opened with the cookie is checked too, more leniently
/// ([`request::check_cookie_stream`]): opening one from another site takes
/// the account's slots even though that site cannot read it.
async fn cookie_write_guard(State(hub): State<Hub>, req: Request<Body>, next: Next) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Native stream endpoints only: Mercure checks its own cookie.
    let path = req.uri().path();
    let stream = req.method() == Method::GET && STREAM_PATHS.contains(&path) && path != crate::mercure::PATH;
    if (reads && !stream) || !matches!(request::header_credential(req.headers()), Some(Source::Cookie(_))) {
        return next.run(req).await;
    }
    let inner = &hub.inner;
    // `*` is refused by the configuration check; should it get here anyway
    // (a configuration built in code), it must not allow every site.
    let mut allowed: Vec<String> = inner
        .config
        .cors_origins
        .iter()
        .filter(|o| *o != "*")
        .cloned()
        .collect();
    allowed.extend(request::own_origins(&req, inner.config.tls_cert.is_some()));
    let checked = if stream {
        request::check_cookie_stream(req.headers(), &allowed)
    } else {
        request::check_cookie_write(req.headers(), &allowed)
    };
    if let Err(refused) = checked {
        let ip = request::client_ip(&req, &inner.config);
        return request::refuse_origin(
            inner,
            ip,
            req.uri().path(),
            &refused,
            "a write or stream with the herald_token cookie must come from the hub's own origin or one of cors_origins",
        )
        .into_response();
    }
    next.run(req).await
}

/// Bounds every request before its handler runs: `HEAD` on a stream
/// endpoint is refused (it would open a stream, and spend a single-use SSE
/// token, only for the body to be thrown away), and the body gets its
/// deadline ([`request::BodyDeadline`]). A `408` closes the connection:
/// the rest of that body may still be on its way, so the connection cannot
/// carry another request.
async fn request_bounds(State(hub): State<Hub>, mut req: Request<Body>, next: Next) -> Response {
    let inner = &hub.inner;
    if req.method() == Method::HEAD {
        let path = req.uri().path();
        let mercure = path == crate::mercure::PATH;
        if STREAM_PATHS.contains(&path) && (!mercure || inner.config.mercure.enabled) {
            let allow = if mercure { "GET, POST" } else { "GET" };
            let mut resp = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "stream endpoints answer GET only; HEAD would open a stream",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return resp;
        }
    }
    let timeout = Duration::from_secs(inner.config.body_timeout_secs);
    req.extensions_mut()
        .insert(request::BodyDeadline(tokio::time::Instant::now() + timeout));
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::REQUEST_TIMEOUT {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
