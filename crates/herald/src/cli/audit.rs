//! `herald audit`: the newest audit records, and with `--follow` the
//! live log across reconnects, missing nothing and printing nothing twice.

use super::client::{Client, ClientError, SseEvent, SseStream, StreamAuth};
use super::format::*;
use super::operator::*;
use serde_json::{json, Value};
use std::time::Duration;

/// `herald audit`: the newest records, then with `--follow` the live log.
pub async fn audit(a: AuditArgs) -> i32 {
    finish(audit_run(a).await)
}

/// Exact-match filters on audit records.
#[derive(Debug, Default, Clone)]
pub(super) struct Filter {
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

pub(super) async fn audit_run(a: AuditArgs) -> Result<(), Stop> {
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
pub(super) struct Page {
    records: Vec<Value>,
    /// Whether the hub understood `before` (it answers with `prev`); an
    /// older hub ignores it and answers its oldest records instead.
    paged_back: bool,
}

/// The newest `limit` records with an id below `before` that pass `filter`.
pub(super) async fn newest(client: &Client, filter: &Filter, limit: u16, before: u64) -> Result<Page, Stop> {
    if limit == 0 {
        return Ok(Page {
            records: Vec::new(),
            paged_back: true,
        });
    }
    let mut records = Vec::new();
    let mut before = before;
    let mut paged_back = true;
    // The hub looks at a bounded number of records per page: a filter
    // that matches rarely gets a `partial` page, and the next one goes on
    // from its `prev` until `limit` records are found or the log ends.
    loop {
        let (before_text, wanted) = (before.to_string(), (usize::from(limit) - records.len()).to_string());
        let path = format!(
            "/v1/audit{}",
            query(&[
                ("before", Some(&before_text)),
                ("limit", Some(&wanted)),
                ("kind", filter.kind.as_deref()),
                ("tenant", filter.tenant.as_deref()),
                ("account", filter.account.as_deref()),
            ])
        );
        let mut reply = client.get(&path).await?;
        paged_back &= reply.get("prev").is_some();
        let mut page = match reply.get_mut("records").map(Value::take) {
            Some(Value::Array(r)) => r,
            _ => return Err(unexpected("records")),
        };
        // As for connections: a no-op on hubs that filter themselves.
        page.retain(|r| filter.keeps(r));
        records.append(&mut page);
        let partial = reply.get("partial").and_then(Value::as_bool) == Some(true);
        match reply.get("prev").and_then(Value::as_u64) {
            Some(prev) if partial && prev < before && records.len() < usize::from(limit) => before = prev,
            _ => break,
        }
    }
    records.sort_by_key(|r| r["id"].as_u64().unwrap_or(0));
    Ok(Page { records, paged_back })
}

/// Prints records: a fixed-width table (so live rows line up with the
/// first ones), or one JSON record per line.
pub(super) fn print_records(records: &[Value], json: bool, header: bool) -> Result<(), Stop> {
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

pub(super) const AUDIT_HEADER: [&str; 7] = ["TIME", "KIND", "TENANT", "ACCOUNT", "IP", "STREAM", "DETAIL"];
/// Column widths; a longer value pushes its row's later columns right.
pub(super) const AUDIT_WIDTHS: [usize; 6] = [24, 18, 10, 14, 15, 6];

pub(super) fn audit_row(r: &Value) -> [String; 7] {
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

pub(super) fn audit_line(cells: &[String; 7]) -> String {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(AUDIT_WIDTHS) {
        line.push_str(&format!("{cell:<width$}  "));
    }
    line.push_str(&cells[6]);
    format!("{}\n", line.trim_end())
}

/// `audit --follow`: the newest records, then the live stream from right
/// after the newest record, so nothing is missed or printed twice.
pub(super) async fn follow(client: &Client, filter: &Filter, limit: u16, json: bool) -> Result<(), Stop> {
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
pub(super) enum Ended {
    /// Its SSE token expired: reopen at once.
    Expired,
    /// Shut down, dropped, or fell behind: reopen after a pause.
    Lost(String),
}

/// Follows the live audit log across reconnects.
pub(super) struct Follower<'a> {
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
pub(super) fn reason(event: &SseEvent) -> String {
    serde_json::from_str::<Value>(&event.data)
        .ok()
        .and_then(|v| v["reason"].as_str().map(clean))
        .unwrap_or_else(|| clean(&event.data))
}

/// The hub refused the credential (as opposed to failing).
pub(super) fn is_refusal(e: &ClientError) -> bool {
    matches!(e.status().map(|s| s.as_u16()), Some(401 | 403))
}

/// A failure that may clear by itself (the hub restarting, draining, a
/// network blip): worth retrying while following.
pub(super) fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { .. } | ClientError::Protocol(_) => true,
        ClientError::Api { status, .. } => status.is_server_error() || status.as_u16() == 408,
        ClientError::Url(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
