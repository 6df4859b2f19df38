//! The operator commands: `connections`, `kick`, `revoke`, `audit` and
//! `status`. They talk to a running hub over HTTP with an admin
//! credential and never read the hub's configuration, so they work from
//! any shell and any machine that can reach the hub.

use super::client::{Client, ClientError};
use super::format::*;
use clap::Args;
use serde_json::{json, Value};
use std::fmt;
use std::io::Write;
use std::time::Duration;

/// The hub URL used when neither `--url` nor `HERALD_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The revocation types `herald revoke` accepts (the hub checks the
/// fields each one needs).
pub const REVOCATION_TYPES: [&str; 8] = [
    "role_grant_revoke",
    "session_revoke",
    "session_revoke_all",
    "token_revoke_all",
    "password_change",
    "logout",
    "token_revoke",
    "tenant_revoke",
];

/// The audit log's live stream.
pub(super) const AUDIT_EVENTS: &str = "/v1/audit/events";
/// The newest records: `before` this id is before every record.
pub(super) const NEWEST: u64 = u64::MAX;
/// Lifetime asked for the SSE tokens `audit --follow` mints; the stream
/// ends with `event: expired` then and is reopened with a fresh one.
pub(super) const STREAM_TOKEN_TTL: u64 = 300;
/// Longest detail shown in an audit table row.
pub(super) const DETAIL_WIDTH: usize = 80;
/// Longest selector list shown in a connections table row.
pub(super) const SELECTORS_WIDTH: usize = 40;
/// Longest wait between two attempts to reopen a lost audit stream.
pub(super) const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A credential from `--token` or `HERALD_TOKEN`. Its `Debug` hides the
/// value, so no derived debug output can leak it.
#[derive(Clone)]
pub struct Credential(String);

impl Credential {
    /// The credential itself, to send to the hub (never to print).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Credential {
    fn from(s: String) -> Credential {
        Credential(s)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<hidden>)")
    }
}

/// How to reach the hub; every operator command takes these.
#[derive(Debug, Args, Clone)]
pub struct HubArgs {
    /// Hub URL (http:// or https://; a path prefix is kept, for a hub
    /// mounted under one). https:// trusts SSL_CERT_FILE or the system CAs.
    #[arg(long, env = "HERALD_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Admin credential: a JWT with `herald.admin` or an API key with the
    /// `admin` scope (a tenant admin sees its tenant only).
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub token: Credential,
    /// Print the hub's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl HubArgs {
    pub(super) fn client(&self) -> Result<Client, Stop> {
        if self.token.0.trim().is_empty() {
            return Err(Stop::Usage("--token (or HERALD_TOKEN) is empty".into()));
        }
        Ok(Client::new(&self.url, self.token.0.trim())?)
    }
}

/// `herald connections`.
#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    /// Hub and credential.
    #[command(flatten)]
    pub hub: HubArgs,
    /// Only this tenant's streams.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this account's streams (its `sub`; with --tenant, that tenant's account).
    #[arg(long)]
    pub account: Option<String>,
}

/// `herald kick`.
#[derive(Debug, Args)]
pub struct KickArgs {
    /// Hub and credential.
    #[command(flatten)]
    pub hub: HubArgs,
    /// The stream's id (the ID column of `herald connections`).
    pub id: String,
}

/// `herald revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Hub and credential.
    #[command(flatten)]
    pub hub: HubArgs,
    /// Revocation type.
    #[arg(value_name = "TYPE", value_parser = REVOCATION_TYPES)]
    pub kind: String,
    /// Account (`sub`).
    #[arg(long)]
    pub account: Option<String>,
    /// Session id (as in the JWT's `sid`).
    #[arg(long)]
    pub session: Option<String>,
    /// Tenant (for tenant_revoke, or to limit an account revocation to one tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Role (for role_grant_revoke).
    #[arg(long)]
    pub role: Option<String>,
    /// Token id (for token_revoke).
    #[arg(long)]
    pub jti: Option<String>,
    /// Only count the live streams it would close; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `herald audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Hub and credential.
    #[command(flatten)]
    pub hub: HubArgs,
    /// After the newest records, keep printing new ones as they happen (Ctrl-C stops).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only records of this kind (stream_opened, stream_closed, auth_failed,
    /// cap_rejected, revocation_applied, token_minted, admin_action, origin_forbidden).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this tenant's records ("" for records without a tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this account's records.
    #[arg(long)]
    pub account: Option<String>,
    /// How many of the newest records to print (0 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub limit: u16,
}

/// `herald status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Hub and credential.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// Why a command ended early.
#[derive(Debug)]
pub(super) enum Stop {
    /// Talking to the hub failed, or the hub refused.
    Client(ClientError),
    /// Something else failed (exit 1).
    Failed(String),
    /// The command line is unusable (exit 2).
    Usage(String),
    /// Standard output was closed (`| head`): nothing more to do.
    StdoutClosed,
}

impl From<ClientError> for Stop {
    fn from(e: ClientError) -> Stop {
        Stop::Client(e)
    }
}

/// Reports the outcome on stderr and turns it into the exit code.
pub(super) fn finish(result: Result<(), Stop>) -> i32 {
    let (code, message) = match result {
        Ok(()) | Err(Stop::StdoutClosed) => return 0,
        Err(Stop::Client(e)) => (e.exit_code(), e.to_string()),
        Err(Stop::Failed(m)) => (1, m),
        Err(Stop::Usage(m)) => (2, m),
    };
    eprintln!("herald: {message}");
    code
}

/// Writes to stdout and flushes, so `audit --follow` shows each record
/// as it comes even through a pipe.
pub(super) fn emit(text: &str) -> Result<(), Stop> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Stop::StdoutClosed,
            _ => Stop::Failed(format!("cannot write the output: {e}")),
        })
}

pub(super) fn emit_line(line: &str) -> Result<(), Stop> {
    emit(&format!("{line}\n"))
}

pub(super) fn emit_json(v: &Value) -> Result<(), Stop> {
    emit_line(&v.to_string())
}

/// The hub answered 2xx with something other than what the contract says.
pub(super) fn unexpected(field: &str) -> Stop {
    Stop::Failed(format!("unexpected answer from the hub: no `{field}`"))
}

/// `?k=v&...` for the pairs that have a value (empty when none do).
pub(super) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("?{}", q.finish())
    } else {
        String::new()
    }
}

/// Percent-encodes one path segment (an id typed by the operator).
pub(super) fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------- connections

/// `herald connections`: the live streams as a table (or the hub's JSON).
pub async fn connections(a: ConnectionsArgs) -> i32 {
    finish(connections_run(a).await)
}

pub(super) async fn connections_run(a: ConnectionsArgs) -> Result<(), Stop> {
    let client = a.hub.client()?;
    let path = format!(
        "/v1/connections{}",
        query(&[("tenant", a.tenant.as_deref()), ("account", a.account.as_deref())])
    );
    let mut reply = client.get(&path).await?;
    let list = reply
        .get_mut("connections")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| unexpected("connections"))?;
    // Hubs older than the filters ignore them: applying them here as well
    // changes nothing on a hub that honours them.
    list.retain(|c| same(&c["tenant"], a.tenant.as_deref()) && same(&c["account"], a.account.as_deref()));
    if a.hub.json {
        return emit_json(&reply);
    }
    emit(&connections_table(&reply, now_secs()))
}

/// Whether a record's field passes a filter (none: everything; `""`: no value).
pub(super) fn same(field: &Value, wanted: Option<&str>) -> bool {
    wanted.is_none_or(|w| field.as_str().unwrap_or("") == w)
}

pub(super) fn connections_table(reply: &Value, now: u64) -> String {
    const HEADER: [&str; 11] = [
        "ID",
        "KIND",
        "PROTO",
        "TENANT",
        "ACCOUNT",
        "SESSION",
        "IP",
        "SELECTORS",
        "OPENED",
        "QUEUE",
        "SENT",
    ];
    let empty = Vec::new();
    let list = reply["connections"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = list.iter().map(|c| connection_row(c, now)).collect();
    let mut out = table(&HEADER, &rows);
    let shown = list.len() as u64;
    match reply["total"].as_u64() {
        // The hub lists at most `limit` streams but counts them all.
        Some(total) if total > shown => out.push_str(&format!("{shown} of {}\n", streams(total))),
        _ => out.push_str(&format!("{}\n", streams(shown))),
    }
    out
}

pub(super) fn connection_row(c: &Value, now: u64) -> Vec<String> {
    let opened = c["opened_at"]
        .as_u64()
        .map_or_else(|| "-".to_string(), |t| age(now.saturating_sub(t)));
    vec![
        cell(&c["id"]),
        cell(&c["kind"]),
        cell(&c["protocol"]),
        cell(&c["tenant"]),
        cell(&c["account"]),
        cell(&c["session"]),
        cell(&c["ip"]),
        truncate(&cell(&c["selectors"]), SELECTORS_WIDTH),
        opened,
        cell(&c["queue"]),
        cell(&c["sent"]),
    ]
}

/// "1 stream", "3 streams".
pub(super) fn streams(n: u64) -> String {
    if n == 1 {
        "1 stream".into()
    } else {
        format!("{n} streams")
    }
}

// ----------------------------------------------------------------------- kick

/// `herald kick ID`: closes one stream (`event: kicked`).
pub async fn kick(a: KickArgs) -> i32 {
    finish(kick_run(a).await)
}

pub(super) async fn kick_run(a: KickArgs) -> Result<(), Stop> {
    let client = a.hub.client()?;
    let reply = client
        .delete(&format!("/v1/connections/{}", path_segment(&a.id)))
        .await?;
    if a.hub.json {
        return emit_json(&reply);
    }
    emit_line(&format!("closed stream {}", clean(&a.id)))
}

// --------------------------------------------------------------------- revoke

/// `herald revoke TYPE ...`: posts a revocation (or counts what it would close).
pub async fn revoke(a: RevokeArgs) -> i32 {
    finish(revoke_run(a).await)
}

pub(super) async fn revoke_run(a: RevokeArgs) -> Result<(), Stop> {
    let client = a.hub.client()?;
    let body = revocation_body(&a);
    let (reply, text) = if a.dry_run {
        let reply = dry_run(&client, &body).await?;
        let n = reply["would_close"].as_u64().ok_or_else(|| unexpected("would_close"))?;
        (reply, format!("would close {}", streams(n)))
    } else {
        let reply = client.post("/v1/revocations", &body).await?;
        let n = reply["closed"].as_u64().ok_or_else(|| unexpected("closed"))?;
        (reply, format!("closed {}", streams(n)))
    };
    if a.hub.json {
        return emit_json(&reply);
    }
    emit_line(&text)
}

pub(super) fn revocation_body(a: &RevokeArgs) -> Value {
    let mut body = json!({"type": a.kind});
    let fields = [
        ("account", &a.account),
        ("session", &a.session),
        ("tenant", &a.tenant),
        ("role", &a.role),
        ("jti", &a.jti),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    body
}

/// Posts the revocation with `?dry_run=true`.
///
/// A hub that predates dry runs ignores the parameter and *applies* the
/// revocation, so first make sure this one knows it: dry runs came with
/// `/v1/overview`, and an older hub answers that `404`.
pub(super) async fn dry_run(client: &Client, body: &Value) -> Result<Value, Stop> {
    match client.get("/v1/overview").await {
        Err(e) if e.status() == Some(hyper::StatusCode::NOT_FOUND) => {
            return Err(Stop::Failed(
                "this hub is too old for --dry-run (it has no /v1/overview); nothing was sent".into(),
            ))
        }
        // 401/403 here (a key with only the revoke scope) says nothing
        // about the version: the revocation request answers for itself.
        Err(ClientError::Api { .. }) | Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    let reply = client.post("/v1/revocations?dry_run=true", body).await?;
    if reply["applied"].as_bool() == Some(true) {
        return Err(Stop::Failed(format!(
            "the hub ignored --dry-run and APPLIED the revocation: {}",
            reply
        )));
    }
    Ok(reply)
}

// --------------------------------------------------------------------- status

/// `herald status`: streams, rates, latency, totals and health.
pub async fn status(a: StatusArgs) -> i32 {
    finish(status_run(a).await)
}

async fn status_run(a: StatusArgs) -> Result<(), Stop> {
    let client = a.hub.client()?;
    let overview = match client.get("/v1/overview").await {
        Err(e) if e.status() == Some(hyper::StatusCode::NOT_FOUND) => {
            return Err(Stop::Failed(format!("{e} (this hub predates /v1/overview)")))
        }
        other => other?,
    };
    if a.hub.json {
        return emit_json(&overview);
    }
    emit(&status_text(&overview, client.url()))
}

fn status_text(o: &Value, url: &str) -> String {
    let scope = match o["tenant"].as_str() {
        Some(t) => format!("tenant admin of {}", clean(t)),
        None => "hub admin".into(),
    };
    let empty = Vec::new();
    let samples = o["samples"].as_array().unwrap_or(&empty);
    let mut lines = vec![
        ("hub", format!("{url} ({scope})")),
        ("streams", streams_line(&o["streams"])),
        (
            "last 10 s",
            rates_line(samples, o["interval_ms"].as_u64().unwrap_or(1000)),
        ),
        (
            "latency",
            latency_line(samples, o["now_ms"].as_u64(), o["tenant"].is_string()),
        ),
        ("totals", totals_line(&o["totals"])),
    ];
    if let Some(refused) = refused_line(&o["totals"]["refused_by"]) {
        lines.push(("refused", refused));
    }
    lines.extend(health_lines(&o["health"]));
    lines.iter().map(|(k, v)| format!("{k:<10}  {v}\n")).collect()
}

fn streams_line(s: &Value) -> String {
    const SHOWN: usize = 10;
    let total = cell(&s["total"]);
    let empty = Vec::new();
    let by = s["by_tenant"].as_array().unwrap_or(&empty);
    let mut parts: Vec<String> = by
        .iter()
        .take(SHOWN)
        .map(|t| {
            let name = t["tenant"].as_str().map_or_else(|| "hub-wide".to_string(), clean);
            format!("{name} {}", cell(&t["streams"]))
        })
        .collect();
    if by.len() > SHOWN {
        parts.push(format!("and {} more tenants", by.len() - SHOWN));
    }
    if parts.is_empty() {
        total
    } else {
        format!("{total} ({})", parts.join(", "))
    }
}

fn rates_line(samples: &[Value], interval_ms: u64) -> String {
    let last = &samples[samples.len().saturating_sub(10)..];
    if last.is_empty() {
        return "no samples yet".into();
    }
    let secs = (last.len() as f64 * interval_ms.max(1) as f64 / 1000.0).max(0.001);
    let rate = |key: &str| last.iter().filter_map(|s| s[key].as_u64()).sum::<u64>() as f64 / secs;
    format!(
        "{:.1} published/s, {:.1} delivered/s, {:.1} refusals/s",
        rate("published"),
        rate("delivered"),
        rate("refused")
    )
}

fn latency_line(samples: &[Value], now_ms: Option<u64>, tenant_admin: bool) -> String {
    if tenant_admin {
        return "- (hub admins only)".into();
    }
    let Some(s) = samples.iter().rev().find(|s| s["publish_ms"].is_object()) else {
        return match samples.len() {
            0 => "- (no samples yet)".into(),
            n => format!("- (no publishes in the last {} samples)", n),
        };
    };
    let ms = |v: &Value| v.as_f64().map_or_else(|| "-".to_string(), |x| format!("{x:.2} ms"));
    let mut line = format!("publish p99 {}", ms(&s["publish_ms"]["p99"]));
    if s["fanout_ms"].is_object() {
        line.push_str(&format!(", fanout p99 {}", ms(&s["fanout_ms"]["p99"])));
    }
    if let (Some(now), Some(t)) = (now_ms, s["t"].as_u64()) {
        line.push_str(&format!(" ({} ago)", age(now.saturating_sub(t) / 1000)));
    }
    line
}

fn totals_line(t: &Value) -> String {
    ["published", "delivered", "overflowed", "revoked", "refused"]
        .iter()
        .map(|k| format!("{} {k}", cell(&t[*k])))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Non-zero refusal counts, largest first; `None` when there are none.
fn refused_line(by: &Value) -> Option<String> {
    let mut counts: Vec<(&String, u64)> = by
        .as_object()?
        .iter()
        .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k, n)))
        .collect();
    if counts.is_empty() {
        return None;
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    Some(
        counts
            .iter()
            .map(|(k, n)| format!("{} {n}", clean(k)))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Readiness, then what only a hub admin is shown (store, cluster, state).
fn health_lines(h: &Value) -> Vec<(&'static str, String)> {
    let ready = match (h["ready"].as_bool(), h["draining"].as_bool()) {
        (_, Some(true)) => "NO (draining)".to_string(),
        (Some(true), _) => "yes".to_string(),
        (Some(false), _) => "NO".to_string(),
        (None, _) => "-".to_string(),
    };
    let mut lines = vec![("ready", ready)];
    if let Some(store) = h.get("store") {
        let text = match (store["events"].as_u64(), store["bytes"].as_u64()) {
            (Some(e), Some(b)) => format!("{e} events, {}", size(b)),
            _ => "- (not the embedded store)".into(),
        };
        lines.push(("store", text));
    }
    if let Some(cluster) = h.get("cluster") {
        let text = match cluster["connected"].as_bool() {
            Some(true) => "connected",
            Some(false) => "DISCONNECTED",
            None => "- (single node)",
        };
        lines.push(("cluster", text.into()));
    }
    let state: Vec<String> = [
        ("history_head", "history head"),
        ("deny_rules", "deny rules"),
        ("sse_tokens_outstanding", "SSE tokens outstanding"),
    ]
    .iter()
    .filter_map(|(k, label)| h.get(*k).map(|v| format!("{label} {}", cell(v))))
    .collect();
    if !state.is_empty() {
        lines.push(("state", state.join(", ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn connections_table_aligns_marks_missing_fields_and_counts() {
        let reply = json!({"connections": [
            {"id": "7", "kind": "events", "account": "alice", "tenant": "acme", "session": "1a2b3c4d",
             "ip": "127.0.0.1", "selectors": ["demo", "orders.>"], "opened_at": 1000},
            {"id": "12", "kind": "audit", "protocol": "audit", "account": "apikey:admin", "tenant": null,
             "session": null, "ip": "127.0.0.1", "selectors": [], "opened_at": 1100, "queue": 0, "sent": 3},
        ], "total": 5});
        let out = connections_table(&reply, 1192);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("ID  KIND    PROTO  TENANT  ACCOUNT"), "{out}");
        assert!(lines[1].starts_with("7   events  -      acme    alice"), "{out}");
        assert!(lines[1].ends_with("3m12s   -      -"), "{out}");
        assert!(lines[2].ends_with("1m32s   0      3"), "{out}");
        assert_eq!(lines[3], "2 of 5 streams");
    }

    #[test]
    fn status_summarises_the_overview() {
        let o = json!({
            "now_ms": 20_000, "tenant": null, "interval_ms": 1000,
            "streams": {"total": 5, "by_tenant": [{"tenant": "acme", "streams": 3}, {"tenant": null, "streams": 2}]},
            "totals": {"published": 10, "delivered": 30, "overflowed": 0, "revoked": 1, "refused": 2,
                       "refused_by": {"cap:session_stream_cap": 1, "auth:token_expired": 1, "origin_forbidden": 0}},
            "samples": [
                {"t": 15_000, "published": 4, "delivered": 8, "refused": 1, "publish_ms": {"p50": 0.5, "p99": 2.0, "max": 3.1},
                 "fanout_ms": {"p50": 0.1, "p99": 0.4, "max": 0.4}},
                {"t": 16_000, "published": 0, "delivered": 0, "refused": 1, "publish_ms": null, "fanout_ms": null}
            ],
            "health": {"ready": true, "draining": false, "history_head": 12, "deny_rules": 1,
                       "sse_tokens_outstanding": 0, "store": {"events": 12, "bytes": 4096}, "cluster": null}
        });
        let text = status_text(&o, "http://hub");
        let expect = [
            "hub         http://hub (hub admin)",
            "streams     5 (acme 3, hub-wide 2)",
            "last 10 s   2.0 published/s, 4.0 delivered/s, 1.0 refusals/s",
            "latency     publish p99 2.00 ms, fanout p99 0.40 ms (5s ago)",
            "totals      10 published, 30 delivered, 0 overflowed, 1 revoked, 2 refused",
            "refused     auth:token_expired 1, cap:session_stream_cap 1",
            "ready       yes",
            "store       12 events, 4.0 KiB",
            "cluster     - (single node)",
            "state       history head 12, deny rules 1, SSE tokens outstanding 0",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expect, "{text}");
    }

    #[test]
    fn queries_and_path_segments_are_encoded() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(query(&[("tenant", Some("a b&c")), ("x", None)]), "?tenant=a+b%26c");
        assert_eq!(path_segment("12/../x y"), "12%2F..%2Fx%20y");
    }
}
