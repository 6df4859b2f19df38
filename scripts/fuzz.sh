#!/usr/bin/env bash
# Coverage-guided fuzzing of every Herald parser that reads untrusted bytes
# (selectors, URI templates, JWTs, publish bodies, Mercure forms,
# Last-Event-ID, HTTP/1 request heads, the configuration file). libFuzzer,
# on the stable toolchain; docs/fuzzing.md says what each target checks.
#
#   scripts/fuzz.sh smoke [SECONDS]      build, then run each target SECONDS (default 10)
#                                        from its committed corpus; fails on any crash
#   scripts/fuzz.sh long [SECONDS]       run each target SECONDS (default 300); new inputs
#                                        are kept in fuzz/new-corpus/<target>/
#   scripts/fuzz.sh merge                add to fuzz/corpus/ the inputs of fuzz/new-corpus/
#                                        that reach coverage the committed corpus does not
#   scripts/fuzz.sh repro TARGET FILE... run inputs (a crash artifact) once, with a backtrace
#   scripts/fuzz.sh tmin TARGET FILE     shrink a crashing input to a minimal one
#   scripts/fuzz.sh build | list
#
# FUZZ_TARGETS="jwt config" restricts smoke, long and merge to those targets.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(selectors uri_template jwt publish_json mercure_form last_event_id http1_head config)
targets=("${all_targets[@]}")
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -ra targets <<<"$FUZZ_TARGETS"
fi

target_dir=fuzz/target
bin_dir=$target_dir/release
log_dir=$target_dir/logs
# Backtraces for panics; libFuzzer itself reports the rest.
export RUST_BACKTRACE=1

# Longest input per target: enough for any field each parser bounds (a
# selector or topic is at most 1 KiB, a URI template 4 KiB), small enough
# that the fuzzer spends its time on structure rather than bulk.
max_len() {
  case "$1" in
    http1_head | config) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

build() {
  # libfuzzer-sys compiles libFuzzer (C++) from source.
  if ! command -v c++ >/dev/null 2>&1; then
    echo "== fuzz: installing g++ (libFuzzer is C++)"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ >/dev/null
  fi
  echo "== fuzz: building the targets (instrumented, in $target_dir)"
  # The wrapper instruments only Herald and the parsers it feeds (see the
  # wrapper): plain stable cargo, no nightly and no cargo-fuzz.
  RUSTC_WRAPPER="$PWD/fuzz/rustc-wrapper.sh" cargo build --quiet --release \
    --manifest-path fuzz/Cargo.toml --target-dir "$target_dir" --bins
}

# Prints `runs exec/s cov0 cov1 ft0 ft1 corp0 corp1` from a libFuzzer log.
stats() {
  awk '
    /INITED/ && !init { for (i = 1; i < NF; i++) { if ($i == "cov:") c0 = $(i+1); if ($i == "ft:") f0 = $(i+1); if ($i == "corp:") { split($(i+1), p, "/"); k0 = p[1] } } init = 1 }
    /^#[0-9]+/ && / cov: / { for (i = 1; i < NF; i++) { if ($i == "cov:") c1 = $(i+1); if ($i == "ft:") f1 = $(i+1); if ($i == "corp:") { split($(i+1), p, "/"); k1 = p[1] } } }
    /^stat::number_of_executed_units:/ { runs = $2 }
    /^stat::average_exec_per_sec:/ { rate = $2 }
    END { print (runs ? runs : 0), (rate ? rate : 0), c0 + 0, (c1 ? c1 : c0) + 0, f0 + 0, (f1 ? f1 : f0) + 0, k0 + 0, (k1 ? k1 : k0) + 0 }
  ' "$1"
}

# run_target TARGET SECONDS NEW_CORPUS_DIR [libFuzzer flags...]
# libFuzzer writes new inputs to the first corpus directory only, so the
# committed corpus is read, never written.
run_target() {
  local t=$1 secs=$2 out=$3
  shift 3
  local log=$log_dir/$t.log rc=0
  mkdir -p "$out" "fuzz/artifacts/$t" "$log_dir" "$target_dir/tmp"
  TMPDIR="$PWD/$target_dir/tmp" "$bin_dir/$t" \
    -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 "$@" \
    "$out" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  local runs rate c0 c1 f0 f1 k0 k1
  read -r runs rate c0 c1 f0 f1 k0 k1 < <(stats "$log")
  if [ "$rc" = 0 ]; then
    printf 'fuzz %-14s ok     %9s runs (%s/s)  cov %s -> %s  ft %s -> %s  corpus %s -> %s\n' \
      "$t" "$runs" "$rate" "$c0" "$c1" "$f0" "$f1" "$k0" "$k1"
    return 0
  fi
  printf 'fuzz %-14s FAILED (exit %s) after %s runs; log: %s\n' "$t" "$rc" "$runs" "$log"
  grep -E 'panicked at|^==[0-9]+== ERROR|^SUMMARY|Test unit written to' "$log" | head -n 5 | sed 's/^/    /' || true
  echo "    --- end of the log ---"
  tail -n 40 "$log" | sed 's/^/    /'
  echo "    reproduce: scripts/fuzz.sh repro $t <the file named above>"
  return 1
}

cmd=${1:-smoke}
shift || true
case "$cmd" in
  build)
    build
    ;;
  list)
    printf '%s\n' "${all_targets[@]}"
    ;;
  smoke | long)
    if [ "$cmd" = smoke ]; then secs=${1:-10}; else secs=${1:-300}; fi
    start=$SECONDS
    build
    if [ "$cmd" = smoke ]; then
      # The SSE parser the frame checks compare against is tested first
      # (std only, so plain rustc, in a second).
      rustc --edition 2021 --test fuzz/src/lib.rs -o "$target_dir/sse-oracle-tests"
      "$target_dir/sse-oracle-tests" -q
    fi
    built=$SECONDS
    failed=()
    for t in "${targets[@]}"; do
      if [ "$cmd" = smoke ]; then
        # A fresh scratch corpus each time: a smoke run starts from what is
        # committed, so CI runs are alike.
        out=$target_dir/smoke-corpus/$t
        rm -rf "$out"
        run_target "$t" "$secs" "$out" || failed+=("$t")
      else
        run_target "$t" "$secs" "fuzz/new-corpus/$t" -use_value_profile=1 || failed+=("$t")
      fi
    done
    echo "fuzz $cmd: ${#targets[@]} targets x ${secs}s in $((SECONDS - start))s (build $((built - start))s); ${#failed[@]} failed ${failed[*]:-}"
    if [ "$cmd" = long ]; then
      echo "new inputs: fuzz/new-corpus/<target>/; keep the ones that add coverage with: scripts/fuzz.sh merge"
    fi
    [ ${#failed[@]} -eq 0 ]
    ;;
  merge)
    build
    for t in "${targets[@]}"; do
      new=fuzz/new-corpus/$t
      [ -d "$new" ] && [ -n "$(ls -A "$new")" ] || continue
      before=$(ls "fuzz/corpus/$t" | wc -l)
      mkdir -p "$log_dir" "$target_dir/tmp"
      TMPDIR="$PWD/$target_dir/tmp" "$bin_dir/$t" -merge=1 -max_len="$(max_len "$t")" "fuzz/corpus/$t" "$new" >"$log_dir/$t.merge.log" 2>&1
      echo "fuzz $t: $(($(ls "fuzz/corpus/$t" | wc -l) - before)) inputs added to fuzz/corpus/$t"
    done
    echo "review with 'git status fuzz/corpus': commit a few small ones, delete the rest"
    ;;
  repro)
    [ $# -ge 2 ] || { echo "usage: scripts/fuzz.sh repro TARGET FILE..." >&2; exit 2; }
    t=$1
    shift
    build
    TMPDIR="${TMPDIR:-/tmp}" "$bin_dir/$t" "$@"
    ;;
  tmin)
    [ $# -eq 2 ] || { echo "usage: scripts/fuzz.sh tmin TARGET FILE" >&2; exit 2; }
    t=$1
    build
    mkdir -p "fuzz/artifacts/$t"
    out=fuzz/artifacts/$t/minimized-$(basename "$2")
    "$bin_dir/$t" -minimize_crash=1 -max_total_time=60 -exact_artifact_path="$out" "$2" || true
    echo "minimised input: $out ($(wc -c <"$out") bytes)"
    ;;
  *)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
