#!/usr/bin/env bash
# Side-by-side benchmark: Herald, the floor, Nchan (and Pushpin) under the
# same load from the same client, in one run. Writes BENCHMARKS.md.
#
#   bash bench/compare.sh            # full run (10,000 streams)
#   QUICK=1 bash bench/compare.sh    # smaller, for a smoke check
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/BENCHMARKS.md}
RAW=$(mktemp -d)/results.jsonl
N=${N:-10000}; EVENTS=${EVENTS:-200}; RATE=${RATE:-100}
if [ -n "${QUICK:-}" ]; then N=1000; EVENTS=50; fi
SECRET=bench-secret-bench-secret-bench-secret

need=()
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || need+=(libnginx-mod-nchan)
command -v pushpin >/dev/null || need+=(pushpin)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p herald -p herald-loadgen
LG=$ROOT/target/release/herald-loadgen

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
mkdir -p /tmp/gripbe /tmp/pushpin/run /tmp/pushpin/log
echo '* 127.0.0.1:18090' >/tmp/pushpin/routes
nginx -c "$ROOT/bench/grip-backend.conf" -p /tmp/gripbe
setsid pushpin --config="$ROOT/bench/pushpin.conf" >/tmp/pushpin/out.log 2>&1 &
sleep 4
PUSHPIN_PIDS=$(pgrep -f "pushpin|condure|zurl|m2adapter" | paste -sd,)

# Herald over TLS for the HTTP/2 run, with a throwaway self-signed
# certificate for 127.0.0.1.
mkdir -p /tmp/herald-h2-tls && rm -rf /tmp/herald-h2 && mkdir -p /tmp/herald-h2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=herald-bench \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -keyout /tmp/herald-h2-tls/key.pem -out /tmp/herald-h2-tls/cert.pem 2>/dev/null

run() { # label target url pids scenario streams events rate [extra...]
  local label=$1 target=$2 url=$3 p=$4 scenario=$5 n=$6 ev=$7 rate=$8; shift 8
  echo "== $label" >&2
  "$LG" run --label "$label" --target "$target" --url "$url" --secret "$SECRET" --pids "$p" \
    --scenario "$scenario" --streams "$n" --events "$ev" --rate "$rate" "$@" >>"$RAW" || echo "{\"label\":\"$label\",\"error\":true}" >>"$RAW"
  sleep 2
}

run "floor broadcast ${N}x${RATE}/s"   floor   http://127.0.0.1:18095 "$FLOOR"      broadcast "$N" "$EVENTS" "$RATE"
run "herald broadcast ${N}x${RATE}/s"  herald  http://127.0.0.1:18100 "$HERALD"     broadcast "$N" "$EVENTS" "$RATE"
run "nchan broadcast ${N}x${RATE}/s"   nchan   http://127.0.0.1:18081 "$NCHAN_PIDS" broadcast "$N" "$EVENTS" "$RATE"
run "mercure broadcast ${N}x${RATE}/s" mercure http://127.0.0.1:18100 "$HERALD"     broadcast "$N" "$EVENTS" "$RATE"
# A smaller scale, to show where each keeps its latency low on this machine.
run "floor broadcast 2000x${RATE}/s"   floor   http://127.0.0.1:18095 "$FLOOR"      broadcast 2000 "$EVENTS" "$RATE"
run "herald broadcast 2000x${RATE}/s"  herald  http://127.0.0.1:18100 "$HERALD"     broadcast 2000 "$EVENTS" "$RATE"
run "nchan broadcast 2000x${RATE}/s"   nchan   http://127.0.0.1:18081 "$NCHAN_PIDS" broadcast 2000 "$EVENTS" "$RATE"
run "pushpin broadcast 1000x${RATE}/s" pushpin http://127.0.0.1:18082 "$PUSHPIN_PIDS" broadcast 1000 "$EVENTS" "$RATE"
run "floor broadcast 1000x1000/s"      floor   http://127.0.0.1:18095 "$FLOOR"      broadcast 1000 2000 1000
run "herald broadcast 1000x1000/s"     herald  http://127.0.0.1:18100 "$HERALD"     broadcast 1000 2000 1000
run "nchan broadcast 1000x1000/s"      nchan   http://127.0.0.1:18081 "$NCHAN_PIDS" broadcast 1000 2000 1000
run "herald per-user 100 streams"      herald  http://127.0.0.1:18100 "$HERALD"     per-user 100 "$EVENTS" "$RATE"
run "herald per-user 15000 streams"   herald  http://127.0.0.1:18100 "$HERALD"     per-user 15000 "$EVENTS" "$RATE"
run "herald tenants ${N}"              herald  http://127.0.0.1:18100 "$HERALD"     tenants "$N" "$EVENTS" "$RATE"
# Slow: enough events, large enough, that the hub cuts the streams that stop
# reading (past `queue_events`), which then resume from history.
run "herald slow 10% of 500"           herald  http://127.0.0.1:18100 "$HERALD"     slow 500 2000 500 --payload 8000
run "herald churn 1000"                herald  http://127.0.0.1:18100 "$HERALD"     churn 1000 "$EVENTS" "$RATE"
run "herald publish 64 publishers"    herald  http://127.0.0.1:18100 "$HERALD"     broadcast 1 50000 0 --publishers 64
run "herald revocation at ${N}"        herald  http://127.0.0.1:18100 "$HERALD"     revocation "$N" 0 1 --revocations 200
kill "$HERALD" 2>/dev/null || true

# HTTP/2: a fresh Herald over TLS, streams multiplexed 250 per connection.
H2N=$(( N * 5 ))
HERALD_LOG=warn "$ROOT/target/release/herald" serve --config "$ROOT/bench/herald-h2.toml" >/tmp/herald-h2/out.log 2>&1 &
HERALD_H2=$!; pids+=("$HERALD_H2")
sleep 2
run "herald h2 ${H2N} streams"          herald  https://127.0.0.1:18110 "$HERALD_H2" broadcast "$H2N" 20 10 \
  --h2 250 --ca /tmp/herald-h2-tls/cert.pem

python3 "$ROOT/bench/report.py" "$RAW" >"$OUT"
echo "wrote $OUT" >&2
