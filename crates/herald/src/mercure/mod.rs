//! The Mercure protocol at `/.well-known/mercure`, so existing Mercure
//! clients and publishers work against Herald by changing a URL.
//!
//! Mercure is a thin layer here: its requests are translated into Herald
//! principals, selectors and events, and go through the same registry,
//! history and visibility rule as native ones. Public updates become events
//! with a public audience; private updates carry the `private` audience flag
//! and reach only subscribers whose `mercure.subscribe` claim matches one of
//! their topics.

/// Mercure tokens are verified with every other credential, in
/// [`crate::auth::mercure`]; re-exported here where Mercure users look.
pub use crate::auth::mercure as auth;
pub mod publish;
pub mod subscribe;
pub mod subscriptions;

use crate::hub::Hub;
use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The endpoint path.
pub const PATH: &str = "/.well-known/mercure";
/// Topics under this prefix are the hub's own (subscription events).
pub const RESERVED_PREFIX: &str = "/.well-known/mercure";

/// Routes of the Mercure endpoint.
pub fn router(hub: Hub) -> Router<Hub> {
    // Subscription events follow every Mercure stream's life.
    hub.inner.on_stream(
        "mercure.subscriptions",
        std::sync::Arc::new(|hub, s, life| subscriptions::announce(hub, s, life == crate::hub::StreamLife::Opened)),
    );
    let m = &hub.inner.config.mercure;
    let mut r = Router::new()
        .route(PATH, get(subscribe::subscribe).post(publish::publish))
        .route(&format!("{PATH}/subscriptions"), get(subscriptions::all))
        .route(&format!("{PATH}/subscriptions/{{topic}}"), get(subscriptions::by_topic))
        .route(
            &format!("{PATH}/subscriptions/{{topic}}/{{subscriber}}"),
            get(subscriptions::one),
        );
    if !m.cors_origins.is_empty() {
        let origins = if m.cors_origins.iter().any(|o| o == "*") {
            // As Mercure does: any origin, echoed back so credentials work.
            AllowOrigin::mirror_request()
        } else {
            AllowOrigin::list(m.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        r = r.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CACHE_CONTROL,
                    header::CONTENT_TYPE,
                    axum::http::HeaderName::from_static("last-event-id"),
                ]),
        );
    }
    r
}

/// The hub's Mercure verifier, or `404` when Mercure is disabled.
pub fn verifier(hub: &crate::hub::HubInner) -> Result<&auth::MercureAuth, crate::http::error::ApiError> {
    hub.mercure
        .as_ref()
        .ok_or_else(|| crate::http::error::ApiError::not_found("the Mercure endpoint is not enabled"))
}

/// The discovery header every hub response carries.
pub fn link_header() -> HeaderValue {
    HeaderValue::from_static("</.well-known/mercure>; rel=\"mercure\"")
}
