//! Operational endpoints: liveness, readiness, Prometheus metrics, and a
//! landing page naming the endpoints.

use crate::hub::Hub;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::OnceLock;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the hub accepts streams and publishes.
pub async fn readyz(State(hub): State<Hub>) -> Response {
    if hub.inner.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"}))).into_response()
    } else if hub.inner.cluster.as_ref().is_some_and(|c| !c.connected()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "cluster_unreachable"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ready", "streams": hub.inner.registry.counts().streams})).into_response()
    }
}

static PROMETHEUS: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process (an embedding app that
/// installed its own recorder keeps it; `/metrics` then says so).
pub fn install_metrics() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .as_ref()
}

/// `GET /metrics`: Prometheus text format. Never labelled by topic or user.
pub async fn metrics(State(hub): State<Hub>) -> Response {
    let Some(handle) = install_metrics() else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are exported by the embedding application\n",
        )
            .into_response();
    };
    let c = hub.inner.registry.counts();
    metrics::gauge!("herald_streams").set(c.streams as f64);
    metrics::gauge!("herald_history_head").set(hub.inner.history.head() as f64);
    if let Some(store) = &hub.inner.store {
        metrics::gauge!("herald_store_bytes").set(store.file_bytes() as f64);
        metrics::gauge!("herald_store_events").set(store.event_count() as f64);
        metrics::gauge!("herald_store_event_bytes").set(store.event_bytes() as f64);
    }
    metrics::gauge!("herald_deny_rules").set(hub.inner.deny.len() as f64);
    metrics::gauge!("herald_sse_tokens_outstanding")
        .set(hub.inner.auth.sse_tokens.outstanding(crate::hub::now_ms()) as f64);
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

/// The console's policy: everything from the hub itself, no inline
/// script or style (so an injected string cannot run), never framed.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Serves one embedded console file.
fn console_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
            // For browsers that predate `frame-ancestors`, and so no other
            // window can script the console's.
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /admin/`: the operator console (static; it talks to the admin API
/// with the credential the operator types in, which never leaves the tab).
pub async fn admin_page() -> Response {
    console_file(
        "text/html; charset=utf-8",
        include_str!("../../../../web/admin/index.html"),
    )
}

/// `GET /admin/console.js`.
pub async fn console_js() -> Response {
    console_file(
        "text/javascript; charset=utf-8",
        include_str!("../../../../web/admin/console.js"),
    )
}

/// `GET /admin/console.css`.
pub async fn console_css() -> Response {
    console_file(
        "text/css; charset=utf-8",
        include_str!("../../../../web/admin/console.css"),
    )
}

/// `GET /`: what this server is and where its endpoints are.
pub async fn landing() -> Html<&'static str> {
    Html(include_str!("landing.html"))
}
