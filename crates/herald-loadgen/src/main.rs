//! `herald-loadgen`: opens N SSE streams against Herald or a peer,
//! publishes M events at rate R with a send timestamp inside each payload,
//! and reports what arrived, how late, and what the server spent.
//!
//! ```text
//! herald-loadgen floor --listen 127.0.0.1:18090
//! herald-loadgen run --target herald --url http://127.0.0.1:8080 --secret S \
//!     --streams 10000 --events 200 --rate 100 --pids $(pgrep -x herald)
//! ```
#![forbid(unsafe_code)]

mod client;
mod floor;
mod procstat;
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
use target::{Address, Target};

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
    /// Serve the floor: one plain write per subscriber per event.
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
    /// Each event addressed to one account among all streams.
    PerUser,
    /// Streams spread over tenants; each event to one tenant.
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
    /// Extra payload bytes per event.
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
    delivered: AtomicU64,
    latency: Vec<Mutex<Histogram<u64>>>,
    revoked_at: Vec<AtomicU64>,
    /// Opens when the run ends; every reading stream waits on it, so
    /// readers need no timer of their own while they wait for frames.
    stop: Latch,
    /// Events that arrived twice.
    duplicates: AtomicU64,
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

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

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
            latency: (0..16).map(|_| Mutex::new(histogram())).collect(),
            revoked_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stop: Latch::default(),
            duplicates: AtomicU64::new(0),
            resumed: AtomicUsize::new(0),
            settled: AtomicUsize::new(0),
            published: Latch::default(),
            open_latency: Mutex::new(histogram()),
        }
    }

    /// Scans SSE bytes for `data:` lines carrying `<seq> <send_ns>`, `id:`
    /// lines and `event: revoked`. `carry` holds an incomplete last line.
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

    /// Scans whole lines.
    fn scan_lines(&self, i: usize, seen: &mut Seen, lines: &[u8]) {
        let now = now_ns();
        let mut shard = None;
        let number = |s: Option<&[u8]>| {
            s.and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<u64>().ok())
        };
        for line in lines.split(|b| *b == b'\n') {
            if let Some(rest) = line.strip_prefix(b"data: ") {
                let mut parts = rest.split(|b| *b == b' ');
                let seq = number(parts.next());
                let (Some(seq), Some(sent)) = (seq, number(parts.next())) else {
                    continue;
                };
                if let Some(got) = &mut seen.got {
                    // Concurrent publishers may be sequenced in another
                    // order than they were numbered, so each event is
                    // checked off rather than expected in turn.
                    let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                    match got.get_mut(word) {
                        Some(w) if *w & bit != 0 => {
                            self.duplicates.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Some(w) => *w |= bit,
                        None => continue,
                    }
                    seen.count += 1;
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if seen.timed {
                    let us = now.saturating_sub(sent) / 1000;
                    let h = shard.get_or_insert_with(|| self.latency[i % 16].lock());
                    let _ = h.record(us.max(1));
                }
            } else if let Some(id) = line.strip_prefix(b"id: ") {
                seen.last_id = Some(String::from_utf8_lossy(id).into_owned());
            } else if line == b"event: revoked" {
                self.revoked_at[i].store(now, Ordering::Release);
            }
        }
        drop(shard);
    }
}

/// What one stream has received, across its reconnections.
struct Seen {
    /// The last `id:` line, sent back as `Last-Event-ID`.
    last_id: Option<String>,
    /// When every event is owed to this stream: one bit per event, set
    /// when it arrives (a second arrival is a duplicate).
    got: Option<Vec<u64>>,
    /// Distinct events received.
    count: u64,
    /// Whether its deliveries count toward the latency figures (not for a
    /// consumer that stopped reading on purpose).
    timed: bool,
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
    let tenants = if args.scenario == Scenario::Tenants {
        args.tenants
    } else {
        0
    };
    let resumes = slow || churn;
    let owes_all = matches!(args.scenario, Scenario::Broadcast | Scenario::Slow | Scenario::Churn);
    let mut seen = Seen {
        last_id: None,
        got: owes_all.then(|| vec![0u64; args.events.div_ceil(64)]),
        count: 0,
        timed: !slow,
    };
    let subscribe = target.subscribe(i, "bench", tenants);
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
        if !(churn || (slow && seen.count < owed)) {
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

    let cpu0 = procstat::cpu_seconds(&args.pids);
    // The load generator's own CPU, to show how much of the machine the
    // measured server had.
    let me = [std::process::id()];
    let client_cpu0 = procstat::cpu_seconds(&me);
    let t0 = Instant::now();
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

    if args.scenario == Scenario::Revocation {
        let mut lat = histogram();
        let mut answered = histogram();
        let mut conn = None;
        for k in 0..args.revocations.min(opened) {
            let i = k * (n / args.revocations.max(1)).max(1) % n;
            let Some(req) = target.revoke(i) else {
                return Err("revocation needs --target herald".into());
            };
            if conn.is_none() {
                conn = Some(Conn::open(&req.url, None, false).await?);
            }
            let c = conn.as_mut().ok_or("no connection")?;
            let sent = now_ns();
            let resp = c.send(&req).await?;
            let _ = resp.into_body().collect().await;
            let _ = answered.record(((now_ns() - sent) / 1000).max(1));
            let wait = Instant::now();
            while stats.revoked_at[i].load(Ordering::Acquire) == 0 && wait.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let at = stats.revoked_at[i].load(Ordering::Acquire);
            if at > 0 {
                let _ = lat.record((at.saturating_sub(sent) / 1000).max(1));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        report["revoke_to_close"] = percentiles(&lat);
        report["revoke_answered"] = percentiles(&answered);
    } else {
        // Publish at the requested rate through a few keep-alive connections.
        let (tx, rx) = tokio::sync::mpsc::channel::<usize>(args.events.max(1));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let publish_lat = Arc::new(Mutex::new(histogram()));
        let publish_failed = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..args.publishers.max(1) {
            let (rx, t, a, pl, pf) = (
                rx.clone(),
                target.clone(),
                args.clone(),
                publish_lat.clone(),
                publish_failed.clone(),
            );
            workers.push(tokio::spawn(async move {
                let mut conn: Option<Conn> = None;
                let pad = "x".repeat(a.payload);
                loop {
                    let Some(seq) = rx.lock().await.recv().await else {
                        return;
                    };
                    let to = match a.scenario {
                        Scenario::PerUser => Address::User(rand::random::<u64>() as usize % a.streams.max(1)),
                        Scenario::Tenants => Address::Tenant(seq % a.tenants.max(1)),
                        _ => Address::Public,
                    };
                    let sent = now_ns();
                    let req = t.publish("bench", &format!("{seq} {sent} {pad}"), &to);
                    if conn.is_none() {
                        conn = Conn::open(&req.url, None, false).await.ok();
                    }
                    let ok = match conn.as_mut() {
                        Some(c) => match c.send(&req).await {
                            Ok(r) => {
                                let good = r.status().is_success();
                                let _ = r.into_body().collect().await;
                                good
                            }
                            Err(_) => {
                                conn = None;
                                false
                            }
                        },
                        None => false,
                    };
                    if ok {
                        let _ = pl.lock().record(((now_ns() - sent) / 1000).max(1));
                    } else {
                        pf.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.001)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for seq in 0..args.events {
            if args.rate > 0.0 {
                tick.tick().await;
            }
            let _ = tx.send(seq).await;
        }
        drop(tx);
        for w in workers {
            let _ = w.await;
        }
        let publish_secs = t0.elapsed().as_secs_f64();
        // Slow consumers read again now; those cut meanwhile resume.
        stats.published.open();
        let expected = match args.scenario {
            Scenario::PerUser => args.events as u64,
            Scenario::Tenants => (args.events * opened / args.tenants.max(1)) as u64,
            // Every stream is owed every event, across its reconnections.
            Scenario::Slow | Scenario::Churn => (args.events * n) as u64,
            _ => (args.events * opened) as u64,
        };
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
        let mut merged = histogram();
        for h in &stats.latency {
            let _ = merged.add(&*h.lock());
        }
        report["events"] = json!(args.events);
        report["rate"] = json!(args.rate);
        report["publish_secs"] = json!(publish_secs);
        report["publishes_per_sec"] = json!(args.events as f64 / publish_secs);
        report["publish_failed"] = json!(publish_failed.load(Ordering::Relaxed));
        report["publish_latency"] = percentiles(&publish_lat.lock());
        report["expected"] = json!(expected);
        report["delivered"] = json!(delivered);
        // Every event owed and not received (scenarios where each stream
        // is owed every event; deliveries count each event once).
        report["missing"] = json!(expected.saturating_sub(delivered));
        report["duplicates"] = json!(stats.duplicates.load(Ordering::Relaxed));
        report["resumed"] = json!(stats.resumed.load(Ordering::Relaxed));
        report["listen_drops"] = json!(procstat::listen_drops().saturating_sub(drops_before));
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
    stats.stop.open();
    for t in tasks {
        t.abort();
    }
    Ok(report)
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
            match rt.block_on(run(*args)) {
                Ok(report) => println!("{report}"),
                Err(e) => {
                    eprintln!("herald-loadgen: {e}");
                    std::process::exit(1);
                }
            }
            rt.shutdown_timeout(Duration::from_millis(200));
        }
    }
}
