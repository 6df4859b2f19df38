#!/usr/bin/env bash
# Schemathesis against a real hub (docs/openapi.md): starts target/debug/herald
# (or $HERALD_BIN) with a throwaway configuration, mints an admin API key and
# a Mercure token, and runs `schemathesis run` on the hub's own
# /v1/openapi.json. Every response must be a documented status with a body
# and content type matching the document, and never a 5xx. Exits non-zero
# on any failure.
#
#   scripts/schemathesis.sh                 the default run (about two minutes)
#   ST_MAX_EXAMPLES=200 scripts/schemathesis.sh   more cases per operation
#   ST_SEED=1234 scripts/schemathesis.sh    another seed (the default is fixed,
#                                           so a run repeats the last one)
#   ST_ARGS="--include-tag mercure"         extra schemathesis arguments
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${HERALD_BIN:-target/debug/herald}
[ -x "$bin" ] || { echo "no herald binary at $bin (cargo build -p herald --bin herald)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

if ! python3 -c 'import schemathesis, sys; sys.exit(int(schemathesis.__version__.split(".")[0]) != 4)' 2>/dev/null; then
  echo "== installing schemathesis 4 (pip)"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "schemathesis>=4,<5"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/herald-schemathesis.XXXXXX")
hub_pid=""
cleanup() {
  if [ -n "$hub_pid" ]; then
    kill "$hub_pid" 2>/dev/null || true
    wait "$hub_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

# The hub reads HERALD_* variables as configuration: it starts with none
# but its log level.
clean_env=(env)
while IFS= read -r name; do clean_env+=(-u "$name"); done < <(env | sed -n 's/^\(HERALD_[A-Za-z0-9_]*\)=.*/\1/p')

secret="schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
"${clean_env[@]}" "$bin" apikey --id schemathesis --scope publish --scope tokens --scope revoke --scope admin >"$dir/apikey.txt"
api_key=$(grep -m1 '^hk_' "$dir/apikey.txt")

# Failed authentications are most of what a fuzzer sends: a realistic
# per-address limit would turn the rest of the run into `429`s. Limits the
# document leaves to the configuration are opened wide, so that generated
# requests get past them to the code behind (a minted token opens a stream).
cat >"$dir/herald.toml" <<EOF
listen = "127.0.0.1:0"
data_dir = "$dir/data"
jwt_secret = "$secret"

[limits]
auth_failures_per_minute = 1000000
sse_tokens_outstanding = 100000
sse_token_max_ttl_secs = 9223372036854775807

[mercure]
subscriptions = true

$(sed -n '/^\[\[api_keys\]\]/,$p' "$dir/apikey.txt")
EOF

# A Mercure token (HS256 with the hub's secret) that may publish and
# subscribe to everything, the subscriptions API included.
mercure_jwt=$(SECRET="$secret" python3 - <<'EOF'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "schemathesis", "iat": now, "exp": now + 3600,
                       "mercure": {"publish": ["*"], "subscribe": ["*"]}}).encode())
sig = hmac.new(os.environ["SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
EOF
)

"${clean_env[@]}" HERALD_LOG=warn "$bin" serve --config "$dir/herald.toml" >"$dir/stdout" 2>"$dir/stderr" &
hub_pid=$!
base=""
for _ in $(seq 1 300); do
  base=$(sed -n 's/^herald listening on \(http[^ ]*\).*/\1/p' "$dir/stdout" | head -n1)
  [ -n "$base" ] && break
  kill -0 "$hub_pid" 2>/dev/null || { cat "$dir/stderr" >&2; echo "herald exited before listening" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { echo "herald did not start listening" >&2; exit 1; }
echo "== herald at $base"

# Streams never end by themselves: Schemathesis reads a text/event-stream
# answer until its request timeout, keeps the events that arrived, checks
# them against the document, and does not count the cut as a failure. The
# stream operations get a short timeout so each case costs a second; every
# other operation answers at once and keeps a generous one.
cat >"$dir/schemathesis.toml" <<EOF
request-timeout = 20
max-stream-events = 20

# Nothing is kept between runs: the seed alone decides what a run sends.
[cache]
enabled = false

[generation]
database = "none"

[auth.openapi.bearer]
bearer = "$api_key"

[auth.openapi.mercure_bearer]
bearer = "$mercure_jwt"

[[operations]]
include-operation-id = ["open_event_stream", "open_audit_stream", "mercure_subscribe"]
request-timeout = 1
EOF

# Every check but the two that judge the requests rather than the answers:
# a schema cannot say everything the hub refuses (selector grammar, limits
# set in the configuration, `after` with `before`), so a request the
# document allows may still be a clear 400, and a lenient parameter (a
# `limit` clamped into range) is not a broken answer.
checks=all
excluded=positive_data_acceptance,negative_data_rejection
# One worker: Schemathesis's workers are threads, and Hypothesis parses
# source with `ast` to describe its strategies. CPython 3.11's AST builder
# keeps its recursion counter per interpreter, not per thread, so two
# threads parsing at once can fail with "AST constructor recursion depth
# mismatch" (CPython gh-106905), a runtime error of the fuzzer's own that
# fails the run at random. One thread costs well under a minute more.
status=0
# shellcheck disable=SC2086 # ST_ARGS is a list of arguments
(cd "$dir" && schemathesis --no-color --config-file "$dir/schemathesis.toml" run "$base/v1/openapi.json" \
  --checks "$checks" --exclude-checks "$excluded" \
  --max-examples "${ST_MAX_EXAMPLES:-20}" \
  --seed "${ST_SEED:-20261202}" \
  --workers 1 \
  ${ST_ARGS:-}) || status=$?

if grep -q "panicked" "$dir/stderr"; then
  echo "herald logged a panic:" >&2
  grep -A5 "panicked" "$dir/stderr" >&2
  exit 1
fi
exit "$status"
