#!/usr/bin/env bash
# Revocation to close across a cluster: one nats-server (JetStream, file
# storage), two Herald nodes; STREAMS streams open on node A, REVOCATIONS
# `logout` revocations posted one at a time to node B; each sample is the
# time from sending the request to B until the stream on A receives
# `event: revoked`. Prints the load generator's report (JSON) per run.
#
#   bash bench/cluster-revoke.sh [streams] [revocations] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=${1:-10000}
REVOCATIONS=${2:-200}
RUNS=${3:-1}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p herald -p herald-loadgen
ulimit -n 20000 2>/dev/null || true
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
nats-server -js -a 127.0.0.1 -p 14334 -sd "$work/js" >/dev/null 2>&1 &
sleep 1
SECRET="bench-secret-bench-secret-bench-secret"
for run in $(seq "$RUNS"); do
  stream="REVOKE$run"
  pids=()
  for n in 0 1; do
    mkdir -p "$work/n$n-$stream"
    cat > "$work/n$n-$stream/herald.toml" <<TOML
listen = "127.0.0.1:$((18401 + n))"
data_dir = "$work/n$n-$stream"
jwt_secret = "$SECRET"
cluster = "nats://127.0.0.1:14334"
cluster_stream = "$stream"
[limits]
per_ip = 100000
hub_total = 19000
TOML
    HERALD_LOG=warn ./target/release/herald serve --config "$work/n$n-$stream/herald.toml" >"$work/n$n-$stream/log" 2>&1 &
    pids+=($!)
  done
  for port in 18401 18402; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  done
  ./target/release/herald-loadgen run --target herald --url http://127.0.0.1:18401 \
    --revoke-url http://127.0.0.1:18402 --secret "$SECRET" --pids "${pids[0]}" \
    --scenario revocation --streams "$STREAMS" --events 0 --rate 1 --revocations "$REVOCATIONS" \
    --label "revocation on B, $STREAMS streams on A"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
done
