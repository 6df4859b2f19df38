//! Plays a scenario against a real hub through its real router, in
//! process, and checks every stream against the model.
//!
//! Reading a stream "until nothing more is queued" needs no clock: once the
//! hub says every published event is dispatched (`Hub::dispatched`) the
//! event is in every matching stream's queue, and a revocation is answered
//! only once the streams it closes are closed, so after each step every
//! due frame is already waiting. A stream body
//! is polled until it is not immediately ready (with a few yields so that
//! tasks the hub spawned get to run first).

use super::model::{self, Carried, Denial, Expect, Logged, Part, Start, Who};
use super::world::{Action, Credential, Publish, Publisher, Revoke, RevokeKind, Scenario};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use futures_util::FutureExt;
use herald::config::{ApiKeyConfig, Config, StoreKind};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::fmt::Write as _;
use tower::ServiceExt;

/// The HS256 secret for native JWTs.
const SECRET: &str = "oracle-secret-that-is-long-enough-0123456789";
/// The Mercure key (publisher and subscriber), distinct from the native one
/// so that each kind of token is only accepted where it belongs.
const MERCURE_KEY: &str = "oracle-mercure-key-that-is-long-enough-0123";

/// What every case shares: API keys and a directory the hub may use.
pub struct Env {
    admin_key: String,
    admin_hash: String,
    acme_key: String,
    acme_hash: String,
    dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let (admin_key, admin_hash) = herald::auth::api_key::generate();
        let (acme_key, acme_hash) = herald::auth::api_key::generate();
        Env {
            admin_key,
            admin_hash,
            acme_key,
            acme_hash,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A memory-store hub with Mercure (anonymous subscribers, subscription
    /// events) and every cap, queue and rate limit far above what a case
    /// uses: all streams share one client address in process, and a cap
    /// must never be what decides a delivery here.
    fn config(&self) -> Config {
        let mut c = Config {
            data_dir: self.dir.path().to_path_buf(),
            jwt_secret: Some(SECRET.into()),
            store: StoreKind::Memory,
            ..Config::default()
        };
        c.api_keys = vec![
            ApiKeyConfig {
                id: "admin".into(),
                hash: self.admin_hash.clone(),
                scopes: ["publish", "tokens", "revoke", "admin"].map(String::from).to_vec(),
                tenant: None,
                publish: None,
            },
            ApiKeyConfig {
                id: "acme-backend".into(),
                hash: self.acme_hash.clone(),
                scopes: ["publish", "tokens"].map(String::from).to_vec(),
                tenant: Some("acme".into()),
                publish: None,
            },
        ];
        let l = &mut c.limits;
        l.per_session = 100_000;
        l.per_account = 100_000;
        l.per_ip = 100_000;
        l.hub_total = 100_000;
        l.queue_events = 100_000;
        l.queue_bytes = 1 << 30;
        l.auth_failures_per_minute = 0;
        l.retained_per_tenant = 100_000;
        c.mercure.enabled = true;
        c.mercure.anonymous = true;
        c.mercure.jwt_key = Some(MERCURE_KEY.into());
        c.mercure.jwt_alg = Some("HS256".into());
        c.mercure.subscriptions = true;
        c
    }

    fn sign(&self, key: &str, mut claims: Value) -> String {
        // Issued a minute ago: every credential predates every revocation
        // of the case, so "issued before" never depends on the clock.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        claims["iat"] = json!(now - 60);
        claims["exp"] = json!(now + 3600);
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .expect("sign")
    }

    fn subscriber_token(&self, cred: &Credential) -> Option<String> {
        match cred {
            Credential::Native {
                sub,
                tenant,
                sid,
                roles,
                groups,
                may,
            } => {
                let mut c = json!({"sub": sub, "roles": roles, "groups": groups, "herald": {"subscribe": may}});
                if let Some(t) = tenant {
                    c["tenant"] = json!(t);
                }
                if let Some(s) = sid {
                    c["sid"] = json!(s);
                }
                Some(self.sign(SECRET, c))
            }
            Credential::Mercure { sub, private } => {
                let mut c = json!({"mercure": {"subscribe": private}});
                if let Some(s) = sub {
                    c["sub"] = json!(s);
                }
                Some(self.sign(MERCURE_KEY, c))
            }
            Credential::Anonymous => None,
        }
    }

    fn publisher_credential(&self, by: Publisher) -> String {
        match by {
            Publisher::AdminKey => self.admin_key.clone(),
            Publisher::AcmeKey => self.acme_key.clone(),
            Publisher::Jwt { tenant } => {
                let mut c = json!({"sub": "publisher", "herald": {"publish": ["*"]}});
                if let Some(t) = tenant {
                    c["tenant"] = json!(t);
                }
                self.sign(SECRET, c)
            }
            Publisher::Mercure => self.sign(MERCURE_KEY, json!({"mercure": {"publish": ["*"]}})),
        }
    }
}

/// A rule the hub broke, and everything needed to read the case.
#[derive(Debug, Clone)]
pub struct Finding {
    /// One line naming the rule (findings are grouped by it).
    pub rule: String,
    /// What happened, for a human.
    pub detail: String,
}

/// What the cases exercised, so that a green run says how much it checked.
#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub streams: usize,
    pub delivered: usize,
    pub from_snapshot: usize,
    pub from_replay: usize,
    pub resets: usize,
    pub revoked: usize,
    pub refused_reopens: usize,
    pub subscription_events: usize,
    /// Events on a topic a stream asked for that the model withheld, by
    /// the reason(s) it gives.
    pub withheld: std::collections::BTreeMap<String, usize>,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.streams += o.streams;
        self.delivered += o.delivered;
        self.from_snapshot += o.from_snapshot;
        self.from_replay += o.from_replay;
        self.resets += o.resets;
        self.revoked += o.revoked;
        self.refused_reopens += o.refused_reopens;
        self.subscription_events += o.subscription_events;
        for (k, v) in &o.withheld {
            *self.withheld.entry(k.clone()).or_default() += v;
        }
    }
}

/// What a stream received.
#[derive(Clone, Debug)]
enum Got {
    Event {
        id: String,
        data: String,
    },
    /// A frame without `id:` (a control event).
    Control {
        event: String,
        data: String,
    },
    End,
}

/// A minimal SSE parser (WHATWG field rules), keeping each block's own id.
#[derive(Default)]
struct Sse {
    buf: Vec<u8>,
    id: Option<String>,
    event: String,
    data: Vec<String>,
}

impl Sse {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Got>) {
        self.buf.extend_from_slice(bytes);
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            if line.is_empty() {
                if !self.data.is_empty() {
                    let data = self.data.join("\n");
                    out.push(match self.id.take() {
                        Some(id) => Got::Event { id, data },
                        None => Got::Control {
                            event: if self.event.is_empty() {
                                "message".into()
                            } else {
                                self.event.clone()
                            },
                            data,
                        },
                    });
                }
                self.id = None;
                self.event.clear();
                self.data.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(i) => (&line[..i], line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..])),
                None => (line, ""),
            };
            match field {
                "id" => self.id = Some(value.to_string()),
                "event" => self.event = value.to_string(),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
    }
}

struct Stream {
    /// Index of the scenario's subscriber.
    subscriber: usize,
    who: Who,
    start: Start,
    /// Log length when it opened.
    opened_at: usize,
    /// The action that opened it.
    action: usize,
    body: Option<Body>,
    sse: Sse,
    /// Every byte received, shown with a failure when `HERALD_ORACLE_RAW` is set.
    raw: String,
    got: Vec<Got>,
    /// Set when a revocation matched it: the log length then, and the type.
    revoked: Option<(usize, &'static str)>,
    /// Dropped by the client (a reconnect replaced it); checked already.
    dropped: bool,
}

impl Stream {
    /// Reads everything already queued for this stream.
    async fn drain(&mut self) {
        let Some(body) = self.body.as_mut() else { return };
        let mut idle = 0;
        loop {
            match body.frame().now_or_never() {
                Some(Some(Ok(frame))) => {
                    idle = 0;
                    if let Ok(data) = frame.into_data() {
                        self.raw.push_str(&String::from_utf8_lossy(&data));
                        self.sse.feed(&data, &mut self.got);
                    }
                }
                Some(Some(Err(_))) | Some(None) => {
                    self.got.push(Got::End);
                    self.body = None;
                    return;
                }
                None => {
                    idle += 1;
                    if idle > 3 {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

async fn send(router: &axum::Router, req: Request<Body>) -> Response<Body> {
    router.clone().oneshot(req).await.expect("the router is infallible")
}

async fn text(resp: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn query(asks: &[&str]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for a in asks {
        q.append_pair("topic", a);
    }
    q.finish()
}

/// A case in progress.
struct Run<'a> {
    env: &'a Env,
    sc: &'a Scenario,
    hub: herald::Hub,
    router: axum::Router,
    log: Vec<Logged>,
    streams: Vec<Stream>,
    revocations: Vec<Revoke>,
    tokens: Vec<Option<String>>,
    /// What happened so far, one line per action.
    transcript: Vec<String>,
    stats: Stats,
}

/// Plays `sc` on a fresh hub. `Err` carries the first broken rule.
pub async fn run(env: &Env, sc: &Scenario) -> Result<Stats, Finding> {
    let hub = herald::Hub::builder(env.config()).build().expect("hub builds");
    let mut r = Run {
        env,
        sc,
        router: hub.router(),
        hub,
        log: Vec::new(),
        streams: Vec::new(),
        revocations: Vec::new(),
        tokens: sc.subscribers.iter().map(|s| env.subscriber_token(&s.cred)).collect(),
        transcript: Vec::new(),
        stats: Stats::default(),
    };
    match r.play().await {
        Ok(()) => Ok(r.stats),
        Err(mut f) => {
            f.detail = format!("{}\n{}", r.describe(), f.detail);
            Err(f)
        }
    }
}

impl Run<'_> {
    async fn play(&mut self) -> Result<(), Finding> {
        for (i, action) in self.sc.actions.iter().enumerate() {
            match action {
                Action::Publish(p) => self.publish(i, p).await?,
                Action::Open { subscriber, resume } => {
                    let s = subscriber % self.sc.subscribers.len();
                    let start = match resume {
                        Some(r) if !self.log.is_empty() => {
                            let who = Who::of(&self.sc.subscribers[s]);
                            model::resume_from(&who, r % self.log.len(), &self.log)
                        }
                        _ => Start::Fresh,
                    };
                    self.open(i, s, start).await?;
                }
                Action::Reconnect { stream } => {
                    let current: Vec<usize> = (0..self.streams.len()).filter(|&k| !self.streams[k].dropped).collect();
                    if current.is_empty() {
                        self.transcript
                            .push(format!("#{i} reconnect: no stream open, nothing done"));
                        continue;
                    }
                    let k = current[stream % current.len()];
                    self.reconnect(i, k).await?;
                }
                Action::Revoke(rv) => self.revoke(i, rv).await?,
            }
            self.hub.dispatched().await;
            for s in self.streams.iter_mut().filter(|s| !s.dropped) {
                s.drain().await;
            }
        }
        // Let any task the hub spawned run, then read everything.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        for k in 0..self.streams.len() {
            if !self.streams[k].dropped {
                self.streams[k].drain().await;
                self.check(k)?;
                self.tally(k);
            }
        }
        Ok(())
    }

    async fn publish(&mut self, i: usize, p: &Publish) -> Result<(), Finding> {
        let cred = self.env.publisher_credential(p.by);
        let data = format!("d{i}");
        let client_id = p.client_id.then(|| format!("ev-{i}"));
        let req = if p.by == Publisher::Mercure {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for t in &p.topics {
                form.append_pair("topic", t);
            }
            form.append_pair("data", &data);
            if p.private {
                form.append_pair("private", "on");
            }
            if let Some(id) = &client_id {
                form.append_pair("id", id);
            }
            Request::post("/.well-known/mercure")
                .header("authorization", format!("Bearer {cred}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form.finish()))
        } else {
            let audience = match &p.audience {
                None => json!("public"),
                Some(a) => {
                    let mut o = serde_json::Map::new();
                    if let Some(t) = a.tenant {
                        o.insert("tenant".into(), json!(t));
                    }
                    for (k, v) in [
                        ("users", &a.users),
                        ("sessions", &a.sessions),
                        ("roles", &a.roles),
                        ("groups", &a.groups),
                    ] {
                        if let Some(v) = v {
                            o.insert(k.into(), json!(v));
                        }
                    }
                    Value::Object(o)
                }
            };
            let mut body = json!({"topics": p.topics, "data": data, "audience": audience, "retain": p.retain});
            if let Some(id) = &client_id {
                body["id"] = json!(id);
            }
            Request::post("/v1/publish")
                .header("authorization", format!("Bearer {cred}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
        }
        .expect("request");
        let resp = send(&self.router, req).await;
        let status = resp.status();
        let answer = text(resp).await;
        match model::carried(p) {
            Err(code) => {
                self.transcript.push(format!("#{i} {p} -> refused ({status})"));
                if status != StatusCode::FORBIDDEN || !answer.contains(code) {
                    return Err(Finding {
                        rule: "a tenant-bound publisher published into another tenant".into(),
                        detail: format!("#{i} {p}: expected 403 {code}, got {status} {answer}"),
                    });
                }
            }
            Ok(aud) => {
                if status != StatusCode::OK {
                    self.transcript.push(format!("#{i} {p} -> {status}"));
                    return Err(Finding {
                        rule: format!("a valid publish was refused ({status})"),
                        detail: format!("#{i} {p}: {answer}"),
                    });
                }
                let id = if p.by == Publisher::Mercure {
                    answer.clone()
                } else {
                    serde_json::from_str::<Value>(&answer)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_string))
                        .unwrap_or_default()
                };
                if let Some(cid) = &client_id {
                    if &id != cid {
                        return Err(Finding {
                            rule: "a client-chosen event id was not kept".into(),
                            detail: format!("#{i} {p}: asked for id {cid}, got {id}"),
                        });
                    }
                }
                self.transcript
                    .push(format!("#{i} {p} -> E{} id={id} carries {aud}", self.log.len()));
                self.log.push(Logged {
                    id,
                    data,
                    topics: p.topics.clone(),
                    aud,
                    retain: p.retain,
                    action: i,
                });
            }
        }
        Ok(())
    }

    fn stream_request(&self, s: usize, last_event_id: Option<&str>) -> Request<Body> {
        let sub = &self.sc.subscribers[s];
        let path = match sub.cred {
            Credential::Native { .. } => "/v1/events",
            _ => "/.well-known/mercure",
        };
        let mut req = Request::get(format!("{path}?{}", query(&sub.asks)));
        if let Some(t) = &self.tokens[s] {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.body(Body::empty()).expect("request")
    }

    async fn open(&mut self, i: usize, s: usize, start: Start) -> Result<(), Finding> {
        let sub = &self.sc.subscribers[s];
        let who = Who::of(sub);
        let denied_by = self.revocations.iter().find(|r| model::revokes(r, &who)).copied();
        let last_event_id = match start {
            Start::Resume { after } | Start::Reset { presented: after } => Some(self.log[after].id.clone()),
            Start::Fresh => None,
        };
        let resp = send(&self.router, self.stream_request(s, last_event_id.as_deref())).await;
        let status = resp.status();
        let k = self.streams.len();
        let how = match start {
            Start::Fresh => "fresh".to_string(),
            Start::Resume { after } => format!("Last-Event-ID={} (E{after})", self.log[after].id),
            Start::Reset { presented } => format!(
                "Last-Event-ID={} (E{presented}, another tenant's client id)",
                self.log[presented].id
            ),
        };
        if let Some(rv) = denied_by {
            self.stats.refused_reopens += 1;
            self.transcript
                .push(format!("#{i} open S{s} {how} -> {status} (expected 401)"));
            if status != StatusCode::UNAUTHORIZED {
                return Err(Finding {
                    rule: format!("a revoked credential opened a stream again ({})", rv.wire_type()),
                    detail: format!(
                        "S{s} ({sub}) after \"{rv}\": expected 401, got {status} {}",
                        text(resp).await
                    ),
                });
            }
            return Ok(());
        }
        if status != StatusCode::OK {
            self.transcript.push(format!("#{i} open S{s} {how} -> {status}"));
            return Err(Finding {
                rule: format!("a stream the rules allow was refused ({status})"),
                detail: format!("S{s} ({sub}): {}", text(resp).await),
            });
        }
        self.transcript.push(format!("#{i} open T{k} = S{s} {how}"));
        let mut stream = Stream {
            subscriber: s,
            who,
            start,
            opened_at: self.log.len(),
            action: i,
            body: Some(resp.into_body()),
            sse: Sse::default(),
            raw: String::new(),
            got: Vec::new(),
            revoked: None,
            dropped: false,
        };
        stream.drain().await;
        self.streams.push(stream);
        Ok(())
    }

    async fn reconnect(&mut self, i: usize, k: usize) -> Result<(), Finding> {
        self.streams[k].drain().await;
        let s = self.streams[k].subscriber;
        if self.streams[k].revoked.is_some() {
            // The stream was ended by a revocation: the client comes back
            // with the same credential, which must be refused.
            self.check(k)?;
            self.tally(k);
            self.streams[k].dropped = true;
            self.transcript.push(format!("#{i} reconnect T{k} (revoked)"));
            let last = self.last_expected(k);
            let who = self.streams[k].who.clone();
            let start = last.map_or(Start::Fresh, |after| model::resume_from(&who, after, &self.log));
            return self.open(i, s, start).await;
        }
        self.check(k)?;
        self.tally(k);
        let last = self.last_expected(k);
        let st = &mut self.streams[k];
        st.dropped = true;
        st.body = None;
        self.transcript.push(format!("#{i} reconnect T{k}: dropped"));
        let who = self.streams[k].who.clone();
        let start = last.map_or(Start::Fresh, |after| model::resume_from(&who, after, &self.log));
        self.open(i, s, start).await
    }

    /// The last event the stream was due (and, having passed the check,
    /// received): where its client resumes from.
    fn last_expected(&self, k: usize) -> Option<usize> {
        self.expectation(k).iter().rev().find_map(|e| match e {
            Expect::Event { index, .. } => Some(*index),
            _ => None,
        })
    }

    async fn revoke(&mut self, i: usize, rv: &Revoke) -> Result<(), Finding> {
        let mut body = json!({"type": rv.wire_type(), "account": rv.account});
        match rv.kind {
            RevokeKind::Session(s) => body["session"] = json!(s),
            RevokeKind::Role(r) => body["role"] = json!(r),
            RevokeKind::Logout => {}
        }
        if let Some(t) = rv.tenant {
            body["tenant"] = json!(t);
        }
        let req = Request::post("/v1/revocations")
            .header("authorization", format!("Bearer {}", self.env.admin_key))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = send(&self.router, req).await;
        let status = resp.status();
        let answer: Value = serde_json::from_str(&text(resp).await).unwrap_or(Value::Null);
        let at = self.log.len();
        let mut hit = Vec::new();
        for (k, st) in self.streams.iter_mut().enumerate() {
            if !st.dropped && st.revoked.is_none() && model::revokes(rv, &st.who) {
                st.revoked = Some((at, rv.wire_type()));
                hit.push(format!("T{k}"));
            }
        }
        self.transcript.push(format!(
            "#{i} {rv} -> {status} {answer}; the model closes [{}]",
            hit.join(",")
        ));
        self.revocations.push(*rv);
        if status != StatusCode::OK {
            return Err(Finding {
                rule: format!("a revocation was refused ({status})"),
                detail: format!("#{i} {rv}: {answer}"),
            });
        }
        // Streams the client already saw end (a previous revocation) are
        // not live, so the count is exactly the model's.
        let closed = answer["closed"].as_u64().unwrap_or(u64::MAX);
        if closed != hit.len() as u64 {
            return Err(Finding {
                rule: format!("a revocation closed a different number of streams ({})", rv.wire_type()),
                detail: format!("#{i} {rv}: hub closed {closed}, the model closes {}", hit.len()),
            });
        }
        Ok(())
    }

    /// Counts what a stream that passed its check exercised.
    fn tally(&mut self, k: usize) {
        let mut t = Stats {
            streams: 1,
            ..Stats::default()
        };
        for e in self.expectation(k) {
            match e {
                Expect::Event { part, .. } => {
                    t.delivered += 1;
                    match part {
                        Part::Snapshot => t.from_snapshot += 1,
                        Part::Replay => t.from_replay += 1,
                        Part::Live => {}
                    }
                }
                Expect::Reset => t.resets += 1,
                Expect::Revoked { .. } => t.revoked += 1,
                Expect::End => {}
            }
        }
        let st = &self.streams[k];
        let asks = &self.sc.subscribers[st.subscriber].asks;
        for e in &self.log {
            let why = model::denials(&st.who, asks, &e.topics, &e.aud);
            // An event held back by a single rule is one that rule alone
            // keeps from leaking: those are the counts worth reading.
            match why.as_slice() {
                [] => {}
                [Denial::TopicNotAsked, ..] | [.., Denial::TopicNotAsked] => {}
                [only] => *t.withheld.entry(format!("{only:?} alone")).or_default() += 1,
                _ => *t.withheld.entry("several rules at once".into()).or_default() += 1,
            }
        }
        t.subscription_events = st
            .got
            .iter()
            .filter(|g| matches!(g, Got::Control { event, data } if event == "message" && subscription_topic(data).is_some()))
            .count();
        self.stats.add(&t);
    }

    fn expectation(&self, k: usize) -> Vec<Expect> {
        let st = &self.streams[k];
        let asks = &self.sc.subscribers[st.subscriber].asks;
        model::expected(&st.who, asks, st.start, st.opened_at, &self.log, st.revoked)
    }

    /// Compares what stream `k` received with the model.
    fn check(&self, k: usize) -> Result<(), Finding> {
        let st = &self.streams[k];
        let sub = &self.sc.subscribers[st.subscriber];
        let expected = self.expectation(k);
        // Hub subscription events are not in the model's log (the hub
        // publishes them on its own); each must still be one this
        // subscriber may see, and then it is set aside.
        let mut got = Vec::new();
        for g in &st.got {
            let (id, data) = match g {
                Got::Event { id, data } if !self.log.iter().any(|e| &e.id == id) => (Some(id), data),
                Got::Control { event, data } if event == "message" => (None, data),
                _ => {
                    got.push(g.clone());
                    continue;
                }
            };
            let Some(topic) = subscription_topic(data) else {
                return Err(self.finding(
                    k,
                    "a stream received an event nobody published".into(),
                    format!("id={id:?} data={data}"),
                ));
            };
            let private = Carried {
                private: true,
                ..Carried::default()
            };
            let why = model::denials(&st.who, &sub.asks, &[topic.as_str()], &private);
            if !why.is_empty() {
                return Err(self.finding(
                    k,
                    format!("leak: {}", join(&why)),
                    format!("received the hub's subscription event on {topic}"),
                ));
            }
        }
        for pos in 0..expected.len().max(got.len()) {
            let want = expected.get(pos);
            let have = got.get(pos);
            let ok = match (want, have) {
                (Some(Expect::Event { index, .. }), Some(Got::Event { id, data })) => {
                    let e = &self.log[*index];
                    if &e.id == id && &e.data != data {
                        return Err(self.finding(
                            k,
                            "an event arrived with another event's data".into(),
                            format!("id={id}: expected data {:?}, got {data:?}", e.data),
                        ));
                    }
                    &e.id == id
                }
                (Some(Expect::Revoked { reason }), Some(Got::Control { event, data })) if event == "revoked" => {
                    let told = serde_json::from_str::<Value>(data)
                        .ok()
                        .and_then(|v| v["reason"].as_str().map(str::to_string));
                    if told.as_deref() != Some(*reason) {
                        return Err(self.finding(
                            k,
                            "event: revoked named another reason than the revocation type".into(),
                            format!("expected reason {reason}, got {data}"),
                        ));
                    }
                    true
                }
                (Some(Expect::End), Some(Got::End)) => true,
                (Some(Expect::Reset), Some(Got::Control { event, .. })) => event == "reset",
                _ => false,
            };
            if !ok {
                let (rule, why) = self.classify(k, &expected, &got, pos);
                return Err(self.finding(k, rule, why));
            }
        }
        Ok(())
    }

    /// Names the rule broken at the first difference, `pos`.
    fn classify(&self, k: usize, expected: &[Expect], got: &[Got], pos: usize) -> (String, String) {
        let st = &self.streams[k];
        let sub = &self.sc.subscribers[st.subscriber];
        let index_of = |id: &str| self.log.iter().position(|e| e.id == id);
        let expected_index = |i: usize| {
            expected
                .iter()
                .position(|e| matches!(e, Expect::Event { index, .. } if *index == i))
        };
        match got.get(pos) {
            Some(Got::Event { id, .. }) => {
                let i = index_of(id).expect("known event");
                let e = &self.log[i];
                let about = format!("E{i} (id={id}, {})", self.event_text(i));
                match expected_index(i) {
                    None => {
                        let why = model::denials(&st.who, &sub.asks, &e.topics, &e.aud);
                        if !why.is_empty() {
                            return (format!("leak: {}", join(&why)), format!("received {about}"));
                        }
                        let rule = match st.start {
                            _ if st.revoked.is_some_and(|(at, _)| i >= at) => {
                                "an event was delivered after the revocation that ended the stream"
                            }
                            Start::Fresh | Start::Reset { .. } if i < st.opened_at && e.retain => {
                                "the retained snapshot sent an event that is not the latest of its (topic, audience) slot"
                            }
                            Start::Fresh | Start::Reset { .. } if i < st.opened_at => {
                                "a fresh stream received an event published before it opened that was not retained"
                            }
                            Start::Resume { after } if i <= after => {
                                "a resumed stream received an event from at or before its Last-Event-ID"
                            }
                            _ => "an event was delivered that the model does not expect",
                        };
                        (rule.into(), format!("received {about}"))
                    }
                    Some(p) if p < pos => (
                        "an event was delivered twice or out of order".into(),
                        format!("received {about} again or late"),
                    ),
                    Some(_) => self.missing(k, expected.get(pos), got),
                }
            }
            Some(Got::Control { event, data }) => match expected.get(pos) {
                Some(Expect::Event { .. }) | Some(Expect::End) | None if event == "revoked" => (
                    "a stream was revoked though no revocation matched it, or too early".into(),
                    format!("received event: {event} {data}"),
                ),
                Some(Expect::Event { .. }) => self.missing(k, expected.get(pos), got),
                _ => (
                    format!("an unexpected control event: {event}"),
                    format!("received event: {event} {data}"),
                ),
            },
            Some(Got::End) => match expected.get(pos) {
                None => ("a stream ended without a reason".into(), "the body ended".into()),
                w => self.missing(k, w, got),
            },
            None => self.missing(k, expected.get(pos), got),
        }
    }

    fn missing(&self, k: usize, want: Option<&Expect>, got: &[Got]) -> (String, String) {
        let _ = k;
        match want {
            Some(Expect::Event { index, part }) => {
                let later = got
                    .iter()
                    .any(|g| matches!(g, Got::Event { id, .. } if *id == self.log[*index].id));
                if later {
                    (
                        "events were delivered out of publish order".into(),
                        format!("E{index} arrived later than expected"),
                    )
                } else {
                    let rule = match part {
                        Part::Snapshot => "the retained snapshot lacks a visible event",
                        Part::Replay => "a resumed stream missed a visible event from history",
                        Part::Live => "a visible live event was not delivered",
                    };
                    (rule.into(), format!("missing E{index} ({})", self.event_text(*index)))
                }
            }
            Some(Expect::Revoked { .. }) => (
                "a matching revocation did not end the stream with event: revoked".into(),
                "no event: revoked".into(),
            ),
            Some(Expect::Reset) => (
                "a Last-Event-ID unknown in the subscriber's scope did not start with event: reset".into(),
                "no event: reset first".into(),
            ),
            Some(Expect::End) => (
                "a stream went on after event: revoked".into(),
                "the body did not end".into(),
            ),
            None => (
                "an event was delivered that the model does not expect".into(),
                String::new(),
            ),
        }
    }

    fn event_text(&self, i: usize) -> String {
        let e = &self.log[i];
        format!(
            "topics=[{}] carries {}{} from #{}",
            e.topics.join(","),
            e.aud,
            if e.retain { " retained" } else { "" },
            e.action
        )
    }

    fn finding(&self, k: usize, rule: String, detail: String) -> Finding {
        let st = &self.streams[k];
        let sub = &self.sc.subscribers[st.subscriber];
        let mut d = String::new();
        let how = match st.start {
            Start::Fresh => "fresh".to_string(),
            Start::Resume { after } => format!("resumed after E{after}"),
            Start::Reset { presented } => format!("presenting E{presented}'s id, unknown in its scope"),
        };
        let _ = writeln!(
            d,
            "stream T{k} = S{} ({sub}) opened at #{} {how}",
            st.subscriber, st.action
        );
        let _ = writeln!(d, "  {detail}");
        let expected: Vec<String> = self
            .expectation(k)
            .iter()
            .map(|e| match e {
                Expect::Event { index, .. } => format!("E{index}"),
                Expect::Revoked { reason } => format!("revoked({reason})"),
                Expect::Reset => "reset".into(),
                Expect::End => "end".into(),
            })
            .collect();
        let got: Vec<String> = st
            .got
            .iter()
            .map(|g| match g {
                Got::Event { id, .. } => match self.log.iter().position(|e| &e.id == id) {
                    Some(i) => format!("E{i}"),
                    None => format!("hub:{id}"),
                },
                Got::Control { event, .. } => event.clone(),
                Got::End => "end".into(),
            })
            .collect();
        let _ = writeln!(d, "  expected: [{}]", expected.join(" "));
        let _ = write!(d, "  received: [{}]", got.join(" "));
        if std::env::var_os("HERALD_ORACLE_RAW").is_some() {
            let _ = write!(d, "\n  raw stream:\n{}", st.raw);
        }
        Finding { rule, detail: d }
    }

    fn describe(&self) -> String {
        let mut d = String::new();
        let _ = writeln!(d, "case seed {}", self.sc.seed);
        let _ = writeln!(d, "subscribers:");
        for (i, s) in self.sc.subscribers.iter().enumerate() {
            let _ = writeln!(d, "  S{i} {s}");
        }
        let _ = writeln!(d, "what happened:");
        for line in &self.transcript {
            let _ = writeln!(d, "  {line}");
        }
        d
    }
}

/// The topic of a hub subscription event (Mercure JSON-LD), if it is one.
fn subscription_topic(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    let id = v["id"].as_str()?;
    (v["type"] == "Subscription" && id.starts_with("/.well-known/mercure/")).then(|| id.to_string())
}

fn join(why: &[Denial]) -> String {
    why.iter().map(ToString::to_string).collect::<Vec<_>>().join(" + ")
}
