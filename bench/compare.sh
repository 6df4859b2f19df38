#!/usr/bin/env bash
# Side-by-side benchmark: Herald, the floor (one write per stream per
# event, no coalescing), Nchan (and Pushpin) under the same load from the
# same client, in one run. Writes BENCHMARKS.md.
#
#   bash bench/compare.sh                              # full run (10,000 streams)
#   QUICK=1 OUT=/tmp/b.md bash bench/compare.sh        # every run, small (200 streams, 20 events): a smoke check
#   SKIP_BUILD=1 ...                                   # use the release binaries already in target/release
#
# Every run's JSON goes to results.jsonl (its path is printed). A run that
# fails its checks (a delivery to a stream it was not addressed to, a
# revocation not seen in time) still reports, with "ok": false; the report
# lists it and this script exits 1 once BENCHMARKS.md is written.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/BENCHMARKS.md}
RAW=$(mktemp -d)/results.jsonl
N=${N:-10000}; EVENTS=${EVENTS:-200}; RATE=${RATE:-100}
# Sizes of the runs that do not scale with N: smaller scales, the per-user
# spread, slow and churn, publish throughput, revocations.
S2=2000; S1=1000; FAST_EVENTS=2000; USERS=15000; USER_EVENTS=1000; SLOW=500; SLOW_EVENTS=2000; CHURN=1000; PUBLISH=50000; REVOKE=200
# The backend runs: streams each with its own JWT in one of BACKEND_TENANTS
# tenants (default one: every event reaches every stream), BACKEND_EVENTS
# events at BACKEND_RATE/s from one publisher that waits for each answer;
# then the same with BACKEND_FEW streams in one tenant, for the publish
# answer at few subscribers. (BACKEND_TENANTS=100 gives each event the same
# fan-out as the BACKEND_FEW run: what open but idle streams cost.)
BACKEND_N=${BACKEND_N:-10000}; BACKEND_TENANTS=${BACKEND_TENANTS:-1}; BACKEND_EVENTS=${BACKEND_EVENTS:-100}
BACKEND_RATE=${BACKEND_RATE:-10}; BACKEND_FEW=${BACKEND_FEW:-100}
if [ -n "${QUICK:-}" ]; then
  N=200; EVENTS=20; S2=400; S1=200; FAST_EVENTS=200; USERS=1000; USER_EVENTS=20; SLOW=100; SLOW_EVENTS=1200; CHURN=200; PUBLISH=5000; REVOKE=20
  BACKEND_N=200; BACKEND_TENANTS=10; BACKEND_EVENTS=20; BACKEND_FEW=20
fi
SECRET=bench-secret-bench-secret-bench-secret

need=()
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || need+=(libnginx-mod-nchan)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Pushpin is measured when it installs; its run is left out otherwise.
command -v pushpin >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pushpin >/dev/null 2>&1 || true
PUSHPIN=$(command -v pushpin || true)
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p herald -p herald-loadgen
LG=$ROOT/target/release/herald-loadgen
echo "results: $RAW" >&2

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f /tmp/nchan/nginx.pid ] && kill "$(cat /tmp/nchan/nginx.pid)" 2>/dev/null || true
  [ -f /tmp/gripbe/nginx.pid ] && kill "$(cat /tmp/gripbe/nginx.pid)" 2>/dev/null || true
  pkill -f "pushpin --config=$ROOT/bench/pushpin.conf" 2>/dev/null || true
}
trap cleanup EXIT

# Herald
rm -rf /tmp/herald-bench && mkdir -p /tmp/herald-bench
HERALD_LOG=warn "$ROOT/target/release/herald" serve --config "$ROOT/bench/herald-bench.toml" >/tmp/herald-bench/out.log 2>&1 &
HERALD=$!; pids+=("$HERALD")
# The floor
"$LG" floor --listen 127.0.0.1:18095 >/dev/null 2>&1 &
FLOOR=$!; pids+=("$FLOOR")
# Nchan
mkdir -p /tmp/nchan && nginx -c "$ROOT/bench/nchan.conf" -p /tmp/nchan
sleep 1
# The master and its workers all count.
NCHAN_MASTER=$(cat /tmp/nchan/nginx.pid)
NCHAN_PIDS="$NCHAN_MASTER,$(pgrep -P "$NCHAN_MASTER" | paste -sd,)"

# Pushpin (GRIP proxy) in front of a tiny nginx backend that holds every
# request as a stream on channel $arg_id.
if [ -n "$PUSHPIN" ]; then
  mkdir -p /tmp/gripbe /tmp/pushpin/run /tmp/pushpin/log
  echo '* 127.0.0.1:18090' >/tmp/pushpin/routes
  nginx -c "$ROOT/bench/grip-backend.conf" -p /tmp/gripbe
  setsid pushpin --config="$ROOT/bench/pushpin.conf" >/tmp/pushpin/out.log 2>&1 &
  sleep 4
  PUSHPIN_PIDS=$(pgrep -f "pushpin|condure|zurl|m2adapter" | paste -sd,)
fi

# Herald over TLS for the HTTP/2 run, with a throwaway self-signed
# certificate for 127.0.0.1.
mkdir -p /tmp/herald-h2-tls && rm -rf /tmp/herald-h2 && mkdir -p /tmp/herald-h2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=herald-bench \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -keyout /tmp/herald-h2-tls/key.pem -out /tmp/herald-h2-tls/cert.pem 2>/dev/null

failed=()
run() { # label target url pids scenario streams events rate [extra...]
  local label=$1 target=$2 url=$3 p=$4 scenario=$5 n=$6 ev=$7 rate=$8; shift 8
  echo "== $label" >&2
  local out rc=0
  out=$("$LG" run --label "$label" --target "$target" --url "$url" --secret "$SECRET" --pids "$p" \
    --scenario "$scenario" --streams "$n" --events "$ev" --rate "$rate" "$@") || rc=$?
  # Status 2: the run completed and failed its checks; its report says why.
  if [ "$rc" -eq 2 ] || { [ "$rc" -eq 0 ] && [ -n "$out" ]; }; then
    echo "$out" >>"$RAW"
  else
    echo "{\"label\":\"$label\",\"error\":true}" >>"$RAW"
  fi
  [ "$rc" -eq 0 ] || failed+=("$label")
  sleep 2
}

wait_http() { # url: until it answers (a fresh server)
  for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
}

run "floor broadcast ${N}x${RATE}/s"   floor   http://127.0.0.1:18095 "$FLOOR"      broadcast "$N" "$EVENTS" "$RATE"
run "herald broadcast ${N}x${RATE}/s"  herald  http://127.0.0.1:18100 "$HERALD"     broadcast "$N" "$EVENTS" "$RATE"
run "nchan broadcast ${N}x${RATE}/s"   nchan   http://127.0.0.1:18081 "$NCHAN_PIDS" broadcast "$N" "$EVENTS" "$RATE"
run "mercure broadcast ${N}x${RATE}/s" mercure http://127.0.0.1:18100 "$HERALD"     broadcast "$N" "$EVENTS" "$RATE"
# A smaller scale, to show where each keeps its latency low on this machine.
run "floor broadcast ${S2}x${RATE}/s"   floor   http://127.0.0.1:18095 "$FLOOR"      broadcast "$S2" "$EVENTS" "$RATE"
run "herald broadcast ${S2}x${RATE}/s"  herald  http://127.0.0.1:18100 "$HERALD"     broadcast "$S2" "$EVENTS" "$RATE"
run "nchan broadcast ${S2}x${RATE}/s"   nchan   http://127.0.0.1:18081 "$NCHAN_PIDS" broadcast "$S2" "$EVENTS" "$RATE"
[ -z "$PUSHPIN" ] || run "pushpin broadcast ${S1}x${RATE}/s" pushpin http://127.0.0.1:18082 "$PUSHPIN_PIDS" broadcast "$S1" "$EVENTS" "$RATE"
run "floor broadcast ${S1}x1000/s"      floor   http://127.0.0.1:18095 "$FLOOR"      broadcast "$S1" "$FAST_EVENTS" 1000
run "herald broadcast ${S1}x1000/s"     herald  http://127.0.0.1:18100 "$HERALD"     broadcast "$S1" "$FAST_EVENTS" 1000
run "nchan broadcast ${S1}x1000/s"      nchan   http://127.0.0.1:18081 "$NCHAN_PIDS" broadcast "$S1" "$FAST_EVENTS" 1000
# Per-user: long enough (10 s at 100/s) that the hub's CPU, counted in
# 10 ms ticks, is read to a few percent; at 2 s the two rows differed by a
# handful of ticks and the "flat" check judged noise.
run "herald per-user 100 streams"      herald  http://127.0.0.1:18100 "$HERALD"     per-user 100 "$USER_EVENTS" "$RATE"
run "herald per-user ${USERS} streams"  herald  http://127.0.0.1:18100 "$HERALD"     per-user "$USERS" "$USER_EVENTS" "$RATE"
run "herald tenants ${N}"              herald  http://127.0.0.1:18100 "$HERALD"     tenants "$N" "$EVENTS" "$RATE"
# Slow: enough events, large enough, that the hub cuts the streams that stop
# reading (past `queue_events`), which then resume from history.
run "herald slow 10% of ${SLOW}"        herald  http://127.0.0.1:18100 "$HERALD"     slow "$SLOW" "$SLOW_EVENTS" 500 --payload 8000
run "herald churn ${CHURN}"             herald  http://127.0.0.1:18100 "$HERALD"     churn "$CHURN" "$EVENTS" "$RATE"
run "herald publish 64 publishers"    herald  http://127.0.0.1:18100 "$HERALD"     broadcast 1 "$PUBLISH" 0 --publishers 64
run "herald revocation at ${N}"        herald  http://127.0.0.1:18100 "$HERALD"     revocation "$N" 0 1 --revocations "$REVOKE"
kill "$HERALD" 2>/dev/null || true

# HTTP/2: a fresh Herald over TLS, streams multiplexed 250 per connection.
H2N=$(( N * 5 ))
HERALD_LOG=warn "$ROOT/target/release/herald" serve --config "$ROOT/bench/herald-h2.toml" >/tmp/herald-h2/out.log 2>&1 &
HERALD_H2=$!; pids+=("$HERALD_H2")
sleep 2
run "herald h2 ${H2N} streams"          herald  https://127.0.0.1:18110 "$HERALD_H2" broadcast "$H2N" 20 10 \
  --h2 250 --ca /tmp/herald-h2-tls/cert.pem
kill "$HERALD_H2" 2>/dev/null || true

# The backend regime: every stream with its own HS256 JWT in a tenant, each
# event to one tenant, published by one publisher that waits for each
# answer before it sends the next, as a backend's request handler does.
# Each server starts afresh first (Herald with bench/herald-fsync.toml,
# fsync = "always"), so RSS per stream is an idle stream's cost.
rm -rf /tmp/herald-fsync && mkdir -p /tmp/herald-fsync
HERALD_LOG=warn "$ROOT/target/release/herald" serve --config "$ROOT/bench/herald-fsync.toml" >/tmp/herald-fsync/out.log 2>&1 &
HERALD_FS=$!; pids+=("$HERALD_FS")
"$LG" floor --listen 127.0.0.1:18096 >/dev/null 2>&1 &
FLOOR_FRESH=$!; pids+=("$FLOOR_FRESH")
kill "$FLOOR" 2>/dev/null || true
kill "$NCHAN_MASTER" 2>/dev/null || true
for _ in $(seq 1 100); do [ -e /tmp/nchan/nginx.pid ] || break; sleep 0.1; done
nginx -c "$ROOT/bench/nchan.conf" -p /tmp/nchan
# (The floor answers any request other than /sub as a publish: this one
# goes to a channel nobody follows.)
wait_http http://127.0.0.1:18120/healthz; wait_http "http://127.0.0.1:18096/pub?ch=nobody"; sleep 1
NCHAN_MASTER=$(cat /tmp/nchan/nginx.pid)
NCHAN_PIDS="$NCHAN_MASTER,$(pgrep -P "$NCHAN_MASTER" | paste -sd,)"
B="${BACKEND_N} streams, ${BACKEND_TENANTS} tenants, ${BACKEND_RATE}/s, waiting publisher"
backend=(--tenants "$BACKEND_TENANTS" --publisher wait)
run "herald backend $B" herald http://127.0.0.1:18120 "$HERALD_FS"   tenants "$BACKEND_N" "$BACKEND_EVENTS" "$BACKEND_RATE" "${backend[@]}"
run "floor backend $B"  floor  http://127.0.0.1:18096 "$FLOOR_FRESH" tenants "$BACKEND_N" "$BACKEND_EVENTS" "$BACKEND_RATE" "${backend[@]}"
run "nchan backend $B"  nchan  http://127.0.0.1:18081 "$NCHAN_PIDS"  tenants "$BACKEND_N" "$BACKEND_EVENTS" "$BACKEND_RATE" "${backend[@]}"
run "herald backend ${BACKEND_FEW} streams, 1 tenant, ${BACKEND_RATE}/s, waiting publisher" \
  herald http://127.0.0.1:18120 "$HERALD_FS" tenants "$BACKEND_FEW" "$BACKEND_EVENTS" "$BACKEND_RATE" --tenants 1 --publisher wait

python3 "$ROOT/bench/report.py" "$RAW" >"$OUT"
echo "wrote $OUT" >&2
if [ ${#failed[@]} -gt 0 ]; then
  printf 'runs that failed or failed their checks: %s\n' "${failed[*]}" >&2
  exit 1
fi
