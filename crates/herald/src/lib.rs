//! # Herald
//!
//! A Server-Sent Events hub that delivers each event only to the
//! subscribers allowed to see it, and stops the moment that permission ends.
//!
//! Use it as the `herald` binary, or embed it:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = herald::Config {
//!     jwt_secret: Some("a secret of at least thirty-two bytes!!".into()),
//!     ..herald::Config::default()
//! };
//! let hub = herald::Hub::builder(config).build()?;
//! let app: axum::Router = axum::Router::new().nest_service("/realtime", hub.router());
//! # let _ = app; Ok(()) }
//! ```
//!
//! The domain rules (selectors, audiences, visibility, revocation) live in
//! [`herald_core`]; this crate adds authentication, the stream registry,
//! history, HTTP and the server.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod audit_stream;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod deny_list;
pub mod history;
pub mod http;
pub mod http_client;
pub mod hub;
pub mod invalidation;
pub mod kill;
pub mod mercure;
pub mod queue;
pub mod ratelimit;
pub mod registry;
pub mod retained;
pub mod secrets;
pub mod server;
pub mod stats;
pub mod store;
pub mod stream;

pub use config::Config;
pub use herald_core as core;
pub use hub::{Hub, HubBuilder};
