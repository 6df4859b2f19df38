//! What every actor of the run shares: the addresses (the proxy and each
//! node directly), the processes, the scheduler's view of which node is
//! up, paused or down, the published-event ledger, counters, and the list
//! of violations. Plus the small HTTP and credential helpers they use.

use super::model::Published;
use super::procs::{Herald, Nats};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The HS256 secret every node shares.
pub const SECRET: &str = "chaos-test-secret-that-is-long-enough-0123456789";

/// The session hash key every node shares.
pub const SESSION_KEY: &str = "chaos-session-hash-key-that-is-long-enough-01";

/// How long a stream may stay completely silent (keepalives come every
/// second) before the client gives up on it and resumes elsewhere.
pub const SILENCE: Duration = Duration::from_secs(6);

/// The generous bound for one request's answer on a busy two-core machine.
pub const ANSWER: Duration = Duration::from_secs(12);

/// What the scheduler knows about a Herald node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Running and not paused.
    Up,
    /// SIGKILLed, not yet listening again.
    Down,
    /// SIGSTOPped.
    Paused,
}

/// Counters for the summary line.
#[derive(Default)]
pub struct Stats {
    /// Publishes answered 2xx (or `409` on a retry).
    pub answered: AtomicU64,
    /// Publish attempts that were retried.
    pub retries: AtomicU64,
    /// Events received by subscribers.
    pub deliveries: AtomicU64,
    /// Herald SIGKILLs.
    pub kills: AtomicU64,
    /// Herald SIGSTOPs.
    pub pauses: AtomicU64,
    /// NATS server SIGKILL + restart.
    pub nats_restarts: AtomicU64,
    /// Streams reopened with a `Last-Event-ID` from an earlier stream.
    pub resumes: AtomicU64,
    /// Streams given up for silence.
    pub abandoned: AtomicU64,
    /// Revocations answered.
    pub revocations: AtomicU64,
    /// A revoked credential admitted on some node before the revocation
    /// reached it (informational).
    pub late_admissions: AtomicU64,
    /// Token races run.
    pub token_races: AtomicU64,
    /// Token races skipped (a target node was disturbed).
    pub token_races_skipped: AtomicU64,
    /// Cap probes run.
    pub cap_probes: AtomicU64,
    /// Cap probes skipped (a node was killed or paused during the probe).
    pub cap_probes_skipped: AtomicU64,
}

/// Bumps a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The API keys every node accepts.
pub struct Keys {
    /// Hub-wide: publish, tokens, revoke, admin.
    pub admin: String,
    /// Bound to `acme`: publish, tokens.
    pub acme: String,
    /// Bound to `globex`: publish, tokens.
    pub globex: String,
}

/// A revocation the scheduler posted.
#[derive(Clone, Debug)]
pub struct Revocation {
    /// Which victim (index into the victims list).
    pub victim: usize,
    /// The body posted.
    pub body: Value,
    /// When it was answered `200`.
    pub answered: Instant,
}

/// Everything the actors share.
pub struct World {
    /// `http://127.0.0.1:PROXY`
    pub proxy: String,
    /// Each node's own address, for probes that bypass the proxy.
    pub direct: Vec<String>,
    /// The Herald processes.
    pub herald: Vec<Arc<Mutex<Herald>>>,
    /// The NATS processes.
    pub nats: Vec<Arc<Mutex<Nats>>>,
    /// Each node's state and a generation bumped on every change.
    nodes: Mutex<Vec<(NodeState, u64)>>,
    /// The NATS server currently down, if any (never more than one), and
    /// a generation bumped whenever that changes.
    nats_down: Mutex<(Option<usize>, u64)>,
    /// Counters.
    pub stats: Stats,
    violations: Mutex<Vec<String>>,
    notes: Mutex<Vec<String>>,
    /// API keys.
    pub keys: Keys,
    /// A client without connection reuse: every request is a new TCP
    /// connection, so the proxy spreads requests over the nodes.
    pub http: reqwest::Client,
    /// When the run started.
    pub t0: Instant,
    /// Every event any publisher tried, by client id.
    pub published: Mutex<BTreeMap<String, Published>>,
    /// Revocations answered so far.
    pub revocations: Mutex<Vec<Revocation>>,
    /// When a subscriber last received an event.
    pub last_delivery: Mutex<Instant>,
    /// The node behind each labelled stream request (see `proxy.rs`).
    pub routes: super::proxy::Routes,
}

impl World {
    /// A world of `nodes` Herald nodes, all up.
    pub fn new(
        (proxy_port, routes): (u16, super::proxy::Routes),
        herald: Vec<Arc<Mutex<Herald>>>,
        nats: Vec<Arc<Mutex<Nats>>>,
        keys: Keys,
    ) -> World {
        let direct = herald.iter().map(|h| h.lock().base()).collect();
        let n = herald.len();
        World {
            proxy: format!("http://127.0.0.1:{proxy_port}"),
            direct,
            herald,
            nats,
            nodes: Mutex::new(vec![(NodeState::Up, 0); n]),
            nats_down: Mutex::new((None, 0)),
            stats: Stats::default(),
            violations: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            keys,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .connect_timeout(Duration::from_secs(3))
                .build()
                .expect("HTTP client"),
            t0: Instant::now(),
            published: Mutex::new(BTreeMap::new()),
            revocations: Mutex::new(Vec::new()),
            last_delivery: Mutex::new(Instant::now()),
            routes,
        }
    }

    /// Seconds since the run started, for log lines.
    pub fn at(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Records a broken promise (printed at once, listed at the end).
    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("[{:6.1}s] VIOLATION {what}", self.at());
        self.violations.lock().push(what);
    }

    /// Records something worth knowing that breaks no promise.
    pub fn note(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("[{:6.1}s] note: {what}", self.at());
        self.notes.lock().push(what);
    }

    /// Logs a chaos action.
    pub fn log(&self, what: impl std::fmt::Display) {
        eprintln!("[{:6.1}s] {what}", self.at());
    }

    /// The violations so far.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().clone()
    }

    /// The notes so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().clone()
    }

    /// Sets node `i`'s state (and bumps its generation).
    pub fn set_node(&self, i: usize, state: NodeState) {
        let mut nodes = self.nodes.lock();
        nodes[i].0 = state;
        nodes[i].1 += 1;
    }

    /// Node `i`'s state and generation.
    pub fn node(&self, i: usize) -> (NodeState, u64) {
        self.nodes.lock()[i]
    }

    /// Every node's state and generation.
    pub fn nodes(&self) -> Vec<(NodeState, u64)> {
        self.nodes.lock().clone()
    }

    /// Marks NATS server `j` down (`Some`) or every server back (`None`).
    pub fn set_nats_down(&self, j: Option<usize>) {
        let mut d = self.nats_down.lock();
        d.0 = j;
        d.1 += 1;
    }

    /// The NATS server down right now, if any.
    pub fn nats_down(&self) -> Option<usize> {
        self.nats_down.lock().0
    }

    /// `Some(generation)` while every NATS server is up and JetStream
    /// healthy: a probe that sees the same value before and after ran
    /// while NATS was whole.
    pub fn nats_whole(&self) -> Option<u64> {
        let d = self.nats_down.lock();
        d.0.is_none().then_some(d.1)
    }

    /// `h{i}` for the node a labelled request went to, or `h?`.
    pub fn node_of(&self, label: &str) -> String {
        self.routes
            .lock()
            .get(label)
            .map_or_else(|| "h?".to_string(), |i| format!("h{i}"))
    }

    /// Where a labelled request went and how far that node has read the
    /// event stream (its `herald_history_head` metric), for reports:
    /// `h2 (head 180 just after)`.
    pub async fn head_of(&self, label: &str) -> String {
        let node = self.routes.lock().get(label).copied();
        let Some(i) = node else {
            return "h?".into();
        };
        let metrics = self
            .http
            .get(format!("{}/metrics", self.direct[i]))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let head = match metrics {
            Ok(r) => r
                .text()
                .await
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("herald_history_head ").map(|v| v.trim().to_string())),
            Err(_) => None,
        };
        format!("h{i} (head {} just after)", head.as_deref().unwrap_or("?"))
    }

    /// Which nodes list open streams of `account` in `tenant` (admin API,
    /// each node directly), for reports.
    pub async fn streams_of(&self, tenant: &str, account: &str) -> String {
        let mut out = Vec::new();
        for (i, base) in self.direct.iter().enumerate() {
            let listed = self
                .http
                .get(format!("{base}/v1/connections"))
                .bearer_auth(&self.keys.admin)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            let Ok(resp) = listed else {
                out.push(format!("h{i}: no answer"));
                continue;
            };
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let n = v["connections"].as_array().map_or(0, |c| {
                c.iter()
                    .filter(|c| c["account"] == json!(account) && c["tenant"] == json!(tenant))
                    .count()
            });
            out.push(format!("h{i}: {n}"));
        }
        format!("open streams of {account}@{tenant}: {}", out.join(", "))
    }

    /// The nodes that are up.
    pub fn up_nodes(&self) -> Vec<usize> {
        self.nodes()
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s == NodeState::Up)
            .map(|(i, _)| i)
            .collect()
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A user JWT (HS256 with the shared secret) for `p`, issued 30 s ago (so
/// a revocation is unambiguously later) and valid for an hour.
pub fn user_jwt(p: &super::model::Principal) -> String {
    let now = unix_now();
    let claims = json!({
        "sub": p.sub,
        "tenant": p.tenant,
        "sid": p.sid,
        "roles": p.roles,
        "herald": {"subscribe": p.may_subscribe, "publish": ["scratch.>"]},
        "iat": now - 30,
        "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign a JWT")
}

/// Why a request did not succeed.
#[derive(Debug)]
pub enum Refusal {
    /// An HTTP status other than 2xx, with the error code and message.
    Status(u16, String, String),
    /// No answer (refused, cut, timed out).
    Transport(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Status(s, code, message) => write!(f, "{s} {code} ({message})"),
            Refusal::Transport(e) => write!(f, "no answer ({e})"),
        }
    }
}

/// `POST base/path` with a bearer credential and a JSON body; the JSON
/// answer of a 2xx.
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    bearer: &str,
    body: &Value,
) -> Result<Value, Refusal> {
    let sent = http
        .post(format!("{base}{path}"))
        .bearer_auth(bearer)
        .json(body)
        .timeout(ANSWER)
        .send()
        .await;
    let resp = sent.map_err(|e| Refusal::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return resp.json().await.map_err(|e| Refusal::Transport(e.to_string()));
    }
    let (code, message) = super::sse::error_code(resp, ANSWER).await;
    Err(Refusal::Status(status, code, message))
}

/// Mints an SSE token at `base` with a user JWT (for the JWT's own
/// principal, the same selectors).
pub async fn mint_token(
    http: &reqwest::Client,
    base: &str,
    jwt: &str,
    subscribe: &[String],
) -> Result<String, Refusal> {
    let v = post(http, base, "/v1/tokens", jwt, &json!({"subscribe": subscribe})).await?;
    v["token"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| Refusal::Transport(format!("no token in {v}")))
}

/// `GET base/readyz` answers 200.
pub async fn ready(http: &reqwest::Client, base: &str) -> bool {
    matches!(
        http.get(format!("{base}/readyz")).timeout(Duration::from_secs(3)).send().await,
        Ok(r) if r.status() == 200
    )
}
