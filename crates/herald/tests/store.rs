//! The durable embedded store as an operator meets it: real `herald`
//! processes stopped (SIGTERM) or killed (SIGKILL) and started again on the
//! same data dir, then checked over real HTTP and SSE.
mod support;

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// Generous deadline for anything that must arrive.
const ARRIVE: Duration = Duration::from_secs(60);

/// A hub's identity across restarts: a config file with a fixed data dir,
/// both inside a temp dir kept for the whole test.
struct Node {
    _root: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
    admin_key: String,
    admin_hash: String,
}

impl Node {
    fn new(extra: &str) -> Node {
        let root = tempfile::tempdir().expect("tempdir for the node");
        let (admin_key, admin_hash) = herald::auth::api_key::generate();
        let node = Node {
            config: root.path().join("herald.toml"),
            data: root.path().join("data"),
            _root: root,
            admin_key,
            admin_hash,
        };
        node.set_extra(extra);
        node
    }

    /// (Re)writes the config file: same data dir and keys, `extra` added.
    fn set_extra(&self, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                r#"
listen = "127.0.0.1:0"
data_dir = "{data}"
jwt_secret = "{SECRET}"
{extra}

[[api_keys]]
id = "admin"
hash = "{hash}"
scopes = ["publish", "tokens", "revoke", "admin"]
"#,
                data = self.data.display(),
                hash = self.admin_hash,
            ),
        )
        .expect("write the node's config");
    }

    fn store_file(&self) -> PathBuf {
        self.data.join("herald.redb")
    }

    fn config_arg(&self) -> &str {
        self.config.to_str().expect("utf8 config path")
    }

    fn data_arg(&self) -> &str {
        self.data.to_str().expect("utf8 data path")
    }

    /// Starts `herald serve` on this node's config (and so its data dir).
    fn start(&self) -> Server {
        let cwd = tempfile::tempdir().expect("tempdir for the hub's working dir");
        start_args(&["serve", "--config", self.config_arg()], cwd)
    }
}

/// SIGTERM, then waits for a clean exit.
fn stop_gracefully(mut hub: Server) {
    hub.sigterm();
    let status = hub
        .wait_exit(Duration::from_secs(30))
        .expect("the hub exits after SIGTERM");
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
}

/// SIGKILL (the support `Server` kills and reaps on drop).
fn kill_9(hub: Server) {
    drop(hub);
}

/// What a bounded run of the `herald` binary did.
struct Ran {
    /// `None` when it was still running at the deadline (it is killed then).
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    /// It printed `herald listening on ...`: it started serving.
    listening: Option<String>,
    child: Option<std::process::Child>,
}

impl Drop for Ran {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `herald args...`, capturing output, until it exits, starts serving
/// (then it is left running in `Ran::child`) or `within` passes.
fn run_bounded(args: &[&str], within: Duration) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    for (pipe, buf) in [
        (
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            out.clone(),
        ),
        (
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
            err.clone(),
        ),
    ] {
        readers.push(std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock()
                    .expect("output buffer")
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        }));
    }
    let text = |buf: &Mutex<String>| buf.lock().expect("output buffer").clone();
    let listening = |stdout: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("herald listening on ").map(|b| b.trim().to_string()))
    };
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            for r in readers {
                let _ = r.join();
            }
            let stdout = text(&out);
            return Ran {
                status: Some(status),
                listening: listening(&stdout),
                stdout,
                stderr: text(&err),
                child: None,
            };
        }
        let stdout = text(&out);
        if let Some(base) = listening(&stdout) {
            return Ran {
                status: None,
                listening: Some(base),
                stdout,
                stderr: text(&err),
                child: Some(child),
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ran {
                status: None,
                listening: None,
                stdout,
                stderr: text(&err),
                child: None,
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `herald store SUB --data-dir DIR`, bounded.
fn store_cli(sub: &str, data: &str) -> Ran {
    let ran = run_bounded(&["store", sub, "--data-dir", data], ARRIVE);
    assert!(ran.status.is_some(), "`herald store {sub}` finishes");
    ran
}

/// Reads events until one whose data is `fence` (inclusive).
async fn read_until(s: &mut SseStream, fence: &str, within: Duration) -> Vec<Event> {
    let deadline = Instant::now() + within;
    let mut out: Vec<Event> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(e) = s.next_event(left).await else {
            panic!(
                "`{fence}` did not arrive within {within:?}: {} events before it, the last {:?}",
                out.len(),
                out.last()
            );
        };
        let done = e.data == fence;
        out.push(e);
        if done {
            return out;
        }
    }
}

/// Publishes one public event; panics unless `200`. Returns its seq.
async fn publish_ok(hub: &Server, key: &str, body: Value) -> u64 {
    let (status, v) = hub.publish(key, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "publish {body}: {v}");
    v["seq"].as_u64().expect("seq in the publish answer")
}

/// Keeps the store's writer busy: publishes 1,000-event batches of 1 KiB
/// events flat out until the hub goes away. Resolves once the first batch
/// is answered, so that the writer is committing one when it returns; a job
/// queued now waits behind that commit, which widens the window between an
/// answer and the commit of anything the answer did not wait for.
async fn busy_writer(hub: &Server, key: &str) -> Vec<tokio::task::JoinHandle<()>> {
    let first = Arc::new(tokio::sync::Notify::new());
    let tasks = (0..BUSY_PUBLISHERS)
        .map(|_| {
            let (base, key) = (hub.base.clone(), key.to_string());
            let notify = first.clone();
            tokio::spawn(async move {
                let c = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                let payload = "b".repeat(1024);
                let events: Vec<Value> = (0..1000)
                    .map(|_| json!({"topic": "busy", "data": payload, "audience": "public"}))
                    .collect();
                let body = json!({"events": events});
                loop {
                    let sent = c
                        .post(format!("{base}/v1/publish"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == StatusCode::OK => notify.notify_one(),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::timeout(ARRIVE, first.notified())
        .await
        .expect("a first busy batch is answered");
    tasks
}

const BUSY_PUBLISHERS: usize = 3;

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        t.await.expect("busy writer task");
    }
}

/// `GET /v1/audit?after=0&limit=1000` as its records.
async fn audit(hub: &Server, admin: &str) -> Vec<Value> {
    let r = hub.get("/v1/audit?after=0&limit=1000", Some(admin)).await;
    assert_eq!(r.status(), StatusCode::OK, "audit page");
    let v: Value = r.json().await.expect("audit page JSON");
    let records = v["records"].as_array().expect("records").clone();
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().expect("audit id")).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "audit ids strictly increase: {ids:?}"
    );
    records
}

/// `/metrics` value of an unlabelled gauge, if exported.
async fn metric(hub: &Server, name: &str) -> Option<f64> {
    let text = hub.get("/metrics", None).await.text().await.expect("metrics body");
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------
// 1. Crash safety under load, repeated.

/// One answered publish.
struct Answered {
    id: String,
    seq: u64,
    data: String,
}

/// Publishes flat out (one request at a time) until the hub goes away.
/// Returns what was answered `200`, and any other status seen.
async fn publisher(
    base: String,
    key: String,
    round: usize,
    task: usize,
    first: Arc<tokio::sync::Notify>,
) -> (Vec<Answered>, Vec<String>) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut answered = Vec::new();
    let mut odd = Vec::new();
    for n in 0.. {
        let data = format!("r{round}-t{task}-n{n}");
        let body = json!({"topic": format!("crash.t{task}"), "data": data, "audience": "public"});
        let Ok(r) = c
            .post(format!("{base}/v1/publish"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
        else {
            break; // killed
        };
        let status = r.status();
        let Ok(text) = r.text().await else { break };
        if status != StatusCode::OK {
            odd.push(format!("{status}: {text}"));
            break;
        }
        let v: Value = serde_json::from_str(&text).expect("publish answer is JSON");
        answered.push(Answered {
            id: v["id"].as_str().expect("id").to_string(),
            seq: v["seq"].as_u64().expect("seq"),
            data,
        });
        first.notify_one();
    }
    (answered, odd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answered_publishes_survive_repeated_sigkill_in_order_with_their_seq() {
    const ROUNDS: usize = 5;
    const PUBLISHERS: usize = 6;
    let node = Node::new("");
    let reader = user("reader", json!({}));
    // Every publish answered 200 over all rounds: seq -> data.
    let mut answered: BTreeMap<u64, String> = BTreeMap::new();
    let mut hub = node.start();
    for round in 0..ROUNDS {
        // A live subscriber during the crash: what it saw before the kill
        // must be in the history after the restart.
        let mut live = hub
            .stream_with("/v1/events?topic=crash.>", Some(&reader), None)
            .await
            .expect("live stream opens");
        let live_task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(e) = live.next_event(ARRIVE).await {
                if e.event == "message" {
                    seen.push(e);
                }
            }
            seen
        });

        let first = Arc::new(tokio::sync::Notify::new());
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|t| {
                tokio::spawn(publisher(
                    hub.base.clone(),
                    node.admin_key.clone(),
                    round,
                    t,
                    first.clone(),
                ))
            })
            .collect();
        tokio::time::timeout(ARRIVE, first.notified())
            .await
            .expect("a first publish is answered");
        let delay = rand::rng().random_range(50..=500u64);
        eprintln!("round {round}: SIGKILL after {delay} ms of publishing");
        tokio::time::sleep(Duration::from_millis(delay)).await;
        kill_9(hub);

        let mut this_round = Vec::new();
        for t in tasks {
            let (got, odd) = t.await.expect("publisher task");
            assert!(odd.is_empty(), "round {round}: unexpected answers {odd:?}");
            this_round.extend(got);
        }
        let seen = live_task.await.expect("live subscriber task");
        let before = answered.keys().next_back().copied().unwrap_or(0);
        for a in &this_round {
            assert_eq!(a.id, a.seq.to_string(), "hub-assigned id is the seq");
            assert!(
                a.seq > before,
                "round {round}: seq {} answered after the crash is not above {before}",
                a.seq
            );
            if let Some(prev) = answered.insert(a.seq, a.data.clone()) {
                panic!("seq {} answered for both `{prev}` and `{}`", a.seq, a.data);
            }
        }

        hub = node.start();
        let fence = format!("fence-{round}");
        let max_answered = answered.keys().next_back().copied().unwrap_or(0);
        let fence_seq = publish_ok(
            &hub,
            &node.admin_key,
            json!({"topic": "crash.fence", "data": fence, "audience": "public"}),
        )
        .await;
        assert!(
            fence_seq > max_answered,
            "round {round}: seq continues after the crash: fence {fence_seq} <= answered {max_answered}"
        );
        answered.insert(fence_seq, fence.clone());

        // The whole history, from the start.
        let mut all = hub
            .stream_with("/v1/events?topic=crash.>", Some(&reader), Some("0"))
            .await
            .expect("history stream opens");
        let full = read_until(&mut all, &fence, ARRIVE).await;
        drop(all);
        eprintln!(
            "round {round}: {} answered this round, {} answered in all, {} events in the history",
            this_round.len(),
            answered.len(),
            full.len()
        );
        assert!(
            full.iter().all(|e| e.event == "message"),
            "round {round}: history replays without a reset: {:?}",
            full.iter().find(|e| e.event != "message")
        );
        let seqs: Vec<u64> = full
            .iter()
            .map(|e| e.id.as_deref().and_then(|i| i.parse().ok()).expect("numeric id"))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "round {round}: history is in strictly increasing seq order"
        );
        let mut datas = HashSet::new();
        for e in &full {
            assert!(
                datas.insert(e.data.as_str()),
                "round {round}: `{}` appears twice",
                e.data
            );
        }
        let by_seq: HashMap<u64, &str> = seqs.iter().copied().zip(full.iter().map(|e| e.data.as_str())).collect();
        let missing: Vec<_> = answered
            .iter()
            .filter(|(s, d)| by_seq.get(s) != Some(&d.as_str()))
            .take(10)
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: answered publishes missing or changed after SIGKILL \
             ({} answered, {} in history): {missing:?}",
            answered.len(),
            full.len()
        );
        for e in &seen {
            let seq: u64 = e.id.as_deref().and_then(|i| i.parse().ok()).expect("id");
            assert_eq!(
                by_seq.get(&seq),
                Some(&e.data.as_str()),
                "round {round}: an event delivered live before the crash is in the history"
            );
        }

        // Resume from an event seen before the crash: exactly the rest.
        let resume_id = seen
            .last()
            .and_then(|e| e.id.clone())
            .or_else(|| this_round.get(this_round.len() / 2).map(|a| a.id.clone()))
            .expect("an event from before the crash");
        let at = full
            .iter()
            .position(|e| e.id.as_deref() == Some(resume_id.as_str()))
            .expect("the resume point is in the history");
        let mut resumed = hub
            .stream_with("/v1/events?topic=crash.>", Some(&reader), Some(resume_id.as_str()))
            .await
            .expect("resumed stream opens");
        let rest = read_until(&mut resumed, &fence, ARRIVE).await;
        assert_eq!(
            rest.len(),
            full.len() - at - 1,
            "round {round}: resuming after {resume_id} gives every later event once"
        );
        assert!(
            rest == full[at + 1..],
            "round {round}: resuming after {resume_id}: no gap, no duplicate, same order"
        );
    }
    drop(hub);
    assert!(
        answered.len() > 2 * ROUNDS,
        "the publishers got answers ({})",
        answered.len()
    );
}

// ---------------------------------------------------------------------------
// 2. Revocations and the audit log.

/// Opens a stream for `alice` (a credential issued 10 s ago) and revokes
/// her account. Returns her (now closed) stream and the audit records that
/// existed before the revocation.
async fn revoke_alice(hub: &Server, node: &Node, alice: &str) -> (SseStream, Vec<Value>) {
    let open = hub
        .stream_with("/v1/events?topic=news", Some(alice), None)
        .await
        .expect("alice subscribes before the revocation");
    let before = audit(hub, &node.admin_key).await;
    assert!(!before.is_empty(), "opening a stream is audited");
    let (status, v) = hub
        .post(
            "/v1/revocations",
            Some(&node.admin_key),
            json!({"type": "logout", "account": "alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "revocation: {v}");
    assert_eq!(v["applied"], true);
    assert_eq!(v["closed"], 1, "alice's stream is closed");
    (open, before)
}

fn id_of(r: &Value) -> u64 {
    r["id"].as_u64().expect("audit record id")
}

/// After a restart: `alice` is refused as revoked, a credential issued now
/// is accepted, and the refusal is audited under a new, larger id.
/// Returns the audit records and the id of that refusal.
async fn check_revoked_after_restart(hub: &Server, node: &Node, alice: &str) -> (Vec<Value>, u64) {
    let restarted_at_ms = now() * 1000;
    let refused = hub
        .stream_with("/v1/events?topic=news", Some(alice), None)
        .await
        .err()
        .expect("the revoked credential is refused after the restart");
    assert_eq!(
        error_code(refused, StatusCode::UNAUTHORIZED).await,
        "credential_revoked"
    );
    // Not a blanket lockout: a credential issued now is accepted.
    let fresh = user("alice", json!({}));
    assert!(
        hub.stream_with("/v1/events?topic=news", Some(&fresh), None)
            .await
            .is_ok(),
        "a credential issued after the revocation works"
    );
    let post = audit(hub, &node.admin_key).await;
    let refusal = post
        .iter()
        .filter(|r| r["kind"] == "auth_failed")
        .filter(|r| r["time_ms"].as_u64().is_some_and(|t| t >= restarted_at_ms))
        .map(id_of)
        .max()
        .expect("the refusal after the restart is audited");
    (post, refusal)
}

/// Every record of `pre` is in `post` under the same id, unchanged.
fn same_records(pre: &[Value], post: &[Value]) {
    let post_by_id: HashMap<u64, &Value> = post.iter().map(|r| (id_of(r), r)).collect();
    for r in pre {
        let id = id_of(r);
        let after = post_by_id
            .get(&id)
            .unwrap_or_else(|| panic!("audit record {id} survives the restart: {r}"));
        assert_eq!(
            (&after["kind"], &after["time_ms"]),
            (&r["kind"], &r["time_ms"]),
            "audit id {id} still names the same record"
        );
    }
}

fn find_revocation(records: &[Value]) -> Option<&Value> {
    records
        .iter()
        .find(|r| r["kind"] == "revocation_applied" && r["detail"]["revocation"]["account"] == "alice")
}

#[tokio::test]
async fn revocations_and_audit_survive_a_graceful_restart() {
    let node = Node::new("");
    let alice = user("alice", json!({"iat": now() - 10}));
    let hub = node.start();
    let (mut open, _) = revoke_alice(&hub, &node, &alice).await;
    let refused = hub
        .stream_with("/v1/events?topic=news", Some(&alice), None)
        .await
        .err()
        .expect("refused at once");
    assert_eq!(
        error_code(refused, StatusCode::UNAUTHORIZED).await,
        "credential_revoked"
    );
    let (ended, _) = open.ended_within(ARRIVE).await;
    assert!(ended, "alice's stream ended");
    let pre = audit(&hub, &node.admin_key).await;
    let revoked = id_of(find_revocation(&pre).expect("revocation_applied is audited"));
    let pre_max = pre.iter().map(id_of).max().expect("records");
    stop_gracefully(hub);

    let hub = node.start();
    let (post, refusal) = check_revoked_after_restart(&hub, &node, &alice).await;
    assert_eq!(
        find_revocation(&post).map(id_of),
        Some(revoked),
        "the revocation_applied record survives the restart under its id"
    );
    same_records(&pre, &post);
    assert!(
        refusal > pre_max,
        "audit ids continue after the restart: new {refusal}, before {pre_max}"
    );
}

#[tokio::test]
async fn revocation_deny_rule_survives_sigkill_right_after_the_answer() {
    let node = Node::new("");
    let alice = user("alice", json!({"iat": now() - 10}));
    let hub = node.start();
    let (mut open, before) = revoke_alice(&hub, &node, &alice).await;
    kill_9(hub);
    let (ended, _) = open.ended_within(ARRIVE).await;
    assert!(ended, "alice's stream ended");

    let hub = node.start();
    let (post, refusal) = check_revoked_after_restart(&hub, &node, &alice).await;
    // Records committed before the revocation (its deny rule shares or
    // follows their commit) keep their ids; new ones come after them.
    same_records(&before, &post);
    let before_max = before.iter().map(id_of).max().expect("records");
    assert!(
        refusal > before_max,
        "audit ids continue after the SIGKILL: new {refusal}, before {before_max}"
    );
}

#[tokio::test]
async fn revocation_audit_record_survives_sigkill_right_after_the_answer() {
    let node = Node::new("");
    let alice = user("alice", json!({"iat": now() - 10}));
    let hub = node.start();
    let mut live_audit = hub
        .stream_with("/v1/audit/events", Some(&node.admin_key), None)
        .await
        .expect("admin audit stream");
    let busy = busy_writer(&hub, &node.admin_key).await;
    let (_open, _) = revoke_alice(&hub, &node, &alice).await;
    // The record as the hub issued it, to an audit subscriber, before the kill.
    let deadline = Instant::now() + ARRIVE;
    let issued: Value = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = live_audit
            .next_event(left)
            .await
            .expect("revocation_applied on the audit stream");
        let r: Value = serde_json::from_str(&e.data).expect("audit record JSON");
        if find_revocation(std::slice::from_ref(&r)).is_some() {
            break r;
        }
    };
    kill_9(hub);
    join_all(busy).await;

    let hub = node.start();
    let (post, _) = check_revoked_after_restart(&hub, &node, &alice).await;
    let id = id_of(&issued);
    let now_named = post.iter().find(|r| id_of(r) == id);
    assert!(
        find_revocation(&post).is_some(),
        "the revocation_applied record (id {id}) survives a SIGKILL right after the answer; \
         after the restart id {id} names {now_named:?}; records: {:?}",
        post.iter().map(|r| (id_of(r), r["kind"].clone())).collect::<Vec<_>>()
    );
    assert_eq!(
        now_named.map(|r| &r["kind"]),
        Some(&issued["kind"]),
        "audit id {id} is never reused"
    );
}

// ---------------------------------------------------------------------------
// 3. Retained events and SSE tokens.

async fn mint(hub: &Server, admin: &str) -> String {
    let (status, v) = hub
        .post("/v1/tokens", Some(admin), json!({"sub": "bob", "subscribe": ["*"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "mint: {v}");
    v["token"].as_str().expect("token").to_string()
}

fn board(data: &str, retain: bool) -> Value {
    json!({"topic": "status.board", "data": data, "audience": "public", "retain": retain})
}

fn with_token(t: &str) -> String {
    format!("/v1/events?topic=status.board&token={t}")
}

/// Publishes two retained events and one plain one; returns the newest
/// retained event's seq.
async fn publish_board(hub: &Server, admin: &str) -> u64 {
    publish_ok(hub, admin, board("retained-v1", true)).await;
    let v2 = publish_ok(hub, admin, board("retained-v2", true)).await;
    publish_ok(hub, admin, board("not-retained", false)).await;
    v2
}

/// Opens a stream with an SSE token; the retained snapshot comes first.
async fn use_token(hub: &Server, token: &str, what: &str) {
    match hub.stream_with(&with_token(token), None, None).await {
        Ok(mut s) => {
            let e = s.next_event(ARRIVE).await.expect("retained snapshot");
            assert_eq!(e.data, "retained-v2", "{what}");
        }
        Err(r) => panic!("{what}: refused with {}", error_code(r, StatusCode::UNAUTHORIZED).await),
    }
}

async fn token_refused(hub: &Server, token: &str, what: &str) {
    let r = hub
        .stream_with(&with_token(token), None, None)
        .await
        .err()
        .unwrap_or_else(|| panic!("{what}: the stream opened"));
    assert_eq!(error_code(r, StatusCode::UNAUTHORIZED).await, "token_used", "{what}");
}

/// After a restart the newest retained event, and only it, comes first.
async fn check_retained(hub: &Server, v2: u64) {
    let reader = user("reader", json!({}));
    let mut s = hub
        .stream_with("/v1/events?topic=status.board", Some(&reader), None)
        .await
        .expect("a new subscriber after the restart");
    let first = s.next_event(ARRIVE).await.expect("the retained event arrives first");
    assert_eq!(
        (first.data.as_str(), first.id),
        ("retained-v2", Some(v2.to_string())),
        "the newest retained event comes first after the restart"
    );
    let more = s.drain_for(Duration::from_millis(300)).await;
    assert!(more.is_empty(), "only the retained snapshot is replayed: {more:?}");
}

#[tokio::test]
async fn retained_events_and_sse_tokens_survive_a_graceful_restart() {
    let node = Node::new("");
    let admin = node.admin_key.clone();
    let hub = node.start();
    let v2 = publish_board(&hub, &admin).await;
    let used = mint(&hub, &admin).await;
    use_token(&hub, &used, "a fresh SSE token").await;
    let unused = mint(&hub, &admin).await;
    stop_gracefully(hub);

    let hub = node.start();
    check_retained(&hub, v2).await;
    use_token(&hub, &unused, "a token minted before the restart works after it").await;
    token_refused(&hub, &unused, "and only once").await;
    token_refused(&hub, &used, "a token used before the restart stays used").await;
}

#[tokio::test]
async fn retained_events_and_committed_sse_token_state_survive_sigkill() {
    let node = Node::new("");
    let admin = node.admin_key.clone();
    let hub = node.start();
    let v2 = publish_board(&hub, &admin).await;
    let unused = mint(&hub, &admin).await;
    let used = mint(&hub, &admin).await;
    use_token(&hub, &used, "a fresh SSE token").await;
    // Publishes are answered after their commit, and the writer commits
    // jobs in order: the mints and the spend above are durable once this
    // is answered.
    publish_ok(
        &hub,
        &admin,
        json!({"topic": "barrier", "data": "b", "audience": "public"}),
    )
    .await;
    kill_9(hub);

    let hub = node.start();
    check_retained(&hub, v2).await;
    use_token(&hub, &unused, "an unused token works after a SIGKILL").await;
    token_refused(&hub, &unused, "and only once").await;
    token_refused(&hub, &used, "a spent token stays spent after a SIGKILL").await;
}

#[tokio::test]
async fn an_sse_token_spent_right_before_sigkill_stays_spent() {
    let node = Node::new("");
    let admin = node.admin_key.clone();
    let hub = node.start();
    let token = mint(&hub, &admin).await;
    publish_board(&hub, &admin).await; // the mint is committed
    let busy = busy_writer(&hub, &admin).await;
    let s = hub
        .stream_with(&with_token(&token), None, None)
        .await
        .unwrap_or_else(|_| panic!("a fresh SSE token opens a stream"));
    kill_9(hub);
    drop(s);
    join_all(busy).await;

    let hub = node.start();
    token_refused(
        &hub,
        &token,
        "a single-use token whose stream opened before a SIGKILL stays spent after it",
    )
    .await;
}

#[tokio::test]
async fn an_sse_token_minted_right_before_sigkill_works_after_it() {
    let node = Node::new("");
    let admin = node.admin_key.clone();
    let hub = node.start();
    publish_board(&hub, &admin).await;
    let busy = busy_writer(&hub, &admin).await;
    let token = mint(&hub, &admin).await;
    kill_9(hub);
    join_all(busy).await;

    let hub = node.start();
    use_token(&hub, &token, "an SSE token answered before a SIGKILL works after it").await;
}

// ---------------------------------------------------------------------------
// 4. Retention keeps the disk bounded.

#[tokio::test]
async fn retention_keeps_the_store_file_bounded_and_resume_past_it_resets() {
    let node = Node::new("history_size = 1000");
    let admin = node.admin_key.clone();
    let hub = node.start();
    let payload = "x".repeat(1024);
    let mut sizes = Vec::new();
    let mut head = 0;
    for batch in 0..200 {
        let events: Vec<Value> = (0..100)
            .map(|_| json!({"topic": "bulk", "data": payload, "audience": "public"}))
            .collect();
        let (status, v) = hub.publish(&admin, json!({"events": events})).await;
        assert_eq!(status, StatusCode::OK, "batch {batch}: {v}");
        head = v["events"][99]["seq"].as_u64().expect("seq");
        if (batch + 1) % 50 == 0 {
            let size = std::fs::metadata(node.store_file()).expect("store file").len();
            sizes.push(size);
        }
    }
    assert_eq!(head, 20_000);
    let (at_5k, at_20k) = (sizes[0], sizes[3]);
    eprintln!("store file size every 5,000 events: {sizes:?}");
    // history_size = 1000 keeps ~1 MiB of events. By 5,000 events the
    // store has already evicted 4,000 and reached its steady state, so the
    // pages retention frees are being reused. A file that kept growing
    // with the number of events published would be ~4x larger at 20,000;
    // 2x leaves room for redb's allocator slack without hiding that.
    assert!(
        at_20k <= 2 * at_5k,
        "store file stops growing under retention: sizes every 5,000 events {sizes:?}"
    );

    let store_bytes = metric(&hub, "herald_store_bytes")
        .await
        .expect("/metrics exports herald_store_bytes");
    assert!(
        store_bytes > 0.0 && store_bytes <= 2.0 * at_20k as f64,
        "herald_store_bytes {store_bytes} is the file size ({at_20k})"
    );
    assert_eq!(
        metric(&hub, "herald_store_events").await,
        Some(1000.0),
        "herald_store_events is history_size"
    );
    // Every publish request (200 batches of 100) went through a commit.
    let commits = metric(&hub, "herald_store_commit_seconds_count").await.unwrap_or(0.0);
    let jobs = metric(&hub, "herald_store_commit_jobs_sum").await.unwrap_or(0.0);
    assert!(
        commits > 0.0 && commits <= jobs && jobs >= 200.0,
        "herald_store_commit_* count the commits ({commits}) and their jobs ({jobs})"
    );

    let reader = user("reader", json!({}));
    let mut s = hub
        .stream_with("/v1/events?topic=bulk", Some(&reader), Some("1"))
        .await
        .expect("resume from an evicted event");
    let e = s.next_event(ARRIVE).await.expect("a first event");
    assert_eq!(e.event, "reset", "resuming past retention resets: {e:?}");
    drop(s);
    let after = (head - 5).to_string();
    let mut s = hub
        .stream_with("/v1/events?topic=bulk", Some(&reader), Some(after.as_str()))
        .await
        .expect("resume from a kept event");
    let got = s.take(5, ARRIVE).await;
    let ids: Vec<String> = got.iter().filter_map(|e| e.id.clone()).collect();
    let want: Vec<String> = (head - 4..=head).map(|s| s.to_string()).collect();
    assert_eq!(ids, want, "a kept resume point replays without a reset");
}

// ---------------------------------------------------------------------------
// 5. Damaged store files.

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's dir");
    for entry in std::fs::read_dir(from).expect("read the data dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a data file");
    }
}

/// The marker every payload of the damage test starts with.
fn marked(n: usize) -> String {
    format!("MARK-{n:05}-{}", "y".repeat(1000))
}

/// Starts `herald serve` on a damaged store and checks the refusal.
async fn refuses_damaged_store(node: &Node, how: &str, published: usize) {
    let ran = run_bounded(&["serve", "--config", node.config_arg()], ARRIVE);
    if let Some(base) = &ran.listening {
        // It serves: find out what a client would get, for the report.
        let reader = user("reader", json!({}));
        let c = client();
        let mut lost = String::from("history unreadable");
        if let Ok(r) = c
            .get(format!("{base}/v1/events?topic=dmg"))
            .bearer_auth(&reader)
            .header("last-event-id", "0")
            .send()
            .await
        {
            let text = tokio::time::timeout(Duration::from_secs(3), async {
                let mut r = r;
                let mut text = String::new();
                while let Ok(Some(chunk)) = r.chunk().await {
                    text.push_str(&String::from_utf8_lossy(&chunk));
                }
                text
            })
            .await
            .unwrap_or_default();
            let got = text.matches("data: MARK-").count();
            lost = format!("{got} of {published} events replayed");
        }
        panic!(
            "{how}: the hub started serving on a damaged store ({lost}); stderr: {}",
            ran.stderr
        );
    }
    let status = ran
        .status
        .unwrap_or_else(|| panic!("{how}: herald serve neither exited nor served"));
    assert!(
        !status.success(),
        "{how}: exits non-zero ({status:?}); stderr: {}",
        ran.stderr
    );
    let lines: Vec<&str> = ran.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{how}: one stderr line: {:?}", ran.stderr);
    let path = node.store_file();
    assert!(
        lines[0].contains(path.to_str().expect("utf8")),
        "{how}: names the file: {}",
        lines[0]
    );
    assert!(
        lines[0].contains("herald store verify") || lines[0].contains("move"),
        "{how}: says what to do: {}",
        lines[0]
    );
    assert!(!ran.stdout.contains("herald listening on"), "{how}: never serves");
    let verify = store_cli("verify", node.data_arg());
    assert!(
        !verify.status.expect("status").success(),
        "{how}: `herald store verify` reports the damage: {}",
        verify.stdout
    );
}

/// A stopped store with `published` marked events, and a verify of it.
async fn healthy_store(published: usize) -> Node {
    let node = Node::new("");
    let hub = node.start();
    for chunk in (0..published).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"topic": "dmg", "data": marked(*n), "audience": "public"}))
            .collect();
        let (status, v) = hub.publish(&node.admin_key, json!({"events": events})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    stop_gracefully(hub);
    let verify = store_cli("verify", node.data_arg());
    assert!(
        verify.status.expect("status").success(),
        "verify a healthy store: {}{}",
        verify.stdout,
        verify.stderr
    );
    assert!(
        verify.stdout.contains(&format!("events: {published}")),
        "verify reports the event count: {}",
        verify.stdout
    );
    node
}

/// A copy of `from`'s data dir under a new node (same secret).
fn clone_node(from: &Node) -> Node {
    let node = Node::new("");
    copy_dir(&from.data, &node.data);
    node
}

#[tokio::test]
async fn a_truncated_store_file_is_refused_with_one_clear_line() {
    const N: usize = 400;
    let healthy = healthy_store(N).await;
    let node = clone_node(&healthy);
    let file = node.store_file();
    let len = std::fs::metadata(&file).expect("store file").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open the store file")
        .set_len(len / 2)
        .expect("truncate");
    refuses_damaged_store(&node, "truncated to half", N).await;

    // The healthy original still starts and serves everything.
    let hub = healthy.start();
    let reader = user("reader", json!({}));
    let mut s = hub
        .stream_with("/v1/events?topic=dmg", Some(&reader), Some("0"))
        .await
        .expect("history");
    let got = s.take(N, ARRIVE).await;
    assert_eq!(got.len(), N);
    assert_eq!(got[N - 1].data, marked(N - 1));
}

#[tokio::test]
async fn a_store_file_with_garbage_in_the_middle_is_refused_with_one_clear_line() {
    const N: usize = 400;
    let healthy = healthy_store(N).await;
    let node = clone_node(&healthy);
    let file = node.store_file();
    let mut bytes = std::fs::read(&file).expect("read the store file");
    // Overwrite the 4 KiB page nearest the middle that holds event data, so
    // the damage hits records rather than never-used space.
    let mid = bytes.len() / 2;
    let at = bytes
        .windows(5)
        .enumerate()
        .filter(|(_, w)| *w == b"MARK-")
        .map(|(i, _)| i)
        .min_by_key(|i| i.abs_diff(mid))
        .expect("event data in the file");
    let page = at / 4096 * 4096;
    let end = (page + 4096).min(bytes.len());
    rand::rng().fill(&mut bytes[page..end]);
    std::fs::write(&file, &bytes).expect("write the damaged file");
    refuses_damaged_store(&node, "garbage in the middle", N).await;
}

// ---------------------------------------------------------------------------
// 6. Other fsync policies, and compaction.

#[tokio::test]
async fn fsync_interval_and_never_serve_and_keep_events_over_a_graceful_restart() {
    for mode in ["fsync = \"interval\"\nfsync_interval_ms = 20", "fsync = \"never\""] {
        let node = Node::new(mode);
        let hub = node.start();
        let reader = user("reader", json!({}));
        let mut s = hub
            .stream_with("/v1/events?topic=modes", Some(&reader), None)
            .await
            .expect("stream");
        let mut seqs = Vec::new();
        for n in 0..20 {
            let data = format!("m{n}");
            seqs.push(
                publish_ok(
                    &hub,
                    &node.admin_key,
                    json!({"topic": "modes", "data": data, "audience": "public"}),
                )
                .await,
            );
        }
        let got = s.take(20, ARRIVE).await;
        let datas: Vec<&str> = got.iter().map(|e| e.data.as_str()).collect();
        let want: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
        assert_eq!(datas, want, "{mode}: publishes are delivered");
        drop(s);
        stop_gracefully(hub);

        let hub = node.start();
        let mut s = hub
            .stream_with("/v1/events?topic=modes", Some(&reader), Some("0"))
            .await
            .expect("history");
        let got = s.take(20, ARRIVE).await;
        let ids: Vec<String> = got.iter().filter_map(|e| e.id.clone()).collect();
        let want: Vec<String> = seqs.iter().map(u64::to_string).collect();
        assert_eq!(ids, want, "{mode}: a graceful stop keeps every event");
        drop(s);
        stop_gracefully(hub);
    }
}

#[tokio::test]
async fn events_survive_the_sequence_gap_left_by_a_crash_without_fsync() {
    // After a crash under `fsync = "interval"` the hub goes on after its
    // durable reservation, 100,000 numbers ahead: a gap as large as the
    // whole history. Retention must count events, not the span of their
    // numbers, or its first commit after the restart deletes them all.
    let node = Node::new("fsync = \"interval\"\nfsync_interval_ms = 20");
    let hub = node.start();
    let mut seqs = Vec::new();
    for n in 0..5 {
        let data = format!("g{n}");
        seqs.push(
            publish_ok(
                &hub,
                &node.admin_key,
                json!({"topic": "gap", "data": data, "audience": "public"}),
            )
            .await,
        );
    }
    // Past the fsync interval, so the five are durable; then a crash.
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill_9(hub);

    let hub = node.start();
    let after = publish_ok(
        &hub,
        &node.admin_key,
        json!({"topic": "gap", "data": "after", "audience": "public"}),
    )
    .await;
    assert!(
        after > seqs[4] + 1,
        "a crash leaves a gap in the numbers: {after} after {seqs:?}"
    );
    let reader = user("reader", json!({}));
    let mut s = hub
        .stream_with("/v1/events?topic=gap", Some(&reader), Some("0"))
        .await
        .expect("history");
    let got = s.take(6, ARRIVE).await;
    let datas: Vec<&str> = got.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(datas, ["g0", "g1", "g2", "g3", "g4", "after"]);
}

fn parse_compact(stdout: &str) -> (u64, u64) {
    // `PATH: BEFORE bytes -> AFTER bytes`
    let (_, sizes) = stdout.trim().rsplit_once(": ").expect("compact report");
    let mut it = sizes.split_whitespace().filter_map(|w| w.parse::<u64>().ok());
    let before = it.next().expect("size before");
    let after = it.next().expect("size after");
    (before, after)
}

#[tokio::test]
async fn store_compact_shrinks_a_stopped_store_and_keeps_its_events() {
    // 3,000 events of 2 KiB kept, then a restart with history_size = 200:
    // the first commit evicts 2,800 of them and leaves mostly free pages.
    let node = Node::new("");
    let hub = node.start();
    let payload = "z".repeat(2048);
    for _ in 0..30 {
        let events: Vec<Value> = (0..100)
            .map(|_| json!({"topic": "c", "data": payload, "audience": "public"}))
            .collect();
        let (status, v) = hub.publish(&node.admin_key, json!({"events": events})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    stop_gracefully(hub);
    node.set_extra("history_size = 200");
    let hub = node.start();
    let head = publish_ok(
        &hub,
        &node.admin_key,
        json!({"topic": "c", "data": payload, "audience": "public"}),
    )
    .await;
    assert_eq!(head, 3001);
    stop_gracefully(hub);

    let compact = store_cli("compact", node.data_arg());
    assert!(
        compact.status.expect("status").success(),
        "compact: {}{}",
        compact.stdout,
        compact.stderr
    );
    eprintln!("{}", compact.stdout.trim());
    let (before, after) = parse_compact(&compact.stdout);
    let on_disk = std::fs::metadata(node.store_file()).expect("store file").len();
    assert!(
        after < before,
        "compaction gives the evicted events' space back: {before} -> {after} bytes"
    );
    assert_eq!(after, on_disk, "compact reports the file's new size");

    let verify = store_cli("verify", node.data_arg());
    assert!(
        verify.status.expect("status").success(),
        "verify after compact: {}{}",
        verify.stdout,
        verify.stderr
    );
    assert!(
        verify.stdout.contains(&format!("events: 200 (head seq {head})")),
        "every kept event survives compaction: {}",
        verify.stdout
    );

    let hub = node.start();
    let reader = user("reader", json!({}));
    let after_id = (head - 3).to_string();
    let mut s = hub
        .stream_with("/v1/events?topic=c", Some(&reader), Some(after_id.as_str()))
        .await
        .expect("resume after compaction");
    let got = s.take(3, ARRIVE).await;
    let ids: Vec<String> = got.iter().filter_map(|e| e.id.clone()).collect();
    let want: Vec<String> = (head - 2..=head).map(|s| s.to_string()).collect();
    assert_eq!(ids, want, "history resumes after compaction");
    let seq = publish_ok(
        &hub,
        &node.admin_key,
        json!({"topic": "c", "data": "after", "audience": "public"}),
    )
    .await;
    assert_eq!(seq, head + 1, "seq continues after compaction");
}
