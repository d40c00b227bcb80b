#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time.
#
#   fuzz/run.sh SECONDS [TARGET...]      (default: every target)
#   JOBS=2 fuzz/run.sh 600               (two targets at a time; default 1)
#   NO_BUILD=1 fuzz/run.sh 60 smtp        (skip the build, run what is built)
#
# Each target's corpus (fuzz/corpus/<target>, kept between runs, ignored by
# git) is seeded from fuzz/seeds/<target>/ and, for parse_mail and ingest,
# from ../shared/corpus/parser-tests when it exists. Logs go to
# fuzz/logs/<target>.log; one line per run is appended to
# fuzz/logs/runs.tsv (date, target, seconds, executions, exec/s, result).
# Exits non-zero if any target crashed (the input is in
# fuzz/artifacts/<target>/) or failed to build.
set -euo pipefail

usage() { echo "usage: $0 SECONDS [TARGET...]" >&2; exit 2; }
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
SECONDS_EACH=$1
shift

cd "$(dirname "$0")"
ALL=(parse_mail query ingest smtp mbox maildir decrypt catalog)
if [[ $# -gt 0 ]]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi
for t in "${TARGETS[@]}"; do
    [[ " ${ALL[*]} " == *" $t "* ]] || { echo "unknown target: $t (known: ${ALL[*]})" >&2; exit 2; }
done
JOBS=${JOBS:-1}

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 2; }
rustup toolchain list | grep -q '^nightly' || { echo "a nightly toolchain is needed: rustup toolchain install nightly" >&2; exit 2; }

# -O: no debug assertions. mail-parser 0.11 has a debug_assert! that crafted
# MIME trips at once (see README.md), which would hide every other finding
# of the targets that reach the parser.
mkdir -p logs
BIN=target/$(rustc +nightly -vV | sed -n "s/^host: //p")/release
if [[ ${NO_BUILD:-0} == 1 ]]; then
    echo "NO_BUILD=1: running the binaries already in $BIN"
else
    echo "building ${#TARGETS[@]} target(s)..."
    for t in "${TARGETS[@]}"; do
        cargo +nightly fuzz build -O "$t" >logs/build.log 2>&1 || {
            tail -n 30 logs/build.log >&2
            echo "build of $t failed" >&2
            exit 1
        }
    done
fi

# Per-target libFuzzer options: input size bounds and, for the targets that
# decode hostile sizes, a cap on any single allocation.
options() {
    case $1 in
        parse_mail|ingest) echo "-max_len=65536" ;;
        query) echo "-max_len=4096" ;;
        smtp) echo "-max_len=8192 -dict=dict/smtp.dict -malloc_limit_mb=256" ;;
        mbox|maildir) echo "-max_len=16384 -malloc_limit_mb=256" ;;
        decrypt|catalog) echo "-max_len=8192 -malloc_limit_mb=256" ;;
    esac
}

seed() {
    local t=$1 dir=corpus/$1
    mkdir -p "$dir"
    if [[ -d seeds/$t ]]; then cp -n seeds/"$t"/* "$dir"/ 2>/dev/null || true; fi
    local mail=../../shared/corpus/parser-tests
    if [[ ( $t == parse_mail || $t == ingest ) && -d $mail ]]; then
        # `|| true`: head closing the pipe early must not fail the run (pipefail).
        find "$mail" -name '*.eml' -size -64k | head -n 200 | while read -r f; do
            cp -n "$f" "$dir/seed-$(basename "$f")" 2>/dev/null || true
        done || true
    fi
}

run_one() {
    local t=$1 log=logs/$1.log start end rc runs rate result
    seed "$t"
    start=$(date +%s)
    # shellcheck disable=SC2046
    mkdir -p "artifacts/$t"
    # What `cargo fuzz run -O` runs, without its rebuild check.
    if "$BIN/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$SECONDS_EACH" -timeout=20 -print_final_stats=1 $(options "$t") \
        >"$log" 2>&1; then
        rc=0
        result=ok
    else
        rc=$?
        result="CRASH (exit $rc, see $log and artifacts/$t/)"
    fi
    end=$(date +%s)
    runs=$(grep -Eo 'stat::number_of_executed_units:[[:space:]]*[0-9]+' "$log" | tail -n 1 | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -Eo 'stat::average_exec_per_sec:[[:space:]]*[0-9]+' "$log" | tail -n 1 | grep -o '[0-9]*$' || echo "?")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$((end - start))" "$runs" "$rate" "$result" >>logs/runs.tsv
    printf '%-11s %6ss %12s runs %8s/s  %s\n' "$t" "$((end - start))" "$runs" "$rate" "$result"
    [[ $rc -eq 0 ]]
}

failed=0
running=0
for t in "${TARGETS[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [[ $running -ge $JOBS ]]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
done
while [[ $running -gt 0 ]]; do
    wait -n || failed=1
    running=$((running - 1))
done

rm -rf "${TMPDIR:-/tmp}"/ama-fuzz-ingest-* 2>/dev/null || true
if [[ $failed -ne 0 ]]; then
    echo "at least one target crashed" >&2
    exit 1
fi
echo "all targets ran ${SECONDS_EACH}s without a crash"
