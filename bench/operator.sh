#!/usr/bin/env bash
# What the operator endpoints cost on a busy hub, and that the console's
# per-tenant numbers stay bounded however many tenants publishers name.
#   bash bench/operator.sh [streams] [flood_secs]
# Builds the release binary, starts a hub on 127.0.0.1:18941, then:
#   1. bench/ops_cost.py: opens `streams` idle streams (10% in tenant acme,
#      the rest over 99 tenants), times GET /v1/connections (all and
#      limit=1000, what the console asks) and /v1/overview, and publish
#      answers without and with one console polling.
#   2. bench/tenant_flood.py: 4,096 new tenant names a second for
#      `flood_secs`, printing the hub's RSS every 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-10000}
secs=${2:-60}
ulimit -n 20000
cargo build -q --release -p herald --bin herald
dir=$(mktemp -d)
key=hk_operator_bench_0123456789abcdef0123
secret=operator-bench-secret-operator-bench
cat > "$dir/h.toml" <<TOML
listen = "127.0.0.1:18941"
data_dir = "$dir"
jwt_secret = "$secret"
[limits]
per_ip = 100000
per_account = 100000
[[api_keys]]
id = "ops"
hash = "sha256:$(printf %s "$key" | sha256sum | cut -d' ' -f1)"
scopes = ["tokens", "admin", "publish", "revoke"]
TOML
HERALD_LOG=warn target/release/herald serve --config "$dir/h.toml" > "$dir/herald.log" 2>&1 &
hub=$!
trap 'kill $hub 2>/dev/null; rm -rf "$dir"' EXIT
sleep 1
python3 bench/ops_cost.py http://127.0.0.1:18941 "$secret" "$key" "$streams"
echo "hub RSS with $streams streams: $(($(ps -o rss= -p $hub) / 1024)) MiB"
python3 bench/tenant_flood.py http://127.0.0.1:18941 "$key" "$hub" "$secs"
