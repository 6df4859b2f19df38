//! Operational endpoints: liveness, readiness, Prometheus metrics, and a
//! landing page naming the endpoints.

use crate::hub::Hub;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::ToSchema;

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
}

/// The answer of `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or why not: `draining`, `cluster_unreachable`.
    pub status: ReadyStatus,
    /// Streams open on this node (only when ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<usize>,
}

/// Whether a node takes traffic.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Accepts streams and publishes.
    Ready,
    /// Shutting down: send traffic elsewhere.
    Draining,
    /// A cluster node that cannot reach NATS.
    ClusterUnreachable,
}

/// Liveness: the process is up
///
/// Answers as long as the process serves HTTP; says nothing about the
/// store or the cluster (that is `/readyz`).
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The process is up.", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the hub accepts streams and publishes
///
/// `503` while the hub drains for a shutdown, or on a cluster node that
/// cannot reach NATS: a balancer should send traffic elsewhere.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready, with the number of open streams.", body = Readiness,
            example = json!({"status": "ready", "streams": 3})),
        (status = 503, description = "Not ready: `draining` or `cluster_unreachable`.", body = Readiness,
            example = json!({"status": "draining"})),
    )
)]
pub async fn readyz(State(hub): State<Hub>) -> Response {
    let status = if hub.inner.is_draining() {
        ReadyStatus::Draining
    } else if hub.inner.cluster.as_ref().is_some_and(|c| !c.connected()) {
        ReadyStatus::ClusterUnreachable
    } else {
        let streams = Some(hub.inner.registry.counts().streams);
        return Json(Readiness {
            status: ReadyStatus::Ready,
            streams,
        })
        .into_response();
    };
    let body = Readiness { status, streams: None };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
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

/// Prometheus metrics
///
/// The Prometheus text format: streams, events, deliveries, closes by
/// reason, cap rejections, authentication failures by code, origin
/// refusals, deny rules, store size, store commits (duration and jobs per
/// commit). Never labelled by topic or user.
/// `404` (plain text) when the hub is embedded in an application that
/// installed its own metrics recorder.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 404, description = "Metrics are exported by the embedding application.",
            content_type = "text/plain", body = String),
    )
)]
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

/// The operator console
///
/// A static page; it talks to the admin API with the credential the
/// operator types in, which never leaves the tab (docs/console.md).
#[utoipa::path(
    get,
    path = "/admin/",
    operation_id = "console",
    tag = "console",
    security(()),
    responses((status = 200, description = "The console's page.", content_type = "text/html", body = String))
)]
pub async fn admin_page() -> Response {
    console_file(
        "text/html; charset=utf-8",
        include_str!("../../../../web/admin/index.html"),
    )
}

/// The console's script
#[utoipa::path(
    get,
    path = "/admin/console.js",
    operation_id = "console_script",
    tag = "console",
    security(()),
    responses((status = 200, description = "The console's script.", content_type = "text/javascript", body = String))
)]
pub async fn console_js() -> Response {
    console_file(
        "text/javascript; charset=utf-8",
        include_str!("../../../../web/admin/console.js"),
    )
}

/// The console's style sheet
#[utoipa::path(
    get,
    path = "/admin/console.css",
    operation_id = "console_style",
    tag = "console",
    security(()),
    responses((status = 200, description = "The console's style sheet.", content_type = "text/css", body = String))
)]
pub async fn console_css() -> Response {
    console_file(
        "text/css; charset=utf-8",
        include_str!("../../../../web/admin/console.css"),
    )
}

/// What this server is
///
/// A small page naming the endpoints.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "landing",
    tag = "operations",
    security(()),
    responses((status = 200, description = "A page naming the endpoints.", content_type = "text/html", body = String))
)]
pub async fn landing() -> Html<&'static str> {
    Html(include_str!("landing.html"))
}

/// The console without its trailing slash
///
/// A permanent redirect to `/admin/`, so the page's relative links resolve.
#[utoipa::path(
    get,
    path = "/admin",
    operation_id = "console_redirect",
    tag = "console",
    security(()),
    responses((status = 308, description = "To `/admin/`.",
        headers(("location" = String, description = "`/admin/`"))))
)]
pub async fn admin_redirect() -> axum::response::Redirect {
    axum::response::Redirect::permanent("/admin/")
}
