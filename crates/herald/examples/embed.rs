//! Mounting Herald inside an existing axum application.
//!
//! The app keeps its own routes and its own authentication for them; Herald
//! serves the realtime API under `/realtime`. The app's backend code
//! publishes through the `Hub` handle directly, with a principal it builds
//! itself (it is trusted code), so no HTTP round trip is needed.
//!
//! Run: `cargo run -p herald --example embed`, then
//! `curl -N 'http://127.0.0.1:3000/realtime/v1/events?topic=news' -H "Authorization: Bearer $(herald token --sub bob --subscribe news)"`
//! (with the same `jwt_secret`), and `curl -X POST http://127.0.0.1:3000/announce`.

use axum::routing::{get, post};
use axum::Router;
use herald::core::{Principal, SelectorSet};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = herald::Config {
        jwt_secret: Some(
            std::env::var("HERALD_JWT_SECRET")
                .unwrap_or_else(|_| "change-me-to-a-real-secret-of-32-bytes-or-more".into()),
        ),
        store: herald::config::StoreKind::Memory,
        ..herald::Config::default()
    };
    let hub = herald::Hub::builder(config).build()?;

    // The app's own publisher identity: trusted code, allowed everywhere.
    let mut backend = Principal::new("app-backend");
    backend.publish = SelectorSet::all();

    let announcer = hub.clone();
    let app = Router::new()
        .route("/", get(|| async { "my application" }))
        .route(
            "/announce",
            post(move || {
                let hub = announcer.clone();
                let backend = backend.clone();
                async move {
                    let event = json!({"topics": ["news"], "data": "hello from the app", "audience": "public"});
                    match hub.publish(&backend, vec![event]).await {
                        Ok(events) => format!("published seq {}\n", events[0].seq),
                        Err(e) => format!("failed: {e}\n"),
                    }
                }
            }),
        )
        .nest_service("/realtime", hub.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("app on http://127.0.0.1:3000, Herald under /realtime");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        hub.shutdown().await;
    })
    .await?;
    Ok(())
}
