//! What every handler needs from a request: who the client is (its address,
//! through trusted proxies only) and which credential it presented.

use crate::auth::Source;
use crate::config::Config;
use crate::kill::KillSwitch;
use axum::http::{header, HeaderMap, Request};
use std::net::{IpAddr, SocketAddr};

/// Set by the server's accept loop on every request of a connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Peer address of the TCP connection.
    pub peer: SocketAddr,
    /// Cancels the whole connection (used against zombie writers).
    pub kill: KillSwitch,
}

/// The client address: the TCP peer, or — only when the peer is a
/// configured trusted proxy — the nearest untrusted hop of
/// `X-Forwarded-For`.
pub fn client_ip<B>(req: &Request<B>, config: &Config) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnInfo>()
        .map(|c| c.peer.ip())
        .or_else(|| {
            req.extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        })
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !config.trusted_proxies.contains(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !config.trusted_proxies.contains(ip))
        .unwrap_or(peer)
}

/// The credential in the `Authorization` header or `herald_token` cookie.
pub fn header_credential(headers: &HeaderMap) -> Option<Source<'_>> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        return Some(Source::Bearer(token));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("herald_token="))
        .map(Source::Cookie)
}

/// Query parameters, repeated keys kept in order.
pub fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}
