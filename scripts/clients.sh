#!/usr/bin/env bash
# Herald against the client libraries integrators use, over real HTTP:
# npm `eventsource` and `@microsoft/fetch-event-source`, PyPI `httpx-sse`,
# `sseclient-py` and `mercure-publisher`, and Herald's own publisher helpers
# (clients/ts, clients/python). See docs/clients.md.
#
# Needs the hub binary (`cargo build -p herald --bin herald`; HERALD_BIN
# points elsewhere), node >= 20 with npm, python3 >= 3.9. Installs what it
# needs quietly (pinned: package-lock.json files, tests/clients/requirements.txt;
# Python packages go into tests/clients/.venv) and exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${HERALD_BIN:-$root/target/debug/herald}"
tests="$root/tests/clients"
venv="$tests/.venv"

if [[ ! -x "$bin" ]]; then
  echo "clients.sh: no hub binary at $bin (run: cargo build -p herald --bin herald, or set HERALD_BIN)" >&2
  exit 2
fi

step() { printf '== %s\n' "$*"; }

step "install: clients/ts (npm ci, tsc), tests/clients (npm ci)"
(cd "$root/clients/ts" && npm ci --silent --no-audit --no-fund && npm run -s build)
(cd "$tests" && npm ci --silent --no-audit --no-fund)

step "install: tests/clients/.venv (requirements.txt, clients/python)"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$tests/requirements.txt"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$root/clients/python"

failed=()
run() {
  local name="$1"
  shift
  step "$name"
  if ! "$@"; then failed+=("$name"); fi
}

run "types: clients/ts as a consumer sees it (tsc --noEmit)" \
  "$root/clients/ts/node_modules/.bin/tsc" -p "$tests/types/tsconfig.json"
run "types: clients/python (mypy --strict)" \
  "$venv/bin/mypy" --strict --no-error-summary --cache-dir "$venv/mypy-cache" "$root/clients/python/src/herald_client" "$tests/python/test_herald_client.py"
# The hub is started by the tests; HERALD_BIN reaches them only (they do not pass HERALD_* on to it).
run "node: eventsource, fetch-event-source, clients/ts" \
  env HERALD_BIN="$bin" node --test --test-concurrency=1 "$tests/node/"
run "python: httpx-sse, sseclient-py, mercure-publisher, clients/python" \
  env HERALD_BIN="$bin" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$tests/python"

if ((${#failed[@]})); then
  printf 'clients.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "clients.sh: all client-library tests passed"
