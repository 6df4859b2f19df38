#!/usr/bin/env bash
# What cluster-wide caps cost a stream open: the same cluster node (one
# nats-server, two Herald nodes) with `cluster_caps` on and off, alternating,
# streams opened by herald-loadgen (per-user scenario: one JWT per account,
# so every open takes a place under its own account key).
#
#   bash bench/cluster-caps.sh [streams] [rounds] [opens at once]
#
# Prints one line per run: caps, stream-open p50/p90/p99 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=${1:-2000}
ROUNDS=${2:-2}
CONCURRENCY=${3:-1}
cargo build --release -q -p herald -p herald-loadgen
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
nats-server -js -a 127.0.0.1 -p 14333 -sd "$work/js" >/dev/null 2>&1 &
sleep 1
SECRET="bench-secret-bench-secret-bench-secret"
run() {
  local caps=$1 round=$2
  local port=$((18300 + round * 4 + ${#caps})) stream="CAPS${caps}${round}"
  for n in 0 1; do
    mkdir -p "$work/n$n-$stream"
    cat > "$work/n$n-$stream/herald.toml" <<TOML
listen = "127.0.0.1:$((port + n))"
data_dir = "$work/n$n-$stream"
jwt_secret = "$SECRET"
cluster = "nats://127.0.0.1:14333"
cluster_stream = "$stream"
cluster_caps = $caps
[limits]
per_ip = 100000
hub_total = 19000
TOML
    HERALD_LOG=warn ./target/release/herald serve --config "$work/n$n-$stream/herald.toml" >"$work/n$n-$stream/log" 2>&1 &
  done
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  ./target/release/herald-loadgen run --target herald --url "http://127.0.0.1:$port" --secret "$SECRET" \
    --scenario per-user --streams "$STREAMS" --events 10 --rate 10 --connect-concurrency "$CONCURRENCY" --label "caps=$caps" >"$work/report.json"
  python3 - "$caps" "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
o = r["stream_open"]
print(f"cluster_caps={sys.argv[1]:5} streams={o['count']:5} open p50={o['p50_ms']:.2f} ms p90={o['p90_ms']:.2f} ms p99={o['p99_ms']:.2f} ms max={o['max_ms']:.2f} ms")
PY
  kill $(jobs -p | tail -2) 2>/dev/null || true
  wait $(jobs -p | tail -2) 2>/dev/null || true
}
for round in $(seq "$ROUNDS"); do
  run false "$round"
  run true "$round"
done
