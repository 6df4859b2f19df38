#!/usr/bin/env bash
# Two Herald builds side by side under the same load, alternating, in one
# run: did a change cost anything? Both serve bench/herald-bench.toml (JWT
# per stream, audiences, fsync = "always"); this tree's load generator
# drives both. Prints one JSON line per run (see herald-loadgen).
#
#   bash bench/versus.sh OLD_HERALD_BINARY [NEW_HERALD_BINARY] [ROUNDS]
#
# e.g. build the previous commit in a worktree
#   git worktree add /tmp/base HEAD~1 && (cd /tmp/base && cargo build --release -p herald)
#   bash bench/versus.sh /tmp/base/target/release/herald
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?the baseline herald binary}
NEW=${2:-$PWD/target/release/herald}
ROUNDS=${3:-2}
cargo build --release -q -p herald-loadgen
[ -n "${2:-}" ] || cargo build --release -q -p herald
LG=$PWD/target/release/herald-loadgen
SECRET=bench-secret-bench-secret-bench-secret
URL=http://127.0.0.1:18100
run() { # label scenario streams events rate [extra...]
  local label=$1 scenario=$2 n=$3 ev=$4 rate=$5; shift 5
  "$LG" run --label "$label" --target herald --url "$URL" --secret "$SECRET" --pids "$PID" \
    --scenario "$scenario" --streams "$n" --events "$ev" --rate "$rate" "$@"
  sleep 1
}
for round in $(seq 1 "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    rm -rf /tmp/herald-bench && mkdir -p /tmp/herald-bench
    HERALD_LOG=warn "$bin" serve --config bench/herald-bench.toml >/tmp/herald-bench/out.log 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done
    run "$which broadcast 2000x100/s" broadcast 2000 200 100
    run "$which per-user 1000" per-user 1000 200 100
    run "$which publish 64 publishers" broadcast 1 50000 0 --publishers 64
    kill "$PID"; wait "$PID" 2>/dev/null || true
  done
done
