#!/usr/bin/env bash
#
# scripts/fuzz.sh — run every cargo-fuzz target in fuzz/ for a while (issue 8).
#
# Why it exists: the parsers that read bytes from the network (the Stripe-Signature header,
# webhook events, Sentry envelopes with their gzip/deflate/br bodies, the Idempotency-Key
# header, the JSON request bodies) must never panic and must stay within bounded memory,
# whatever they are sent. libFuzzer searches for inputs that break that; this script builds
# the targets, runs each one for SECONDS_PER_TARGET seconds from its committed seed corpus
# (fuzz/corpus/<target>) plus what earlier local runs found (fuzz/target/corpus/<target>,
# not committed), prints the executions per target, and fails if any target crashed, ran out
# of memory or timed out. Crash inputs land in fuzz/artifacts/<target>/; reproduce one with
# `fuzz/target/<host>/release/<target> fuzz/artifacts/<target>/<file>` (after a build
# by this script, e.g. `scripts/fuzz.sh 1 <target>`).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   CI:          scripts/fuzz.sh 10          (the default: 10 s per target)
#   a long run:  scripts/fuzz.sh 600         (10 minutes per target; 50 minutes in all)
#   one target:  scripts/fuzz.sh 300 sentry_envelope
#
# The build is cargo-fuzz's, without cargo-fuzz (one less tool to install, ~9 min of CPU on
# a fresh machine): release mode (fuzz/Cargo.toml: opt-level 1), debug assertions and
# overflow checks on, `--cfg fuzzing`, and LLVM's sanitizer coverage (inline 8-bit counters,
# PC table, comparison tracing) that libFuzzer steers by — all stable rustc flags. For the
# host target only, so build scripts and proc macros are not instrumented.
# AddressSanitizer is off by default: boxoffice forbids `unsafe`, and what the fuzzers hunt
# here is panics, unbounded allocation and hangs, which libFuzzer catches itself
# (-malloc_limit_mb, -rss_limit_mb, -timeout). BO_FUZZ_ASAN=1 adds it (needs the
# nightly-only -Zsanitizer, allowed on stable by RUSTC_BOOTSTRAP=1, for this build only).
# Memory is bounded per run: -rss_limit_mb (the whole process) and -malloc_limit_mb (any
# single allocation): the largest legitimate buffers are the 20 MiB decoded-envelope limit
# and brotli's 16 MiB window.

set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd -- "$ROOT"
BO_LOG_PREFIX=${BO_LOG_PREFIX:-fuzz}
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

SECONDS_PER_TARGET=${1:-10}
shift || true
[[ $SECONDS_PER_TARGET =~ ^[1-9][0-9]*$ ]] || bo_die "SECONDS_PER_TARGET must be a positive number, not '$SECONDS_PER_TARGET'"
RSS_LIMIT_MB=${BO_FUZZ_RSS_LIMIT_MB:-1536}
MALLOC_LIMIT_MB=${BO_FUZZ_MALLOC_LIMIT_MB:-128}

cd fuzz
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(find fuzz_targets -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort)
fi
[[ ${#targets[@]} -gt 0 ]] || bo_die "no fuzz targets found"

host=$(rustc -vV | sed -n 's/^host: //p')
rustflags=(
    --cfg fuzzing
    -Cdebug-assertions -Coverflow-checks
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
)
if [[ ${BO_FUZZ_ASAN:-0} == 1 ]]; then
    rustflags+=(-Zsanitizer=address)
    export RUSTC_BOOTSTRAP=1
fi

started=$SECONDS
bo_log "building ${#targets[@]} targets (${BO_FUZZ_ASAN:+ASan, }host $host): ${targets[*]}"
# One build of all targets: they share every dependency.
bin_args=()
for target in "${targets[@]}"; do bin_args+=(--bin "$target"); done
RUSTFLAGS="${rustflags[*]}" cargo build --release --locked --target "$host" "${bin_args[@]}" >&2
bo_log "built in $((SECONDS - started))s"
bindir="target/$host/release"

failed=()
summary=()
for target in "${targets[@]}"; do
    seeds="corpus/$target"
    work="target/corpus/$target"
    mkdir -p "$work" "artifacts/$target"
    log="target/fuzz-$target.log"
    bo_log "running $target for ${SECONDS_PER_TARGET}s"
    status=0
    # New inputs go to the first directory (the local work corpus); the committed seeds are
    # only read.
    "$bindir/$target" "$work" "$seeds" \
        -artifact_prefix="artifacts/$target/" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb="$RSS_LIMIT_MB" \
        -malloc_limit_mb="$MALLOC_LIMIT_MB" \
        -timeout=30 \
        -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    line=$(printf '%-18s %12s executions  peak RSS %5s MB  corpus %5s inputs' \
        "$target" "${runs:-?}" "${peak:-?}" "$(find "$work" -type f | wc -l)")
    if [[ $status -ne 0 ]]; then
        line="$line  FAILED (exit $status)"
        failed+=("$target")
        bo_log "$target failed; the end of its log ($log):"
        tail -n 60 "$log" >&2
    fi
    summary+=("$line")
done

printf '\nfuzz: %s s per target\n' "$SECONDS_PER_TARGET"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    bo_die "crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
fi
