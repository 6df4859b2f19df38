#!/usr/bin/env python3
"""Turns herald-loadgen JSON lines into BENCHMARKS.md: raw figures and the
ratios the design holds Herald to (Herald/floor, Herald/Nchan), all from
one run on one machine."""
import datetime
import json
import os
import platform
import subprocess
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r.get("label", ""): r for r in rows}


def get(r, *path):
    for p in path:
        if r is None:
            return None
        r = r.get(p)
    return r


def fmt(v, digits=2):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def extra(r):
    """Second arrivals of an event on one stream (older results: duplicates)."""
    return r.get("extra", r.get("duplicates"))


def counters(r):
    """missing | extra | misdelivered cells of one run."""
    return f"{fmt(r.get('missing'))} | {fmt(extra(r))} | {fmt(r.get('misdelivered'))}"


def checks(r):
    return "**failed**" if r.get("ok") is False else ("ok" if r.get("ok") else "—")


FLOOR = "floor: one write per stream per event (no coalescing)"


def ratio(a, b):
    if a is None or b in (None, 0):
        return "—"
    return f"{a / b:.2f}×"


cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print("# Benchmarks\n")
print(f"Measured {datetime.date.today().isoformat()} on {os.cpu_count()} cores ({cpu or platform.machine()}), "
      f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, Linux {platform.release()}. "
      "The load generator shares the machine with the server under test. Produced by `bash bench/compare.sh`; "
      "every figure below comes from that one run.\n")
print("Server CPU is user+system time of the server's processes (for Nchan: the nginx master and both workers) "
      "from the first publish until deliveries settle, divided by deliveries. Latency is publish-to-receive, "
      "measured by the client from a timestamp inside each payload. Herald runs with its defaults: JWT "
      "authentication per stream, audience checks on every delivery, the durable store with `fsync = \"always\"`. "
      "RSS per stream is the growth of the server's resident memory while the streams open, before the first "
      "event: for each server's first run (a fresh process) it is the cost of an idle stream; later runs reuse "
      "memory the process already holds and show less.\n")
print(f"**{FLOOR[0].upper() + FLOOR[1:]}.** `herald-loadgen floor` is a plain server whose publishing thread "
      "writes each event to each stream of its channel with one blocking write, without authentication, queues or batching: the physical "
      "reference for what a fan-out costs. Herald, unlike the floor, writes a stream's backlog in one write "
      "when it has fallen behind; that coalescing is measured apart (\"Coalescing under backlog\" below), so a "
      "ratio to the floor can be read knowing how much of it came from batching.\n")
print("Every delivery is checked by the stream that received it. Each event's data names its addressee "
      "(everyone, one account or one tenant) and every stream knows the account and tenant it opened as, so "
      "a delivery counts only when it is addressed to that stream and is the first arrival of that event there. "
      "\"Missing\" counts deliveries owed and never received, \"extra\" second arrivals of an event on one "
      "stream and \"misdelivered\" events that reached a stream they were not addressed to; neither extra nor "
      "misdelivered events count as deliveries or throughput. A run with a misdelivery, or a revocation whose "
      "`event: revoked` did not arrive in time (5 s), fails: the load generator exits non-zero and the report "
      "lists the run as failed.\n")

def goals():
    """The design's goals, each checked against this run's figures."""
    h, f, n = (by.get(f"{t} broadcast 10000x100/s") for t in ("herald", "floor", "nchan"))
    h1k, f1k = by.get("herald broadcast 1000x1000/s"), by.get("floor broadcast 1000x1000/s")
    u100 = by.get("herald per-user 100 streams")
    u10k = by.get("herald per-user 15000 streams") or by.get("herald per-user 10000 streams")
    out = []

    def check(name, value, ok):
        out.append((name, value, "met" if ok else "**not met**"))

    if h and f and n:
        c, cf, cn = h["cpu_us_per_delivery"], f["cpu_us_per_delivery"], n["cpu_us_per_delivery"]
        check("CPU per delivery, 10,000 × 100/s: ≤ 1.25× floor, ≤ 0.65× Nchan",
              f"{c / cf:.2f}× floor, {c / cn:.2f}× Nchan", c <= 1.25 * cf and c <= 0.65 * cn)
        p, pf, pn = get(h, "latency", "p99_ms"), get(f, "latency", "p99_ms"), get(n, "latency", "p99_ms")
        check("p99, 10,000 × 100/s: under 50 ms", f"{p:.0f} ms", p < 50)
        check("p99, 10,000 × 100/s: ≤ 1/3 of Nchan's, ≤ the floor's",
              f"{p / pn:.2f}× Nchan, {p / pf:.2f}× floor", p <= pn / 3 and p <= pf)
        rss = h["rss_per_stream_bytes"]
        check("RSS per idle stream ≤ 4 KiB", f"{rss} B", rss <= 4096)
    if h1k and f1k:
        c, cf = h1k["cpu_us_per_delivery"], f1k["cpu_us_per_delivery"]
        check("CPU per delivery, 1,000 × 1,000/s: below the floor's", f"{c / cf:.2f}× floor", c < cf)
    if u100 and u10k:
        # Cost is the server's CPU per event; the median latency shows the
        # same from the client's side (the tail of 200 events is noise).
        ca, cb = u100["cpu_us_per_event"], u10k["cpu_us_per_event"]
        la, lb = get(u100, "latency", "p50_ms"), get(u10k, "latency", "p50_ms")
        check(f"Per-user event, 100 → {u10k['streams']:,} open streams: cost flat (server CPU per event, p50)",
              f"{ca:.0f} → {cb:.0f} µs, {la:.2f} → {lb:.2f} ms", cb <= 1.5 * ca and lb <= 1.5 * max(la, 1.0))
    owed = [r for r in rows if r.get("target") == "herald" and r.get("missing") is not None and not r.get("error")]
    if owed:
        lost = sum(r["missing"] + (extra(r) or 0) for r in owed)
        check("No Herald event missing or extra (every delivering run, slow and churn with resume)",
              f"{lost} in {len(owed)} runs", lost == 0)
    judged = [r for r in rows if r.get("misdelivered") is not None]
    if judged:
        wrong = sum(r["misdelivered"] for r in judged)
        check("No event delivered to a stream it was not addressed to (every run, every server)",
              f"{wrong} in {len(judged)} runs", wrong == 0)
    rev = [r for r in rows if r.get("scenario") == "revocation" and r.get("revocation_timeouts") is not None]
    if rev:
        late = sum(r["revocation_timeouts"] + r.get("revocations_refused", 0) for r in rev)
        check("Every revoked stream sees `event: revoked` in time", f"{late} late or refused", late == 0)
    return out


met = goals()
if met:
    print("## Goals\n")
    print("| goal | this run | |")
    print("|---|---|---|")
    for name, value, verdict in met:
        print(f"| {name} | {value} | {verdict} |")
    small = {t: by.get(f"{t} broadcast 2000x100/s") for t in ("herald", "floor", "nchan")}
    if all(small.values()):
        p = {t: get(r, "latency", "p99_ms") for t, r in small.items()}
        print(f"\nAt 2,000 streams × 100/s Herald's p99 is {p['herald']:.0f} ms (floor {p['floor']:.0f} ms, "
              f"Nchan {p['nchan']:.0f} ms). At 10,000 × 100/s every server here is limited by the machine itself: "
              "see \"How busy the machine was\" below.")
    print()

broken = [r for r in rows if r.get("ok") is False]
if broken:
    print("## Runs that failed their checks\n")
    for r in broken:
        print(f"* {r['label']}: " + "; ".join(r.get("failures") or ["failed"]))
    print()

print("## Ratios\n")
print(f"Broadcast, every stream on one topic. {FLOOR[0].upper() + FLOOR[1:]}.\n")
print("| measure | Herald | floor | Nchan | Herald / floor | Herald / Nchan |")
print("|---|---|---|---|---|---|")
for scale in [k for k in by if k.startswith("herald broadcast")]:
    suffix = scale[len("herald broadcast"):]
    h, f, n = by.get(scale), by.get("floor broadcast" + suffix), by.get("nchan broadcast" + suffix)
    for name, path in [("CPU µs per delivery", ("cpu_us_per_delivery",)),
                       ("p50 latency ms", ("latency", "p50_ms")),
                       ("p99 latency ms", ("latency", "p99_ms")),
                       ("RSS bytes per stream", ("rss_per_stream_bytes",))]:
        hv, fv, nv = get(h, *path), get(f, *path), get(n, *path)
        print(f"| {name},{suffix} | {fmt(hv)} | {fmt(fv)} | {fmt(nv)} | {ratio(hv, fv)} | {ratio(hv, nv)} |")
    cells = [f"{fmt(extra(r))} / {fmt(r.get('misdelivered'))}" if r else "—" for r in (h, f, n)]
    print(f"| extra / misdelivered,{suffix} | {' | '.join(cells)} | | |")

loaded = [r for r in rows if r.get("scenario") == "broadcast" and r.get("client_cpu_secs") is not None
          and r.get("window_secs") and not r.get("h2_streams_per_connection")]
if loaded:
    cores = os.cpu_count() or 1
    print("\n## How busy the machine was\n")
    print(f"The server and the load generator share {cores} cores. CPU seconds each used over the measured "
          "window (first publish until deliveries settle), and how many cores that kept busy. Where the two "
          f"together approach {cores}, events wait for a core and latency reflects the machine, not the server.\n")
    print("| run | server CPU s | load generator CPU s | window s | cores busy |")
    print("|---|---|---|---|---|")
    for r in loaded:
        busy = (r["server_cpu_secs"] + r["client_cpu_secs"]) / r["window_secs"]
        print(f"| {r['label']} | {fmt(r['server_cpu_secs'])} | {fmt(r['client_cpu_secs'])} | {fmt(r['window_secs'])} | "
              f"{busy:.2f} of {cores} |")

print("\n## Every run\n")
print("| run | opened/failed | delivered/expected | missing | extra | misdelivered | resumed | p50 ms | p90 ms | p99 ms | max ms | deliveries/s | publish p99 ms | CPU µs/delivery | CPU µs/event | RSS B/stream | checks |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r.get("scenario") == "revocation" or r.get("error") or r.get("label", "").startswith("herald publish"):
        continue
    print(f"| {r['label']} | {r['opened']}/{r['failed']} | {r.get('delivered')}/{r.get('expected')} | {counters(r)} | {r.get('resumed', '—')} | "
          f"{fmt(get(r,'latency','p50_ms'))} | {fmt(get(r,'latency','p90_ms'))} | {fmt(get(r,'latency','p99_ms'))} | "
          f"{fmt(get(r,'latency','max_ms'))} | {fmt(r.get('deliveries_per_sec'), 0)} | {fmt(get(r,'publish_latency','p99_ms'))} | "
          f"{fmt(r.get('cpu_us_per_delivery'))} | {fmt(r.get('cpu_us_per_event'), 0)} | {r.get('rss_per_stream_bytes')} | {checks(r)} |")

print("\nEach stream checks every event off by its number and its addressee: in broadcast, slow and churn every "
      "stream is owed every event; in per-user the stream of the event's account; in tenants every open stream of "
      "the event's tenant. \"Missing\" counts deliveries owed and never received, \"extra\" events received twice "
      "on one stream, \"misdelivered\" events received by a stream they were not addressed to (on Nchan and the "
      "floor, which have no audiences, each account or tenant is a channel). \"Resumed\" counts reconnections "
      "that sent `Last-Event-ID`.")
if any(r.get("scenario") == "slow" for r in rows):
    print("\nSlow: every tenth stream stops reading while events flow; the others must get everything live (latency "
          "is theirs). When publishing ends the slow streams read again: those the hub cut for falling behind "
          "(`event: overflow`) reconnect with `Last-Event-ID` and replay the rest from history.")
if any(r.get("scenario") == "churn" for r in rows):
    print("\nChurn: once a stream has received its first event it reconnects every 0.5–2 s with `Last-Event-ID` "
          "(\"opened\" counts first connections); latency includes the replay after each reconnection.")
drops = [r for r in rows if r.get("listen_drops")]
if drops:
    print("\nRuns during which the kernel refused connections because an accept queue was full (each refused client "
          "waits a second before retrying): " + ", ".join(f"{r['label']} ({r['listen_drops']})" for r in drops) + ".")
short = [r for r in rows if r.get("scenario") != "revocation" and not r.get("error")
         and r.get("expected") is not None and r.get("delivered", 0) < r["expected"]]
if short:
    print("\nRuns that delivered fewer events than their streams were owed: " +
          ", ".join(f"{r['label']} ({r['delivered']} of {r['expected']})" for r in short) + ".")

backend = [r for r in rows if r.get("publisher") == "wait" and not r.get("error")]
if backend:
    print("\n## A backend publishing to tenants\n")
    print("The regime most deployments live in: every stream with its own HS256 JWT in one tenant, each event "
          "addressed to one tenant, published by one publisher that waits for each answer before it sends the "
          "next (as a backend's request handler does), Herald with `fsync = \"always\"` (`bench/herald-fsync.toml`: "
          "each answer means the event is fsynced and handed to dispatch, never after the streams' writes). On Nchan and the floor "
          f"each tenant is a channel; the {FLOOR}. Each server is a fresh process for its first run here, so RSS "
          "per stream is what an idle stream costs. The publish answer is from sending the request to the end "
          "of its answer; delivery latency from sending the request to the event's arrival.\n")
    print("| run | streams open | tenants | delivered/expected | missing | extra | misdelivered | CPU µs/delivery | delivery p99 ms | publish answer p50 ms | publish answer p99 ms | RSS B/idle stream | checks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in backend:
        print(f"| {r['label']} | {r['opened']} | {fmt(r.get('tenants'))} | {r.get('delivered')}/{r.get('expected')} | {counters(r)} | "
              f"{fmt(r.get('cpu_us_per_delivery'))} | {fmt(get(r,'latency','p99_ms'))} | {fmt(get(r,'publish_latency','p50_ms'))} | "
              f"{fmt(get(r,'publish_latency','p99_ms'))} | {r.get('rss_per_stream_bytes')} | {checks(r)} |")
    hb = sorted((r for r in backend if r.get("target") == "herald"), key=lambda r: r["streams"])
    if len(hb) >= 2:
        few, many = hb[0], hb[-1]
        print(f"\nHerald's publish answer with {few['opened']:,} streams open (tenants: {few.get('tenants')}) and "
              f"with {many['opened']:,} (tenants: {many.get('tenants')}), each event reaching about "
              f"{few['expected'] // max(few['events'], 1):,} and {many['expected'] // max(many['events'], 1):,} streams: "
              f"p50 {fmt(get(few,'publish_latency','p50_ms'))} → {fmt(get(many,'publish_latency','p50_ms'))} ms, "
              f"p99 {fmt(get(few,'publish_latency','p99_ms'))} → {fmt(get(many,'publish_latency','p99_ms'))} ms.")

pub = [r for r in rows if r.get("label", "").startswith("herald publish")]
if pub:
    print("\n## Publish throughput\n")
    print("Single-event `POST /v1/publish` requests, flat out, from concurrent keep-alive connections; "
          "every answer means the event is fsynced (`fsync = \"always\"`, group commit).\n")
    print("| run | events | publishes/s | p50 ms | p99 ms | max ms | server CPU µs/publish | missing | extra | misdelivered |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in pub:
        print(f"| {r['label']} | {r['events']} | {fmt(r.get('publishes_per_sec'), 0)} | {fmt(get(r,'publish_latency','p50_ms'))} | "
              f"{fmt(get(r,'publish_latency','p99_ms'))} | {fmt(get(r,'publish_latency','max_ms'))} | {fmt(r.get('cpu_us_per_event'), 1)} | "
              f"{counters(r)} |")

merged = [r for r in rows if r.get("chunks") and not r.get("error")]
if merged:
    print("\n## Coalescing under backlog\n")
    print(f"The {FLOOR}. Herald writes what a stream has queued in one write: one event when the stream keeps "
          "up, a backlog at once when it has fallen behind, which saves a system call and a wakeup per event and "
          "so lowers its CPU per delivery and, under load, its latency. Measured by the client: streams are "
          "HTTP/1.1 chunked (the floor's too, one chunk per event), a read never spans two chunks, so events "
          "read together were written together. \"Reads\" are reads that delivered events (a chunk split "
          "across reads counts twice, so events per read is a lower bound of events per write); \"coalesced\" "
          "is the share of deliveries that arrived with other events.\n")
    print("| run | delivered | reads | events per read | coalesced |")
    print("|---|---|---|---|---|")
    for r in merged:
        share = 100.0 * r.get("coalesced", 0) / r["delivered"] if r.get("delivered") else 0.0
        print(f"| {r['label']} | {r.get('delivered')} | {r['chunks']} | {fmt(r.get('events_per_chunk'))} | {share:.1f}% |")

rev = [r for r in rows if r.get("scenario") == "revocation"]
if rev:
    print("\n## Revocation to close\n")
    print("Time from sending `POST /v1/revocations` (type `logout`) to the revoked stream receiving `event: revoked`, "
          "one revocation at a time, with all other streams open. A revoked stream that has not received it within "
          "the timeout is a timeout, not a missing sample, and fails the run; so does a refused revocation.\n")
    print("| run | streams open | revocations | p50 ms | p90 ms | p99 ms | max ms | answered p99 ms | timeouts | refused | extra | misdelivered | checks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rev:
        c = r.get("revoke_to_close", {})
        limit = r.get("revocation_timeout_secs")
        timeouts = "—" if r.get("revocation_timeouts") is None else f"{r['revocation_timeouts']} ({fmt(limit, 0)} s limit)"
        print(f"| {r['label']} | {r['opened']} | {fmt(r.get('revocations'))} | {fmt(c.get('p50_ms'))} | {fmt(c.get('p90_ms'))} | "
              f"{fmt(c.get('p99_ms'))} | {fmt(c.get('max_ms'))} | {fmt(get(r,'revoke_answered','p99_ms'))} | {timeouts} | "
              f"{fmt(r.get('revocations_refused'))} | {fmt(extra(r))} | {fmt(r.get('misdelivered'))} | {checks(r)} |")
h2 = [r for r in rows if r.get("h2_streams_per_connection")]
if h2:
    print("\n## Past one process's file descriptors: HTTP/2\n")
    print("An HTTP/1.1 stream costs the hub one file descriptor, and one process may hold 20,000 here. Browsers "
          "multiplex EventSource streams over one HTTP/2 connection (h2 over TLS), so one process holds many more. "
          "Herald over TLS (`bench/herald-h2.toml`), every stream with its own credential; RSS is measured once "
          "all streams are open, before the first event, in a fresh process.\n")
    print("| run | streams open | connections | streams per connection | server fds | RSS B/stream | delivered/expected | missing | extra | misdelivered | CPU µs/delivery | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in h2:
        print(f"| {r['label']} | {r['opened']} | {r.get('connections')} | {r['h2_streams_per_connection']} | "
              f"{r.get('server_fds')} | {r.get('rss_per_stream_bytes')} | {r.get('delivered')}/{r.get('expected')} | "
              f"{counters(r)} | {fmt(r.get('cpu_us_per_delivery'))} | {fmt(get(r,'latency','p99_ms'))} |")

separate = os.path.join(os.path.dirname(os.path.abspath(__file__)), "separate.md")
if os.path.exists(separate):
    print()
    print(open(separate).read().rstrip())

failed = [r for r in rows if r.get("error")]
if failed:
    print("\nRuns that did not complete: " + ", ".join(r["label"] for r in failed))
