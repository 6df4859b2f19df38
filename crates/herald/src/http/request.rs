//! What every handler needs from a request: who the client is (its address,
//! through trusted proxies only), which credential it presented, whether a
//! cookie credential comes from an allowed origin, its `Last-Event-ID`, and
//! its body (bounded in size and time).

use super::error::ApiError;
use crate::audit::AuditEntry;
use crate::auth::Source;
use crate::config::Config;
use crate::hub::{now_ms, HubInner};
use crate::kill::KillSwitch;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use herald_core::LastEventId;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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

/// The `Authorization` header, trimmed, and whether it used the `Bearer`
/// scheme (the value after it is returned then).
pub fn authorization(headers: &HeaderMap) -> Option<(&str, bool)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    Some(match v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
        Some(token) => (token.trim(), true),
        None => (v, false),
    })
}

/// The value of the cookie `name`, if the request carries it (the first
/// of that name).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookies(headers, name).next()
}

/// Every value of the cookie `name`, in the order the request sends them:
/// another site of the same domain may have set one of that name first
/// (cookie tossing), so a check that must find the real one tries them all.
pub fn cookies<'a, 'n>(headers: &'a HeaderMap, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The host the request names: its `Host` header, or the HTTP/2
/// `:authority`.
pub fn host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The native credential: `Authorization: Bearer`, else the `herald_token`
/// cookie. (`?token=` is read by the stream endpoints alone.) A header
/// without the `Bearer` scheme is an empty credential, refused as such.
pub fn header_credential(headers: &HeaderMap) -> Option<Source<'_>> {
    if let Some((token, bearer)) = authorization(headers) {
        return Some(Source::Bearer(if bearer { token } else { "" }));
    }
    cookie(headers, "herald_token").map(Source::Cookie)
}

/// Query parameters, repeated keys kept in order.
pub fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A client's `Last-Event-ID`: the header, else the query parameter named
/// `param` (the header wins, as `EventSource` sends it on reconnect). One
/// parser, [`LastEventId::parse`], for every stream; an empty value is no
/// id at all. A malformed parameter is refused even when the header wins:
/// bad input is answered, never silently ignored.
pub fn last_event_id<B>(
    req: &Request<B>,
    query: &[(String, String)],
    param: &str,
) -> Result<Option<LastEventId>, ApiError> {
    let from_query = match query.iter().find(|(k, _)| k == param) {
        Some((_, v)) => LastEventId::parse(v)?,
        None => None,
    };
    match req.headers().get("last-event-id") {
        Some(v) => {
            let raw = v
                .to_str()
                .map_err(|_| ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be visible ASCII"))?;
            Ok(LastEventId::parse(raw)?)
        }
        None => Ok(from_query),
    }
}

/// When a request's body must have fully arrived; set by the router on
/// every request as it arrives (see [`read_body`]).
#[derive(Clone, Copy, Debug)]
pub struct BodyDeadline(pub tokio::time::Instant);

/// Used when a request carries no [`BodyDeadline`] (a handler called
/// outside the hub's router).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a whole request body: the one body reader of the hub, so every
/// endpoint that takes a body has the same bounds. At most `limit` bytes
/// (`413 body_too_large`), and all of it before the request's
/// [`BodyDeadline`] (`408 body_timeout`; the router then closes the
/// connection): a body that trickles in a byte at a time must not hold a
/// connection forever.
pub async fn read_body(req: Request<Body>, limit: usize) -> Result<Bytes, ApiError> {
    let deadline = req
        .extensions()
        .get::<BodyDeadline>()
        .map_or_else(|| tokio::time::Instant::now() + DEFAULT_BODY_TIMEOUT, |d| d.0);
    match tokio::time::timeout_at(deadline, axum::body::to_bytes(req.into_body(), limit)).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        )),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Reads a JSON body through the hub's one body reader
/// ([`read_body`]: `413`, `408`), answering `400 invalid_json` with the
/// JSON error shape (axum's own rejections are plain text).
pub async fn json_body(req: Request<Body>, limit: usize) -> Result<serde_json::Value, ApiError> {
    let bytes = read_body(req, limit).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body is not valid JSON: {e}")))
}

/// `scheme://host[:port]` in the form origins are compared in: ASCII lower
/// case, the scheme's default port dropped, one trailing `/` tolerated (a
/// configured origin may be written as a URL). Anything else — a path, a
/// query, user information, whitespace — is not an origin (`None`).
fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_suffix('/').unwrap_or(s);
    let (scheme, authority) = s.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let authority_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b));
    if !scheme_ok || !authority_ok {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let mut authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => Some(":443"),
        "http" => Some(":80"),
        _ => None,
    };
    if let Some(host) = default_port.and_then(|p| authority.strip_suffix(p)) {
        authority = host.to_string();
    }
    Some(format!("{scheme}://{authority}"))
}

/// Whether `a` and `b` are the same origin: scheme, host and port all
/// equal (ASCII case-insensitive), never a prefix match —
/// `https://app.example.evil.net` is not `https://app.example`. Something
/// that is not an origin matches nothing.
pub fn same_origin(a: &str, b: &str) -> bool {
    match (normalize_origin(a), normalize_origin(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The origin (`scheme://host[:port]`) of a `Referer` URL, when it has one
/// an origin can be read from.
fn referer_origin(referer: &str) -> Option<String> {
    let uri = axum::http::Uri::try_from(referer.trim()).ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    if authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

/// The hub's own origins for this request: `https://` + its `Host` (or
/// HTTP/2 `:authority`), and `http://` + it too unless the hub serves TLS
/// itself (behind a TLS-terminating proxy the browser's origin is `https`,
/// the hub's connection plain).
pub fn own_origins<B>(req: &Request<B>, serves_tls: bool) -> Vec<String> {
    let Some(host) = host(req).filter(|h| !h.is_empty()) else {
        return Vec::new();
    };
    let mut own = vec![format!("https://{host}")];
    if !serves_tls {
        own.push(format!("http://{host}"));
    }
    own
}

/// A cookie-authenticated write from somewhere it may not come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRefused {
    /// What the request said it came from (`Origin`, `Referer` or
    /// `Sec-Fetch-Site`), for the audit log.
    pub from: String,
}

/// Whether a request whose credential is a cookie may write: a browser
/// attaches cookies to requests any site makes, so such a request must show
/// it comes from an allowed origin (cross-site request forgery).
///
/// * With an `Origin` header: it must be one of `allowed` ([`same_origin`];
///   `*` allows any).
/// * Without: `Sec-Fetch-Site: cross-site` or `same-site` (or a value this
///   hub does not know) is refused; absent, `same-origin` and `none` pass.
///   A `Referer`, when sent, must then be from an allowed origin too.
///
/// A request with neither header is not a browser's cross-site request and
/// passes. This is the only origin check of the hub: the native API and
/// Mercure publish both call it.
pub fn check_cookie_write(headers: &HeaderMap, allowed: &[String]) -> Result<(), OriginRefused> {
    if allowed.iter().any(|a| a == "*") {
        return Ok(());
    }
    let is_allowed = |origin: &str| allowed.iter().any(|a| same_origin(origin, a));
    let refused = |from: &str| OriginRefused {
        from: from.chars().take(256).collect(),
    };
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if let Some(origin) = origins.next() {
        // Two `Origin` headers are not something a browser sends.
        let origin = origin.to_str().ok().filter(|_| origins.next().is_none());
        return match origin {
            Some(o) if is_allowed(o) => Ok(()),
            Some(o) => Err(refused(o)),
            None => Err(refused("a malformed Origin header")),
        };
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(site.as_str(), "same-origin" | "none") {
            return Err(refused(&format!("Sec-Fetch-Site: {site}")));
        }
    }
    if let Some(referer) = headers.get(header::REFERER) {
        let origin = referer.to_str().ok().and_then(referer_origin);
        return match origin {
            Some(o) if is_allowed(&o) => Ok(()),
            Some(o) => Err(refused(&o)),
            None => Err(refused("a malformed Referer header")),
        };
    }
    Ok(())
}

/// Whether a stream opened with a cookie credential may come from where it
/// says: a page on another site can make the browser open an
/// `EventSource` with the user's cookie, and although it cannot read the
/// stream, the open takes one of the account's slots and may evict the
/// session's oldest stream. Browsers send `Origin` on every cross-origin
/// `EventSource` (it is a CORS request) and `Sec-Fetch-Site` on every
/// request, so those two decide: an `Origin` must be allowed, and without
/// one `cross-site`/`same-site` is refused. The `Referer` is not consulted
/// here: a same-origin page behind a proxy that rewrites `Host` sends one
/// that the hub cannot recognise as its own.
pub fn check_cookie_stream(headers: &HeaderMap, allowed: &[String]) -> Result<(), OriginRefused> {
    if headers.get(header::ORIGIN).is_some() {
        return check_cookie_write(headers, allowed);
    }
    match headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase())
    {
        Some(site) if site == "cross-site" || site == "same-site" => Err(OriginRefused {
            from: format!("Sec-Fetch-Site: {site}"),
        }),
        _ => Ok(()),
    }
}

/// Refuses a cookie write from a forbidden origin: audited
/// (`origin_forbidden`, with where it came from) and answered `403
/// origin_forbidden`.
pub fn refuse_origin(hub: &HubInner, ip: IpAddr, path: &str, refused: &OriginRefused, message: &str) -> ApiError {
    hub.audit.record(
        AuditEntry {
            kind: "origin_forbidden",
            ip: Some(ip),
            detail: serde_json::json!({"from": refused.from, "path": path.chars().take(256).collect::<String>()}),
            ..AuditEntry::default()
        },
        now_ms(),
    );
    metrics::counter!("herald_origin_refusals_total").increment(1);
    ApiError::forbidden("origin_forbidden", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, axum::http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origins_compare_whole() {
        assert!(same_origin("https://app.example", "https://app.example"));
        assert!(same_origin("HTTPS://App.Example", "https://app.example/"));
        assert!(same_origin("https://app.example:443", "https://app.example"));
        assert!(same_origin("http://app.example:80", "http://app.example"));
        assert!(!same_origin("https://app.example.evil.net", "https://app.example"));
        assert!(!same_origin("https://app.example:8443", "https://app.example"));
        assert!(!same_origin("http://app.example", "https://app.example"));
        assert!(!same_origin("https://evil.example@app.example", "https://app.example"));
        assert!(!same_origin("https://app.example/path", "https://app.example"));
        assert!(!same_origin("null", "null"));
        assert!(!same_origin("", ""));
    }

    #[test]
    fn cookie_writes_need_an_allowed_origin() {
        let allowed = vec!["https://app.example".to_string()];
        let check = |pairs: &[(&'static str, &'static str)]| check_cookie_write(&headers(pairs), &allowed).is_ok();
        assert!(check(&[("origin", "https://app.example")]));
        assert!(!check(&[("origin", "https://evil.example")]));
        assert!(!check(&[("origin", "https://app.example.evil.net")]));
        assert!(!check(&[("origin", "null")]));
        assert!(!check(&[
            ("origin", "https://app.example"),
            ("origin", "https://app.example")
        ]));
        assert!(check(&[]));
        assert!(check(&[("sec-fetch-site", "same-origin")]));
        assert!(check(&[("sec-fetch-site", "none")]));
        assert!(!check(&[("sec-fetch-site", "cross-site")]));
        assert!(!check(&[("sec-fetch-site", "same-site")]));
        assert!(!check(&[("sec-fetch-site", "sideways")]));
        assert!(check(&[("referer", "https://app.example/page?x=1")]));
        assert!(!check(&[("referer", "https://app.example.evil.net/page")]));
        assert!(!check(&[("referer", "not a url")]));
        assert!(check_cookie_write(&headers(&[("origin", "https://x")]), &["*".to_string()]).is_ok());
    }
}
