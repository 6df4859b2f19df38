//! The operator commands (`connections`, `kick`, `revoke`, `audit`,
//! `status`) run as the real `herald` binary against a real hub: what they
//! print, what they change, their exit codes, and that they need nothing
//! of the hub's configuration.
mod support;

use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const T: Duration = Duration::from_secs(5);

/// What one run of the CLI did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A `herald` command with a clean environment: no HERALD_* from the
/// shell running the tests, and a working directory with no config.
fn herald_cmd(dir: &std::path::Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            c.env_remove(k);
        }
    }
    // The trust store too: each test says which CA file it means.
    c.env_remove("SSL_CERT_FILE");
    c.current_dir(dir).kill_on_drop(true);
    c
}

async fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = herald_cmd(dir);
    c.args(args).envs(env.iter().copied());
    let out = tokio::time::timeout(Duration::from_secs(20), c.output())
        .await
        .expect("the CLI finishes")
        .expect("run herald");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `herald ARGS` against `hub` with `token`, through HERALD_URL and
/// HERALD_TOKEN (as an operator's shell would).
async fn cli(hub: &Server, token: &str, args: &[&str]) -> Run {
    run_in(
        hub.dir.path(),
        args,
        &[("HERALD_URL", &hub.base), ("HERALD_TOKEN", token)],
    )
    .await
}

/// Runs with the hub admin key and insists on success.
async fn ok(hub: &Server, args: &[&str]) -> String {
    let r = cli(hub, &hub.admin_key, args).await;
    assert_eq!(r.code, 0, "herald {args:?}: {r:?}");
    r.stdout
}

/// The table row (split on whitespace) whose ACCOUNT column is `account`.
fn row<'a>(table: &'a str, account: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.get(4) == Some(&account))
}

async fn connections_json(hub: &Server) -> Vec<Value> {
    let out = ok(hub, &["connections", "--json"]).await;
    let v: Value = serde_json::from_str(out.trim()).expect("--json prints JSON");
    v["connections"].as_array().expect("connections").clone()
}

async fn stream_id(hub: &Server, account: &str) -> String {
    connections_json(hub)
        .await
        .iter()
        .find(|c| c["account"] == account)
        .and_then(|c| c["id"].as_str())
        .expect("the stream is listed")
        .to_string()
}

#[tokio::test]
async fn connections_lists_streams_with_tenant_and_account_and_filters() {
    let hub = start();
    let alice = user("alice", json!({"sid": "s1", "tenant": "acme"}));
    let bob = user("bob", json!({"sid": "s2"}));
    let _a = hub.stream("/v1/events?topic=demo", &alice).await;
    let _b = hub.stream("/v1/events?topic=news", &bob).await;

    let all = ok(&hub, &["connections"]).await;
    let header: Vec<&str> = all.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
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
            "SENT"
        ]
    );
    let a = row(&all, "alice").expect("alice listed");
    assert_eq!((a[1], a[2], a[3], a[7]), ("events", "native", "acme", "demo"), "{all}");
    let b = row(&all, "bob").expect("bob listed");
    assert_eq!((b[3], b[7]), ("-", "news"), "hub-wide stream: {all}");
    assert_eq!(all.lines().last(), Some("2 streams"));

    let acme = ok(&hub, &["connections", "--tenant", "acme"]).await;
    assert!(row(&acme, "alice").is_some() && row(&acme, "bob").is_none(), "{acme}");
    assert_eq!(acme.lines().last(), Some("1 stream"));
    let hub_wide = ok(&hub, &["connections", "--tenant", ""]).await;
    assert!(
        row(&hub_wide, "bob").is_some() && row(&hub_wide, "alice").is_none(),
        "{hub_wide}"
    );
    let by_account = ok(&hub, &["connections", "--account", "bob"]).await;
    assert!(row(&by_account, "bob").is_some() && row(&by_account, "alice").is_none());

    let list = connections_json(&hub).await;
    let mut accounts: Vec<&str> = list.iter().filter_map(|c| c["account"].as_str()).collect();
    accounts.sort_unstable();
    assert_eq!(accounts, ["alice", "bob"]);
}

#[tokio::test]
async fn kick_closes_the_stream_and_a_bad_id_reports_not_found() {
    let hub = start();
    let alice = user("alice", json!({"sid": "s1"}));
    let mut s = hub.stream("/v1/events?topic=demo", &alice).await;
    let id = stream_id(&hub, "alice").await;

    let out = ok(&hub, &["kick", &id]).await;
    assert_eq!(out.trim(), format!("closed stream {id}"));
    let e = s.next_event(T).await.expect("control event");
    assert_eq!(e.event, "kicked");

    let r = cli(&hub, &hub.admin_key, &["kick", "999999"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("herald: 404 not_found: "), "{r:?}");
}

#[tokio::test]
async fn revoke_dry_run_counts_without_closing_and_revoke_closes() {
    let hub = start();
    let alice = user("alice", json!({"sid": "s1"}));
    let mut s = hub.stream("/v1/events?topic=demo", &alice).await;
    let args = ["revoke", "session_revoke", "--account", "alice", "--session", "s1"];

    let dry = ok(&hub, &[&args[..], &["--dry-run"]].concat()).await;
    assert_eq!(dry.trim(), "would close 1 stream");
    assert!(s.drain_for(Duration::from_millis(200)).await.is_empty(), "nothing sent");
    assert_eq!(connections_json(&hub).await.len(), 1, "still open");

    let done = ok(&hub, &args).await;
    assert_eq!(done.trim(), "closed 1 stream");
    let e = s.next_event(T).await.expect("control event");
    assert_eq!(e.event, "revoked");
    assert!(hub
        .stream_with("/v1/events?topic=demo", Some(&alice), None)
        .await
        .is_err());
}

#[tokio::test]
async fn audit_prints_the_newest_records_and_filters_by_kind() {
    let hub = start();
    let alice = user("alice", json!({"sid": "s1"}));
    let _s = hub.stream("/v1/events?topic=demo", &alice).await;
    let id = stream_id(&hub, "alice").await;
    ok(&hub, &["kick", &id]).await;

    let table = ok(&hub, &["audit"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["TIME", "KIND", "TENANT", "ACCOUNT", "IP", "STREAM", "DETAIL"]);
    let kinds: Vec<&str> = lines.filter_map(|l| l.split_whitespace().nth(1)).collect();
    for kind in ["stream_opened", "admin_action", "stream_closed"] {
        assert!(kinds.contains(&kind), "{kind} in {table}");
    }

    let kicks = ok(&hub, &["audit", "--kind", "admin_action"]).await;
    let rows: Vec<&str> = kicks.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{kicks}");
    assert!(rows[0].contains("\"action\":\"kick\""), "{kicks}");

    // --json: one record per line, the newest `limit`, oldest first.
    let all: Vec<Value> = ok(&hub, &["audit", "--json", "--limit", "1000"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    assert!(all.len() >= 3);
    let two: Vec<Value> = ok(&hub, &["audit", "--json", "--limit", "2"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(two, all[all.len() - 2..], "the two newest, oldest first");
}

#[tokio::test]
async fn audit_finds_a_rare_filters_records_past_the_hubs_scan_bound() {
    // More than a page's scan of records newer than the one opened: the
    // command pages back past them.
    let hub = hub_with_rare_audit_records().await;
    let found: Vec<Value> = ok(&hub, &["audit", "--json", "--kind", "stream_opened", "--limit", "5"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let accounts: Vec<&str> = found.iter().filter_map(|r| r["account"].as_str()).collect();
    assert_eq!(accounts, ["rare"], "{found:?}");
}

#[tokio::test]
async fn audit_follow_prints_records_that_happen_later_and_exits_zero_on_ctrl_c() {
    let hub = start();
    let mut child = herald_cmd(hub.dir.path())
        .args(["audit", "--follow", "--limit", "0", "--account", "carol"])
        .env("HERALD_URL", &hub.base)
        .env("HERALD_TOKEN", &hub.admin_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Following once its audit stream is open.
    let deadline = tokio::time::Instant::now() + T;
    while !connections_json(&hub).await.iter().any(|c| c["kind"] == "audit") {
        assert!(tokio::time::Instant::now() < deadline, "audit --follow never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let carol = user("carol", json!({"sid": "c1"}));
    let _s = hub.stream("/v1/events?topic=demo", &carol).await;

    let found = tokio::time::timeout(T, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains("stream_opened") && line.contains("carol") {
                return Some(line);
            }
            assert!(!line.contains("apikey:admin"), "--account filters: {line}");
        }
        None
    })
    .await
    .expect("the record is printed in time");
    assert!(found.is_some(), "the stream ended first");

    signal(&child, "-INT");
    let status = tokio::time::timeout(T, child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "Ctrl-C ends it cleanly");
}

#[tokio::test]
async fn status_prints_stream_counts_rates_and_health() {
    let hub = start();
    let alice = user("alice", json!({"sid": "s1", "tenant": "acme"}));
    let bob = user("bob", json!({"sid": "s2"}));
    let _a = hub.stream("/v1/events?topic=demo", &alice).await;
    let _b = hub.stream("/v1/events?topic=demo", &bob).await;

    let out = ok(&hub, &["status"]).await;
    let line = |key: &str| {
        out.lines()
            .find(|l| l.split("  ").next() == Some(key))
            .unwrap_or_else(|| panic!("no `{key}` line in {out}"))
            .to_string()
    };
    let streams = line("streams");
    assert!(streams.contains(" 2 ("), "{out}");
    assert!(streams.contains("acme 1") && streams.contains("hub-wide 1"), "{out}");
    // Rates need the first one-second sample; the line is there before.
    let rates = line("last 10 s");
    assert!(
        rates.contains("published/s") || rates.contains("no samples yet"),
        "{out}"
    );
    assert!(line("ready").ends_with("yes"), "{out}");
    let _ = line("totals");

    let v: Value = serde_json::from_str(ok(&hub, &["status", "--json"]).await.trim()).expect("JSON");
    assert_eq!(v["streams"]["total"], 2);
}

#[tokio::test]
async fn a_key_without_admin_is_refused_with_the_hubs_error() {
    let hub = start();
    for args in [&["connections"][..], &["status"], &["audit"], &["audit", "--follow"]] {
        let r = cli(&hub, &hub.acme_key, args).await;
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert_eq!(
            r.stderr.trim(),
            "herald: 403 admin_required: this endpoint is for administrators",
            "{args:?}"
        );
        assert!(!r.stderr.contains(&hub.acme_key) && !r.stdout.contains(&hub.acme_key));
    }
}

#[tokio::test]
async fn failures_exit_nonzero_and_never_show_the_credential() {
    let hub = start();
    let dir = hub.dir.path();
    let bogus = "hk_this-is-not-a-real-key-but-must-stay-secret";
    let r = cli(&hub, bogus, &["connections"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("herald: 401 invalid_token"), "{r:?}");
    assert!(!r.stderr.contains(bogus) && !r.stdout.contains(bogus));

    let r = run_in(
        dir,
        &["connections", "--url", "http://127.0.0.1:1", "--token", bogus],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot connect to http://127.0.0.1:1"), "{r:?}");

    let r = run_in(dir, &["revoke", "bogus_type", "--token", bogus], &[]).await;
    assert_eq!(r.code, 2, "usage error: {r:?}");
    let r = run_in(dir, &["status"], &[]).await;
    assert_eq!(r.code, 2, "no credential: {r:?}");
    let r = run_in(dir, &["status", "--help"], &[("HERALD_TOKEN", bogus)]).await;
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("HERALD_TOKEN") && !r.stdout.contains(bogus),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn client_commands_do_not_read_the_hub_configuration() {
    let hub = start();
    let r = run_in(
        hub.dir.path(),
        &["connections"],
        &[
            ("HERALD_URL", &hub.base),
            ("HERALD_TOKEN", &hub.admin_key),
            ("HERALD_CONFIG", "/nonexistent/herald.toml"),
            ("HERALD_LISTEN", "not an address"),
            ("HERALD_NO_SUCH_KEY", "x"),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().last(), Some("0 streams"));

    // `publish` with a credential needs no configuration either.
    let r = run_in(
        hub.dir.path(),
        &["publish", "--topic", "demo", "--data", "hi"],
        &[
            ("HERALD_URL", &hub.base),
            ("HERALD_TOKEN", &hub.admin_key),
            ("HERALD_CONFIG", "/nonexistent/herald.toml"),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let v: Value = serde_json::from_str(r.stdout.trim()).expect("the hub's answer");
    assert!(v["id"].is_string(), "{v}");
}

/// Writes a minimal hub configuration (with `extra` TOML) into `dir`.
fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("herald.toml");
    let data = dir.display();
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\njwt_secret = \"{SECRET}\"\n{extra}\n"),
    )
    .expect("write config");
    config
}

/// Starts `herald serve --config CONFIG ARGS...` with `env`, and returns
/// the process with its URL (`None`: it exited without listening).
async fn serve(
    dir: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, Option<String>) {
    let mut child = herald_cmd(dir)
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .args(args)
        .envs(env.iter().copied())
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(T, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if let Some(rest) = line.strip_prefix("herald listening on ") {
                return Some(rest.trim().to_string());
            }
        }
        None
    })
    .await
    .expect("starts in time");
    // Keep reading, so the hub never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

/// Sends `signal` (`-INT`, `-TERM`) to a process this test started.
fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// How many audit streams the hub at `base` has open (0 while it is down).
async fn audit_streams(base: &str, key: &str) -> usize {
    let Ok(r) = client()
        .get(format!("{base}/v1/connections"))
        .bearer_auth(key)
        .send()
        .await
    else {
        return 0;
    };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["connections"]
        .as_array()
        .map_or(0, |l| l.iter().filter(|c| c["kind"] == "audit").count())
}

/// Waits until the hub at `base` has an audit stream open.
async fn until_audit_stream(base: &str, key: &str, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while audit_streams(base, key).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serve_accepts_the_client_variables_in_its_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "store = \"memory\"");
    let env = [("HERALD_URL", "http://127.0.0.1:9"), ("HERALD_TOKEN", "hk_whatever")];
    let (mut child, base) = serve(dir.path(), &config, &[], &env).await;
    let Some(base) = base else {
        let out = child.wait_with_output().await.expect("output");
        panic!("serve refused to start: {}", String::from_utf8_lossy(&out.stderr));
    };
    let r = client().get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    let _ = child.kill().await;
}

#[tokio::test]
async fn audit_follow_reconnects_when_the_hub_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, hash) = herald::auth::api_key::generate();
    let config = write_config(
        dir.path(),
        &format!("[[api_keys]]\nid = \"admin\"\nhash = \"{hash}\"\nscopes = [\"admin\", \"tokens\"]"),
    );
    let (mut first, base) = serve(dir.path(), &config, &[], &[]).await;
    let base = base.expect("the hub starts");
    let mut follower = herald_cmd(dir.path())
        .args(["audit", "--follow", "--limit", "0", "--account", "erin"])
        .env("HERALD_URL", &base)
        .env("HERALD_TOKEN", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    until_audit_stream(&base, &key, T, "audit --follow never connected").await;

    // The hub goes away (`event: shutdown`) and comes back on the same address.
    signal(&first, "-TERM");
    tokio::time::timeout(T, first.wait())
        .await
        .expect("the hub stops")
        .expect("wait");
    let listen = base.trim_start_matches("http://").to_string();
    let (mut second, again) = serve(dir.path(), &config, &["--listen", &listen], &[]).await;
    assert_eq!(again.as_deref(), Some(base.as_str()), "the hub restarts on its address");
    until_audit_stream(&base, &key, Duration::from_secs(10), "audit --follow never reconnected").await;

    let erin = user("erin", json!({"sid": "e1"}));
    let stream = client()
        .get(format!("{base}/v1/events?topic=demo"))
        .bearer_auth(&erin)
        .send()
        .await
        .expect("subscribe");
    assert_eq!(stream.status(), 200);
    let seen = tokio::time::timeout(T, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains("stream_opened") && line.contains("erin") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the record is printed in time");
    assert!(seen, "the follower ended");

    signal(&follower, "-INT");
    let out = tokio::time::timeout(T, follower.wait_with_output())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reconnecting"), "{stderr}");
    drop(stream);
    let _ = second.kill().await;
}

#[tokio::test]
async fn https_hubs_are_reached_with_the_trusted_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    support::self_signed_cert(dir.path());
    let cert = dir.path().join("cert.pem").to_str().expect("utf8").to_string();
    let key = dir.path().join("key.pem").to_str().expect("utf8").to_string();
    let hub = start_with(&format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\""));
    assert!(hub.base.starts_with("https://"), "{}", hub.base);

    let trusted = run_in(
        hub.dir.path(),
        &["connections"],
        &[
            ("HERALD_URL", &hub.base),
            ("HERALD_TOKEN", &hub.admin_key),
            ("SSL_CERT_FILE", &cert),
        ],
    )
    .await;
    assert_eq!(trusted.code, 0, "{trusted:?}");
    assert_eq!(trusted.stdout.lines().last(), Some("0 streams"));

    let untrusted = run_in(
        hub.dir.path(),
        &["connections"],
        &[("HERALD_URL", &hub.base), ("HERALD_TOKEN", &hub.admin_key)],
    )
    .await;
    // 1 when the system's CAs are found (and refuse the certificate), 2
    // when there are none to trust.
    assert_ne!(untrusted.code, 0, "a certificate no CA vouches for: {untrusted:?}");
    assert!(untrusted.stderr.starts_with("herald: "), "{untrusted:?}");
}

/// A front for `hub` that refuses credentials in the `Authorization`
/// header on the audit stream (as a hub accepting only SSE tokens on
/// streams would) and passes everything else through. Returns its URL.
async fn token_only_front(hub: &Server) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let upstream = hub.base.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if text.starts_with("get /v1/audit/events") && text.contains("\r\nauthorization:") {
                    let body = r#"{"error":{"code":"invalid_token","message":"streams take SSE tokens only"}}"#;
                    let answer = format!(
                        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = client.write_all(answer.as_bytes()).await;
                    return;
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                if server.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn audit_follow_falls_back_to_an_sse_token_and_stops_when_kicked() {
    let hub = start();
    let front = token_only_front(&hub).await;
    let mut child = herald_cmd(hub.dir.path())
        .args(["audit", "--follow", "--limit", "0", "--kind", "stream_opened"])
        .env("HERALD_URL", &front)
        .env("HERALD_TOKEN", &hub.admin_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let deadline = tokio::time::Instant::now() + T;
    let audit_stream = loop {
        let list = connections_json(&hub).await;
        if let Some(c) = list.iter().find(|c| c["kind"] == "audit") {
            break c.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "audit --follow never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The stream was opened with a token minted for the CLI, not the key.
    assert_eq!(audit_stream["account"], "herald-cli", "{audit_stream}");

    let dave = user("dave", json!({"sid": "d1"}));
    let _s = hub.stream("/v1/events?topic=demo", &dave).await;
    let seen = tokio::time::timeout(T, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains("dave") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the record is printed in time");
    assert!(seen);

    let id = audit_stream["id"].as_str().expect("id");
    ok(&hub, &["kick", id]).await;
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "herald: the audit stream was kicked: admin"
    );
}
