#!/usr/bin/env bash
# rustc wrapper for Herald's fuzz build (set as RUSTC_WRAPPER by
# scripts/fuzz.sh). Adds libFuzzer's coverage instrumentation (SanitizerCoverage:
# 8-bit edge counters, the PC table and comparison tracing) to the crates
# whose code parses the fuzzed bytes, and to no other.
#
# Why not RUSTFLAGS: that would instrument all of the hub's dependencies
# (tokio, hyper, rustls, the store, NATS, the regex compiler...), code that
# no fuzz input steers, making every run slower (the selector and template
# targets ran five times slower with the regex crates instrumented) and
# its coverage noisier; it would also reach build scripts and proc macros
# unless every build named a --target.
set -euo pipefail

# Packages, by the name cargo puts in CARGO_PKG_NAME for every crate it
# compiles: Herald's own, and the parsers the fuzzed bytes go through.
instrumented=(
  herald-fuzz herald herald-core
  serde serde_json base64 jsonwebtoken
  form_urlencoded percent-encoding httparse http
  figment pear uncased toml toml_edit toml_datetime serde_spanned winnow
)

rustc=$1
shift
# Build scripts and proc macros run on the host inside the build, where no
# libFuzzer runtime is linked: they are never instrumented.
host_code=no
prev=""
for arg in "$@"; do
  case "$prev:$arg" in
    --crate-name:build_script_*) host_code=yes ;;
    --crate-type:proc-macro) host_code=yes ;;
  esac
  prev=$arg
done

instrument=no
if [ "$host_code" = no ]; then
  for pkg in "${instrumented[@]}"; do
    [ "${CARGO_PKG_NAME:-}" = "$pkg" ] && instrument=yes
  done
fi

if [ "$instrument" = yes ]; then
  exec "$rustc" "$@" --cfg fuzzing \
    -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares
fi
exec "$rustc" "$@"
