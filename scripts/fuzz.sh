#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each, one after the other, and prints
# executions, coverage and the outcome per target. Exits non-zero if any target crashed.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Environment:
#   FUZZ_SANITIZER   address (default) or none (faster build, for CI smoke runs)
#   FUZZ_PROFILE     release (default: optimised, with debug assertions) or dev (unoptimised,
#                    much faster to build; for CI smoke runs)
#   FUZZ_TARGET_DIR  build dir for the instrumented build [target/fuzz]
#   FUZZ_CORPUS_DIR  where libFuzzer keeps the inputs it finds [target/fuzz-corpus]; the
#                    committed seeds in fuzz/corpus/<target>/ are read, never written
#   FUZZ_LOG_DIR     one log per target [target/fuzz-logs]
#
# The stable toolchain builds the targets with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs the
# nightly-only -Zsanitizer and -Cpasses flags); nothing else in the repository uses it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
sanitizer=${FUZZ_SANITIZER:-address}
target_dir=$(realpath -m "${FUZZ_TARGET_DIR:-target/fuzz}")
corpus_dir=$(realpath -m "${FUZZ_CORPUS_DIR:-target/fuzz-corpus}")
log_dir=$(realpath -m "${FUZZ_LOG_DIR:-target/fuzz-logs}")
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

cd fuzz
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
build=(--sanitizer "$sanitizer" --target-dir "$target_dir")
if [ "${FUZZ_PROFILE:-release}" = dev ]; then
    build+=(--dev)
fi
cargo fuzz build "${build[@]}"

mkdir -p "$log_dir"
failed=()
printf '%-10s %8s %12s %8s %8s %8s  %s\n' target seconds executions cov ft corpus result
for t in "${targets[@]}"; do
    mkdir -p "$corpus_dir/$t"
    log="$log_dir/$t.log"
    # Bounded: total time, per-input time and memory. The writable corpus comes first so the
    # committed seeds are only read.
    if cargo fuzz run "${build[@]}" "$t" "$corpus_dir/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see $log and fuzz/artifacts/$t/)"
        failed+=("$t")
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corpus=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$done_line")
    printf '%-10s %8s %12s %8s %8s %8s  %s\n' "$t" "$seconds" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
        "${corpus:-?}" "$result"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
