//! `herald-loadgen`: opens N SSE streams against Herald or a peer,
//! publishes M events at rate R with a send timestamp and the addressee
//! inside each payload, and reports what arrived, how late, and what the
//! server spent.
//!
//! ```text
//! herald-loadgen floor --listen 127.0.0.1:18090
//! herald-loadgen run --target herald --url http://127.0.0.1:8080 --secret S \
//!     --streams 10000 --events 200 --rate 100 --pids $(pgrep -x herald)
//! ```
//!
//! Every delivery is judged by its stream (see `tally`): delivered,
//! `extra` (a second arrival) or `misdelivered` (addressed to someone
//! else). A run with a misdelivery or a revocation not seen within
//! [`revoke::REVOCATION_TIMEOUT`] still prints its report, with `"ok": false` and
//! its `failures`, and exits with status 2; status 1 means it could not run.
#![forbid(unsafe_code)]

mod client;
mod floor;
mod procstat;
mod publish;
mod revoke;
mod tally;
mod target;

use clap::{Parser, Subcommand, ValueEnum};
use client::Conn;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::json;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally::{Address, Identity, Owed};
use target::Target;

/// Exit status of a run that completed but failed its checks.
const FAILED_CHECKS: i32 = 2;

#[derive(Parser)]
#[command(name = "herald-loadgen", about = "Load generator for Herald and its peers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario against one target and print a JSON report.
    Run(Box<RunArgs>),
    /// Serve the floor: one write per stream per event (no coalescing).
    Floor {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:18090")]
        listen: String,
    },
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
enum Kind {
    Herald,
    Mercure,
    Nchan,
    Pushpin,
    Floor,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
enum Scenario {
    /// Every stream on one topic, every event to everyone.
    Broadcast,
    /// Each event addressed to one account among all streams (on peers:
    /// published to that account's channel).
    PerUser,
    /// Streams spread over tenants; each event to one tenant (on peers: to
    /// that tenant's channel).
    Tenants,
    /// 10% of streams stop reading while events flow; the rest must get
    /// everything live. Once publishing ends the slow ones read again, and
    /// those the hub cut for falling behind resume with `Last-Event-ID`:
    /// every stream must end up with every event, exactly once.
    Slow,
    /// Streams reconnect continuously while events flow, each time with
    /// `Last-Event-ID`: every stream must still get every event, exactly once.
    Churn,
    /// Revoke accounts one by one; time from request to `event: revoked`.
    Revocation,
}

/// How events are published.
#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
enum PublisherMode {
    /// Events fall due at `--rate` whatever the answers, sent by a pool of
    /// `--publishers` connections (open loop).
    Rate,
    /// One publisher sends an event, waits for its answer, then sends the
    /// next no earlier than `1/--rate` later, like a backend's request
    /// handler (closed loop; `--publishers` is ignored).
    Wait,
}

#[derive(Parser, Clone)]
struct RunArgs {
    /// What is measured.
    #[arg(long, value_enum)]
    target: Kind,
    /// Base URL (subscribers; publishes too except for Pushpin).
    #[arg(long)]
    url: String,
    /// Pushpin's publish endpoint.
    #[arg(long, default_value = "http://127.0.0.1:5561/publish/")]
    publish_url: String,
    /// HS256 secret (Herald) or Mercure key.
    #[arg(long, default_value = "")]
    secret: String,
    /// Scenario.
    #[arg(long, value_enum, default_value = "broadcast")]
    scenario: Scenario,
    /// Streams to open.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Events to publish.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Events per second; 0 publishes flat out.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Concurrent publishers (each with its own keep-alive connection).
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// How events are published: on a schedule by a pool, or by one
    /// publisher waiting for each answer.
    #[arg(long, value_enum, default_value = "rate")]
    publisher: PublisherMode,
    /// Tenants (tenants scenario).
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Revocations to time (revocation scenario).
    #[arg(long, default_value_t = 200)]
    revocations: usize,
    /// Server process ids whose CPU and memory are read from /proc.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Spread streams over 127.0.0.1..=127.0.0.N source addresses.
    #[arg(long, default_value_t = 16)]
    sources: u8,
    /// Payload bytes per event after its number and send time (the
    /// addressee, written first, takes its share of them).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Streams opened concurrently.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Post revocations to this node instead of `--url` (cluster runs:
    /// streams on one node, revocations on another).
    #[arg(long)]
    revoke_url: Option<String>,
    /// Open streams over HTTP/2 (an `https://` URL), this many per
    /// connection; 0 opens one HTTP/1.1 connection per stream.
    #[arg(long, default_value_t = 0)]
    h2: usize,
    /// PEM certificate(s) to trust for `https://` URLs.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Label for the report.
    #[arg(long, default_value = "")]
    label: String,
}

/// Counters shared by every stream task.
struct Stats {
    opened: AtomicUsize,
    failed: AtomicUsize,
    /// First arrivals of events addressed to the stream that got them.
    delivered: AtomicU64,
    /// Second and later arrivals of an event on one stream.
    extra: AtomicU64,
    /// Events that reached a stream they were not addressed to.
    misdelivered: AtomicU64,
    /// Reads (one HTTP/1.1 chunk, or part of one) that delivered events.
    chunks: AtomicU64,
    /// Deliveries that arrived in a read together with other events: the
    /// server coalesced a backlog into one write.
    coalesced: AtomicU64,
    /// Streams that opened at least once.
    connected: Vec<AtomicBool>,
    latency: Vec<Mutex<Histogram<u64>>>,
    revoked_at: Vec<AtomicU64>,
    /// Opens when the run ends; every reading stream waits on it, so
    /// readers need no timer of their own while they wait for frames.
    stop: Latch,
    /// Streams whose first connection attempt is over (opened or failed).
    settled: AtomicUsize,
    /// Reconnections that sent `Last-Event-ID`.
    resumed: AtomicUsize,
    /// Opens when publishing ends (slow streams read again).
    published: Latch,
    /// Shared HTTP/2 connections (with `--h2`), one per group of streams.
    h2_pool: Vec<tokio::sync::OnceCell<Result<Conn, String>>>,
    /// From sending a stream's request to its `200` headers: what the hub
    /// spends admitting it (authentication, caps, cluster leases).
    open_latency: Mutex<Histogram<u64>>,
}

/// A flag that opens once and that any number of tasks can wait on.
#[derive(Default)]
struct Latch {
    open: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Latch {
    /// Opens it, waking every waiter.
    fn open(&self) {
        self.open.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once it is open (at once if it already is).
    async fn opened(&self) {
        // Registered before the flag is read, so an `open` between the two
        // still wakes this waiter.
        let notified = self.notify.notified();
        if self.open.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// Wall-clock nanoseconds: send times travel inside payloads.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A latency histogram in µs, up to ten minutes.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

impl Stats {
    fn new(n: usize, h2: usize) -> Stats {
        Stats {
            h2_pool: (0..if h2 > 0 { n.div_ceil(h2) } else { 0 })
                .map(|_| tokio::sync::OnceCell::new())
                .collect(),
            opened: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            extra: AtomicU64::new(0),
            misdelivered: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            connected: (0..n).map(|_| AtomicBool::new(false)).collect(),
            latency: (0..16).map(|_| Mutex::new(histogram())).collect(),
            revoked_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stop: Latch::default(),
            resumed: AtomicUsize::new(0),
            settled: AtomicUsize::new(0),
            published: Latch::default(),
            open_latency: Mutex::new(histogram()),
        }
    }

    /// Scans SSE bytes for `data:` lines carrying `<seq> <send_ns> <to>`,
    /// `id:` lines and `event: revoked`. `carry` holds an incomplete last
    /// line. A read never spans two HTTP/1.1 chunks (hyper hands a chunk
    /// over whole or in parts), so events scanned together were written
    /// together: that is what `coalesced` counts.
    fn scan(&self, i: usize, seen: &mut Seen, carry: &mut Vec<u8>, chunk: &[u8]) {
        // Chunks almost always end on a line boundary; only a torn line is
        // copied, so the common case scans the received bytes in place.
        let Some(last_nl) = chunk.iter().rposition(|b| *b == b'\n') else {
            carry.extend_from_slice(chunk);
            return;
        };
        let (complete, rest) = chunk.split_at(last_nl + 1);
        if carry.is_empty() {
            self.scan_lines(i, seen, complete);
        } else {
            carry.extend_from_slice(complete);
            self.scan_lines(i, seen, carry);
            carry.clear();
        }
        carry.extend_from_slice(rest);
    }

    /// Scans whole lines, judging every delivery (see `tally`).
    fn scan_lines(&self, i: usize, seen: &mut Seen, lines: &[u8]) {
        let now = now_ns();
        let mut shard = None;
        let timed = seen.timed;
        let scan = tally::scan_lines(&seen.me, &mut seen.owed, lines, |sent| {
            if timed {
                let us = now.saturating_sub(sent) / 1000;
                let h = shard.get_or_insert_with(|| self.latency[i % 16].lock());
                let _ = h.record(us.max(1));
            }
        });
        drop(shard);
        let c = scan.counts;
        for (counter, n) in [
            (&self.delivered, c.delivered),
            (&self.extra, c.extra),
            (&self.misdelivered, c.misdelivered),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if c.delivered > 0 {
            self.chunks.fetch_add(1, Ordering::Relaxed);
            if c.events() > 1 {
                self.coalesced.fetch_add(c.delivered, Ordering::Relaxed);
            }
        }
        if let Some(id) = scan.last_id {
            seen.last_id = Some(String::from_utf8_lossy(id).into_owned());
        }
        if scan.revoked {
            self.revoked_at[i].store(now, Ordering::Release);
        }
    }
}

/// What one stream has received, across its reconnections.
struct Seen {
    /// The last `id:` line, sent back as `Last-Event-ID`.
    last_id: Option<String>,
    /// The account and tenant it was opened as.
    me: Identity,
    /// The events received, one bit each (a second arrival is `extra`).
    owed: Owed,
    /// Whether its deliveries count toward the latency figures (not for a
    /// consumer that stopped reading on purpose).
    timed: bool,
}

/// Stream `i`'s account and tenant, and the address its events carry:
/// account `i`; in `tenants`, tenant `i mod --tenants`.
fn identity(i: usize, args: &RunArgs) -> (Identity, Address) {
    let tenant = (args.scenario == Scenario::Tenants).then(|| i % args.tenants.max(1));
    let by = match (args.scenario, tenant) {
        (Scenario::PerUser, _) => Address::User(i),
        (_, Some(k)) => Address::Tenant(k),
        _ => Address::Public,
    };
    (Identity { account: i, tenant }, by)
}

fn source(i: usize, sources: u8) -> Option<IpAddr> {
    (sources > 1).then(|| IpAddr::from([127, 0, 0, 1 + (i % sources as usize) as u8]))
}

/// One stream: connect, subscribe, read until told to stop. A `slow`
/// stream reads nothing until publishing ends; a `churn` stream reconnects
/// every 0.5–2 s. Both come back with `Last-Event-ID` when their stream
/// ends early, so they are owed every event.
/// `permit` (one of `--connect-concurrency`) is released once the first
/// connection attempt is over.
async fn stream(
    i: usize,
    target: Arc<Target>,
    args: Arc<RunArgs>,
    stats: Arc<Stats>,
    mut permit: Option<tokio::sync::OwnedSemaphorePermit>,
    slow: bool,
    churn: bool,
) {
    let resumes = slow || churn;
    let (me, by) = identity(i, &args);
    let mut seen = Seen {
        last_id: None,
        me,
        owed: Owed::new(args.events),
        timed: !slow,
    };
    let subscribe = target.subscribe(publish::TOPIC, &me, by);
    loop {
        let mut req = subscribe.clone();
        if let Some(id) = &seen.last_id {
            req.headers.push(("last-event-id", id.clone()));
            stats.resumed.fetch_add(1, Ordering::Relaxed);
        }
        let opened = async {
            let mut c = match i.checked_div(args.h2) {
                // Streams K*g .. K*g+K-1 share HTTP/2 connection g.
                Some(group) => {
                    let shared = stats.h2_pool[group]
                        .get_or_init(|| Conn::open(&req.url, source(group, args.sources), true))
                        .await;
                    match shared {
                        Ok(c) => c.share().ok_or("the server did not agree to HTTP/2")?,
                        Err(e) => return Err(e.clone()),
                    }
                }
                None => Conn::open(&req.url, source(i, args.sources), false).await?,
            };
            let sent = Instant::now();
            let resp = c.send(&req).await?;
            if resp.status() != 200 {
                return Err(format!("status {}", resp.status()));
            }
            let _ = stats
                .open_latency
                .lock()
                .record(sent.elapsed().as_micros().max(1) as u64);
            Ok::<_, String>(resp)
        }
        .await;
        if permit.take().is_some() {
            stats.settled.fetch_add(1, Ordering::Relaxed);
        }
        let resp = match opened {
            Ok(r) => {
                stats.opened.fetch_add(1, Ordering::Relaxed);
                stats.connected[i].store(true, Ordering::Relaxed);
                r
            }
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                if !resumes {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut body = resp.into_body();
        let stopped = stats.stop.opened();
        tokio::pin!(stopped);
        if slow {
            // Not reading until publishing ends: the hub's queue for this
            // stream fills up.
            tokio::select! {
                biased;
                _ = stopped.as_mut() => return,
                _ = stats.published.opened() => {}
            }
        }
        let mut carry = Vec::new();
        // One timer per connection (churn), none per frame: a timer per
        // read would cost the load generator more than it measures.
        let churn_after = churn.then(|| Duration::from_millis(500 + rand::random::<u64>() % 1500));
        let reconnect = tokio::time::sleep(churn_after.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(reconnect);
        loop {
            tokio::select! {
                _ = stopped.as_mut() => return,
                // Not before the first event: a client that has seen no id
                // has nothing to resume from.
                _ = reconnect.as_mut(), if churn && seen.last_id.is_some() => break,
                next = body.frame() => match next {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            stats.scan(i, &mut seen, &mut carry, data);
                        }
                    }
                    _ => break,
                },
            }
        }
        // The stream ended: a churn stream always comes back; a slow one
        // comes back if the hub cut it before it had everything.
        let owed = args.events as u64;
        if !(churn || (slow && seen.owed.count < owed)) {
            // Stay until the run ends, so nothing here reconnects blindly.
            stopped.await;
            return;
        }
    }
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "count": h.len(),
    })
}

async fn run(args: RunArgs) -> Result<serde_json::Value, String> {
    let target = Arc::new(match args.target {
        Kind::Herald => Target::Herald {
            base: args.url.clone(),
            secret: args.secret.clone(),
        },
        Kind::Mercure => Target::Mercure {
            base: args.url.clone(),
            key: args.secret.clone(),
        },
        Kind::Nchan => Target::Nchan { base: args.url.clone() },
        Kind::Pushpin => Target::Pushpin {
            base: args.url.clone(),
            publish: args.publish_url.clone(),
        },
        Kind::Floor => Target::Floor { base: args.url.clone() },
    });
    let args = Arc::new(args);
    let n = args.streams;
    if let Some(ca) = &args.ca {
        client::trust(ca)?;
    }
    let stats = Arc::new(Stats::new(n, args.h2));
    let rss_before = procstat::rss_bytes(&args.pids);
    let drops_before = procstat::listen_drops();

    // Open the streams.
    let gate = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    let churn = args.scenario == Scenario::Churn;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let slow = args.scenario == Scenario::Slow && i % 10 == 0;
        let (t, a, s, g) = (target.clone(), args.clone(), stats.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let permit = g.acquire_owned().await.ok();
            stream(i, t, a, s, permit, slow, churn).await;
        }));
    }
    let start = Instant::now();
    while stats.settled.load(Ordering::Relaxed) < n && start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = procstat::rss_bytes(&args.pids);
    let server_fds = procstat::open_fds(&args.pids);
    let opened = stats.opened.load(Ordering::Relaxed);

    let mut report = json!({
        "label": args.label, "target": format!("{:?}", args.target).to_lowercase(),
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "streams": n, "opened": opened, "failed": stats.failed.load(Ordering::Relaxed),
        "connect_secs": connect_secs,
        "h2_streams_per_connection": args.h2,
        "server_fds": server_fds,
        "connections": if args.h2 > 0 { n.div_ceil(args.h2) } else { n },
        "rss_per_stream_bytes": if opened > 0 { rss_after.saturating_sub(rss_before) / opened as u64 } else { 0 },
    });
    if args.scenario == Scenario::Tenants {
        report["tenants"] = json!(args.tenants);
    }
    let mut failures = Vec::new();
    if args.scenario == Scenario::Revocation {
        revoke::revocations(&target, &args, &stats, &mut report, &mut failures).await?;
    } else {
        deliveries(target, args.clone(), &stats, &mut report).await;
    }
    // From before the streams opened: a refused connect shows up there.
    report["listen_drops"] = json!(procstat::listen_drops().saturating_sub(drops_before));
    let misdelivered = stats.misdelivered.load(Ordering::Relaxed);
    report["misdelivered"] = json!(misdelivered);
    report["extra"] = json!(stats.extra.load(Ordering::Relaxed));
    if misdelivered > 0 {
        failures.push(format!(
            "{misdelivered} deliveries to streams they were not addressed to"
        ));
    }
    report["ok"] = json!(failures.is_empty());
    report["failures"] = json!(failures);
    stats.stop.open();
    for t in tasks {
        t.abort();
    }
    Ok(report)
}

/// Publishes the run's events and counts what arrived where.
async fn deliveries(target: Arc<Target>, args: Arc<RunArgs>, stats: &Stats, report: &mut serde_json::Value) {
    let cpu0 = procstat::cpu_seconds(&args.pids);
    // The load generator's own CPU, to show how much of the machine the
    // measured server had.
    let me = [std::process::id()];
    let client_cpu0 = procstat::cpu_seconds(&me);
    let t0 = Instant::now();
    let published = publish::publish(target, args.clone()).await;
    // Slow consumers read again now; those cut meanwhile resume.
    stats.published.open();
    let expected = expected(&args, stats);
    // Wait for deliveries to settle.
    let mut last = stats.delivered.load(Ordering::Relaxed);
    let mut quiet = Instant::now();
    while stats.delivered.load(Ordering::Relaxed) < expected && quiet.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stats.delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet = Instant::now();
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = procstat::cpu_seconds(&args.pids) - cpu0;
    let client_cpu = procstat::cpu_seconds(&me) - client_cpu0;
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let chunks = stats.chunks.load(Ordering::Relaxed);
    let mut merged = histogram();
    for h in &stats.latency {
        let _ = merged.add(&*h.lock());
    }
    let to = publish::addressee(args.scenario, 0, args.streams, args.tenants);
    report["events"] = json!(args.events);
    report["rate"] = json!(args.rate);
    report["publisher"] = json!(format!("{:?}", args.publisher).to_lowercase());
    report["publishers"] = json!(if args.publisher == PublisherMode::Wait {
        1
    } else {
        args.publishers.max(1)
    });
    report["payload_bytes"] = json!(tally::payload(0, now_ns(), to, args.payload).len());
    report["publish_secs"] = json!(published.secs);
    report["publishes_per_sec"] = json!(args.events as f64 / published.secs);
    report["publish_failed"] = json!(published.failed);
    report["publish_latency"] = percentiles(&published.latency);
    report["expected"] = json!(expected);
    // Only first arrivals of events addressed to the stream count:
    // `extra` and `misdelivered` are reported apart, never as deliveries,
    // so every delivery is owed and `missing` is exact.
    report["delivered"] = json!(delivered);
    report["missing"] = json!(expected.saturating_sub(delivered));
    report["chunks"] = json!(chunks);
    report["coalesced"] = json!(stats.coalesced.load(Ordering::Relaxed));
    report["events_per_chunk"] = json!(if chunks > 0 {
        delivered as f64 / chunks as f64
    } else {
        0.0
    });
    report["resumed"] = json!(stats.resumed.load(Ordering::Relaxed));
    report["latency"] = percentiles(&merged);
    report["stream_open"] = percentiles(&stats.open_latency.lock());
    report["deliveries_per_sec"] = json!(delivered as f64 / elapsed);
    report["server_cpu_secs"] = json!(cpu);
    report["client_cpu_secs"] = json!(client_cpu);
    report["window_secs"] = json!(elapsed);
    report["cpu_us_per_delivery"] = json!(if delivered > 0 {
        cpu * 1e6 / delivered as f64
    } else {
        0.0
    });
    report["cpu_us_per_event"] = json!(cpu * 1e6 / args.events.max(1) as f64);
}

/// Deliveries owed: each event to every stream that opened (broadcast),
/// to its account's stream (per-user) or to its tenant's open streams
/// (tenants); in slow and churn every stream is owed every event, across
/// its reconnections.
fn expected(args: &RunArgs, stats: &Stats) -> u64 {
    let connected = |i: usize| stats.connected.get(i).is_some_and(|c| c.load(Ordering::Relaxed));
    match args.scenario {
        Scenario::Slow | Scenario::Churn => (args.events * args.streams) as u64,
        Scenario::PerUser | Scenario::Tenants => {
            let tenants = args.tenants.max(1);
            let mut per_tenant = vec![0u64; tenants];
            for i in (0..args.streams).filter(|i| connected(*i)) {
                per_tenant[i % tenants] += 1;
            }
            (0..args.events)
                .map(
                    |seq| match publish::addressee(args.scenario, seq, args.streams, args.tenants) {
                        Address::User(u) => u64::from(connected(u)),
                        Address::Tenant(k) => per_tenant.get(k).copied().unwrap_or(0),
                        Address::Public => 0,
                    },
                )
                .sum()
        }
        _ => (args.events * stats.opened.load(Ordering::Relaxed).min(args.streams)) as u64,
    }
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Floor { listen } => {
            if let Err(e) = floor::serve(&listen) {
                eprintln!("floor: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Run(args) => {
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("runtime: {e}");
                    std::process::exit(1);
                }
            };
            let code = match rt.block_on(run(*args)) {
                Ok(report) => {
                    println!("{report}");
                    if let Some(failures) = report["failures"].as_array().filter(|f| !f.is_empty()) {
                        for f in failures {
                            eprintln!("herald-loadgen: FAILED: {}", f.as_str().unwrap_or_default());
                        }
                        FAILED_CHECKS
                    } else {
                        0
                    }
                }
                Err(e) => {
                    eprintln!("herald-loadgen: {e}");
                    1
                }
            };
            rt.shutdown_timeout(Duration::from_millis(200));
            std::process::exit(code);
        }
    }
}
