//! The operator commands: `connections`, `kick`, `revoke`, `audit` and
//! `status`. They talk to a running hub over HTTP with an admin
//! credential and never read the hub's configuration, so they work from
//! any shell and any machine that can reach the hub.

use super::client::{Client, ClientError, SseEvent, SseStream, StreamAuth};
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
const AUDIT_EVENTS: &str = "/v1/audit/events";
/// The newest records: `before` this id is before every record.
const NEWEST: u64 = u64::MAX;
/// Lifetime asked for the SSE tokens `audit --follow` mints; the stream
/// ends with `event: expired` then and is reopened with a fresh one.
const STREAM_TOKEN_TTL: u64 = 300;
/// Longest detail shown in an audit table row.
const DETAIL_WIDTH: usize = 80;
/// Longest selector list shown in a connections table row.
const SELECTORS_WIDTH: usize = 40;
/// Longest wait between two attempts to reopen a lost audit stream.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

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
    fn client(&self) -> Result<Client, Stop> {
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
enum Stop {
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
fn finish(result: Result<(), Stop>) -> i32 {
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
fn emit(text: &str) -> Result<(), Stop> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Stop::StdoutClosed,
            _ => Stop::Failed(format!("cannot write the output: {e}")),
        })
}

fn emit_line(line: &str) -> Result<(), Stop> {
    emit(&format!("{line}\n"))
}

fn emit_json(v: &Value) -> Result<(), Stop> {
    emit_line(&v.to_string())
}

/// The hub answered 2xx with something other than what the contract says.
fn unexpected(field: &str) -> Stop {
    Stop::Failed(format!("unexpected answer from the hub: no `{field}`"))
}

/// `?k=v&...` for the pairs that have a value (empty when none do).
fn query(pairs: &[(&str, Option<&str>)]) -> String {
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
fn path_segment(s: &str) -> String {
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

async fn connections_run(a: ConnectionsArgs) -> Result<(), Stop> {
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
fn same(field: &Value, wanted: Option<&str>) -> bool {
    wanted.is_none_or(|w| field.as_str().unwrap_or("") == w)
}

fn connections_table(reply: &Value, now: u64) -> String {
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

fn connection_row(c: &Value, now: u64) -> Vec<String> {
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
fn streams(n: u64) -> String {
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

async fn kick_run(a: KickArgs) -> Result<(), Stop> {
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

async fn revoke_run(a: RevokeArgs) -> Result<(), Stop> {
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

fn revocation_body(a: &RevokeArgs) -> Value {
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
async fn dry_run(client: &Client, body: &Value) -> Result<Value, Stop> {
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

// ---------------------------------------------------------------------- audit

/// `herald audit`: the newest records, then with `--follow` the live log.
pub async fn audit(a: AuditArgs) -> i32 {
    finish(audit_run(a).await)
}

/// Exact-match filters on audit records.
#[derive(Debug, Default, Clone)]
struct Filter {
    kind: Option<String>,
    tenant: Option<String>,
    account: Option<String>,
}

impl Filter {
    fn of(a: &AuditArgs) -> Filter {
        Filter {
            kind: a.kind.clone(),
            tenant: a.tenant.clone(),
            account: a.account.clone(),
        }
    }

    fn keeps(&self, record: &Value) -> bool {
        same(&record["kind"], self.kind.as_deref())
            && same(&record["tenant"], self.tenant.as_deref())
            && same(&record["account"], self.account.as_deref())
    }
}

async fn audit_run(a: AuditArgs) -> Result<(), Stop> {
    let client = a.hub.client()?;
    let filter = Filter::of(&a);
    if !a.follow {
        let page = newest(&client, &filter, a.limit, NEWEST).await?;
        return print_records(&page.records, a.hub.json, true);
    }
    // A failing signal handler must not look like a Ctrl-C.
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = follow(&client, &filter, a.limit, a.hub.json) => r,
        () = interrupted => Ok(()),
    }
}

/// A page of audit records, oldest first.
struct Page {
    records: Vec<Value>,
    /// Whether the hub understood `before` (it answers with `prev`); an
    /// older hub ignores it and answers its oldest records instead.
    paged_back: bool,
}

/// The newest `limit` records with an id below `before` that pass `filter`.
async fn newest(client: &Client, filter: &Filter, limit: u16, before: u64) -> Result<Page, Stop> {
    if limit == 0 {
        return Ok(Page {
            records: Vec::new(),
            paged_back: true,
        });
    }
    let before = before.to_string();
    let limit = limit.to_string();
    let path = format!(
        "/v1/audit{}",
        query(&[
            ("before", Some(&before)),
            ("limit", Some(&limit)),
            ("kind", filter.kind.as_deref()),
            ("tenant", filter.tenant.as_deref()),
            ("account", filter.account.as_deref()),
        ])
    );
    let mut reply = client.get(&path).await?;
    let paged_back = reply.get("prev").is_some();
    let mut records = match reply.get_mut("records").map(Value::take) {
        Some(Value::Array(r)) => r,
        _ => return Err(unexpected("records")),
    };
    // As for connections: a no-op on hubs that filter themselves.
    records.retain(|r| filter.keeps(r));
    records.sort_by_key(|r| r["id"].as_u64().unwrap_or(0));
    Ok(Page { records, paged_back })
}

/// Prints records: a fixed-width table (so live rows line up with the
/// first ones), or one JSON record per line.
fn print_records(records: &[Value], json: bool, header: bool) -> Result<(), Stop> {
    let mut out = String::new();
    if header && !json {
        out.push_str(&audit_line(&AUDIT_HEADER.map(String::from)));
    }
    for r in records {
        if json {
            out.push_str(&format!("{r}\n"));
        } else {
            out.push_str(&audit_line(&audit_row(r)));
        }
    }
    emit(&out)
}

const AUDIT_HEADER: [&str; 7] = ["TIME", "KIND", "TENANT", "ACCOUNT", "IP", "STREAM", "DETAIL"];
/// Column widths; a longer value pushes its row's later columns right.
const AUDIT_WIDTHS: [usize; 6] = [24, 18, 10, 14, 15, 6];

fn audit_row(r: &Value) -> [String; 7] {
    let time = r["time_ms"].as_u64().map_or_else(|| "-".to_string(), utc);
    let detail = match &r["detail"] {
        Value::Null => "-".to_string(),
        d => truncate(&clean(&d.to_string()), DETAIL_WIDTH),
    };
    [
        time,
        cell(&r["kind"]),
        cell(&r["tenant"]),
        cell(&r["account"]),
        cell(&r["ip"]),
        cell(&r["stream"]),
        detail,
    ]
}

fn audit_line(cells: &[String; 7]) -> String {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(AUDIT_WIDTHS) {
        line.push_str(&format!("{cell:<width$}  "));
    }
    line.push_str(&cells[6]);
    format!("{}\n", line.trim_end())
}

/// `audit --follow`: the newest records, then the live stream from right
/// after the newest record, so nothing is missed or printed twice.
async fn follow(client: &Client, filter: &Filter, limit: u16, json: bool) -> Result<(), Stop> {
    // The log's newest record now: the backlog ends with it and the stream
    // resumes after it.
    let head = newest(client, &Filter::default(), 1, NEWEST).await?;
    let resume = if head.paged_back {
        Some(head.records.last().and_then(|r| r["id"].as_u64()).unwrap_or(0))
    } else {
        // An older hub cannot page back; start the stream at its head.
        None
    };
    let before = resume.map_or(NEWEST, |h| h.saturating_add(1));
    let backlog = newest(client, filter, limit, before).await?;
    print_records(&backlog.records, json, true)?;
    let mut follower = Follower {
        client,
        filter,
        json,
        resume,
        use_token: false,
    };
    follower.run().await
}

/// Why a live audit stream ended, when it may be reopened.
enum Ended {
    /// Its SSE token expired: reopen at once.
    Expired,
    /// Shut down, dropped, or fell behind: reopen after a pause.
    Lost(String),
}

/// Follows the live audit log across reconnects.
struct Follower<'a> {
    client: &'a Client,
    filter: &'a Filter,
    json: bool,
    /// The last record id received (`Last-Event-ID` for the next open).
    resume: Option<u64>,
    /// The hub refused the credential on the stream itself: open it with
    /// SSE tokens minted with the credential instead.
    use_token: bool,
}

impl Follower<'_> {
    async fn run(&mut self) -> Result<(), Stop> {
        let mut stream = self.open().await?;
        loop {
            let ended = self.read(&mut stream).await?;
            let mut delay = match &ended {
                Ended::Expired => Duration::ZERO,
                Ended::Lost(why) => {
                    eprintln!("herald: audit stream lost ({why}); reconnecting");
                    Duration::from_millis(250)
                }
            };
            stream = loop {
                tokio::time::sleep(delay).await;
                match self.open().await {
                    Ok(s) => break s,
                    Err(e) if transient(&e) => {
                        eprintln!("herald: {e}; retrying");
                        delay = (delay * 2).clamp(Duration::from_millis(250), MAX_RETRY_DELAY);
                    }
                    Err(e) => return Err(e.into()),
                }
            };
        }
    }

    /// Opens the stream after `resume`. A hub that restarted with a
    /// fresh log no longer knows that id: start at its head instead.
    async fn open(&mut self) -> Result<SseStream, ClientError> {
        match (self.open_with_credential().await, self.resume) {
            (Err(e), Some(id)) if e.code() == Some("invalid_last_event_id") => {
                eprintln!("herald: the hub no longer knows audit record {id}; following from its newest record");
                self.resume = None;
                self.open_with_credential().await
            }
            (other, _) => other,
        }
    }

    /// Tries the credential in the `Authorization` header; if the hub
    /// refuses it there (a hub may accept only SSE tokens on streams),
    /// mints an SSE token with it and uses that, from then on.
    async fn open_with_credential(&mut self) -> Result<SseStream, ClientError> {
        if !self.use_token {
            let refused = match self.client.stream(AUDIT_EVENTS, StreamAuth::Header, self.resume).await {
                Err(e) if is_refusal(&e) => e,
                other => return other,
            };
            let token = match self.mint().await {
                Ok(t) => t,
                // Minting failing too: the first refusal says why best
                // (`admin_required`, `credential_revoked`, ...).
                Err(e) if is_refusal(&e) => return Err(refused),
                Err(e) => return Err(e),
            };
            let stream = self
                .client
                .stream(AUDIT_EVENTS, StreamAuth::Query(&token), self.resume)
                .await?;
            self.use_token = true;
            return Ok(stream);
        }
        let token = self.mint().await?;
        self.client
            .stream(AUDIT_EVENTS, StreamAuth::Query(&token), self.resume)
            .await
    }

    /// A fresh single-use SSE token for the audit stream.
    async fn mint(&self) -> Result<String, ClientError> {
        let credential = self.client.token();
        let body = if credential.starts_with(crate::auth::api_key::PREFIX) {
            // A key mints for a principal it names; a tenant-bound key's
            // token is always inside its tenant.
            json!({"sub": "herald-cli", "subscribe": ["*"], "admin": true, "ttl": STREAM_TOKEN_TTL})
        } else {
            // A JWT mints for itself.
            json!({ "ttl": STREAM_TOKEN_TTL })
        };
        let reply = self.client.post("/v1/tokens", &body).await?;
        reply["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("unexpected answer from POST /v1/tokens: no `token`".into()))
    }

    /// Prints records until the stream ends; an end that must not be
    /// retried (revoked, kicked, evicted) is an error.
    async fn read(&mut self, stream: &mut SseStream) -> Result<Ended, Stop> {
        loop {
            let event = match stream.next().await {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(Ended::Lost("the hub closed it".into())),
                Err(e) => return Ok(Ended::Lost(e.to_string())),
            };
            match event.event.as_str() {
                "audit" => self.record(&event)?,
                "expired" => return Ok(Ended::Expired),
                "shutdown" => {
                    let why = match reason(&event).as_str() {
                        "shutdown" => "the hub shut down".to_string(),
                        other => format!("shutdown: {other}"),
                    };
                    return Ok(Ended::Lost(why));
                }
                "overflow" => {
                    // Its id is the last record delivered: resume from it.
                    self.resume = event.id.as_deref().and_then(|i| i.parse().ok()).or(self.resume);
                    return Ok(Ended::Lost("it fell behind".into()));
                }
                "reset" => eprintln!("herald: some audit records are gone from the hub; continuing"),
                "revoked" | "kicked" | "evicted" => {
                    return Err(Stop::Failed(format!(
                        "the audit stream was {}: {}",
                        event.event,
                        reason(&event)
                    )))
                }
                _ => {}
            }
        }
    }

    fn record(&mut self, event: &SseEvent) -> Result<(), Stop> {
        let Ok(record) = serde_json::from_str::<Value>(&event.data) else {
            return Ok(());
        };
        let id = event.id.as_deref().and_then(|i| i.parse().ok());
        self.resume = id.or(record["id"].as_u64()).or(self.resume);
        if !self.filter.keeps(&record) {
            return Ok(());
        }
        print_records(std::slice::from_ref(&record), self.json, false)
    }
}

/// A control event's `data.reason`.
fn reason(event: &SseEvent) -> String {
    serde_json::from_str::<Value>(&event.data)
        .ok()
        .and_then(|v| v["reason"].as_str().map(clean))
        .unwrap_or_else(|| clean(&event.data))
}

/// The hub refused the credential (as opposed to failing).
fn is_refusal(e: &ClientError) -> bool {
    matches!(e.status().map(|s| s.as_u16()), Some(401 | 403))
}

/// A failure that may clear by itself (the hub restarting, draining, a
/// network blip): worth retrying while following.
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { .. } | ClientError::Protocol(_) => true,
        ClientError::Api { status, .. } => status.is_server_error() || status.as_u16() == 408,
        ClientError::Url(_) => false,
    }
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

// ----------------------------------------------------------------- formatting

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (c, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{c:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON value as a table cell: `-` for nothing, lists joined with `,`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => clean(s),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => clean(&other.to_string()),
    }
}

/// Escapes control characters: account names, origins and paths in the
/// audit log come from clients, and a terminal would obey their escape
/// sequences.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters, the cut marked with `…`.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A duration as `42s`, `3m12s`, `5h07m`, `2d03h`.
fn age(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Bytes as `512 B`, `4.0 KiB`, `1.5 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Unix milliseconds as RFC 3339 UTC, `2025-12-02T17:03:12.345Z` (the
/// standard library has no time zones, and UTC reads the same on every
/// operator's machine as in the hub's logs).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms % 1000
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn now_secs() -> u64 {
    crate::hub::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages_read_as_expected() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_764_694_992_345), "2025-12-02T17:03:12.345Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(age(5), "5s");
        assert_eq!(age(192), "3m12s");
        assert_eq!(age(3 * 3600 + 120), "3h02m");
        assert_eq!(age(2 * 86_400 + 3600), "2d01h");
        assert_eq!(size(4096), "4.0 KiB");
    }

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
    fn cells_escape_terminal_control_characters() {
        assert_eq!(cell(&json!("a\u{1b}[2Jb")), "a\\u{1b}[2Jb");
        assert_eq!(cell(&json!(["x", "y"])), "x,y");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn audit_rows_line_up_and_filters_match_exactly() {
        let r = json!({"id": 1, "time_ms": 0, "kind": "stream_opened", "account": "bob",
                       "ip": "10.0.0.1", "stream": 4, "detail": {"selectors": ["a"]}});
        let line = audit_line(&audit_row(&r));
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z  stream_opened       -           bob             10.0.0.1         4       {\"selectors\":[\"a\"]}\n"
        );
        let header = audit_line(&AUDIT_HEADER.map(String::from));
        assert_eq!(header.find("KIND"), line.find("stream_opened"));
        let hub_wide = Filter {
            tenant: Some(String::new()),
            ..Filter::default()
        };
        assert!(hub_wide.keeps(&r));
        let acme = Filter {
            tenant: Some("acme".into()),
            ..Filter::default()
        };
        assert!(!acme.keeps(&r));
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
