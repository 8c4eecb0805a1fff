#!/usr/bin/env bash
# `make fuzz`: run each cargo-fuzz target (fuzz/fuzz_targets/) for FUZZ_SECONDS
# (default 300) with libFuzzer and AddressSanitizer, starting from fuzz/seeds/<target>
# plus the corpus kept in fuzz/corpus/<target> by earlier runs. Prints, per target,
# the runs executed, the corpus size (inputs kept) and the failures (crashes, panics,
# timeouts, out-of-memory), then `N passed, M failed`.
#
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer); only the stable
# toolchain exists here, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
# A failing input is saved in fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
SECONDS_EACH="${FUZZ_SECONDS:-300}"
LOG_DIR="${CARGO_TARGET_DIR:-../target}/fuzz-logs"
mkdir -p "$LOG_DIR"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked || { echo "0 passed, 1 failed"; exit 1; }
fi
passed=0
failed=0
for target in event_batch config_loader; do
    mkdir -p "corpus/$target"
    args=(-max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    [[ $target == event_batch ]] && args+=(-dict=json.dict)
    log="$LOG_DIR/$target.log"
    echo "fuzzing $target for ${SECONDS_EACH}s (log: $log)"
    cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- "${args[@]}" >"$log" 2>&1
    code=$?
    runs=$(grep -oP '^stat::number_of_executed_units:\s*\K\d+' "$log" | tail -1)
    inputs=$(find "corpus/$target" -type f | wc -l)
    crashes=$(find "artifacts/$target" -type f 2>/dev/null | wc -l)
    if [[ $code -eq 0 && $crashes -eq 0 ]]; then
        passed=$((passed + 1))
        echo "ok   fuzz $target: ${runs:-0} runs in ${SECONDS_EACH}s, corpus $inputs inputs, failures 0"
    else
        failed=$((failed + 1))
        echo "FAIL fuzz $target: exit $code, ${runs:-?} runs, $crashes failing input(s) in fuzz/artifacts/$target"
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|deadly signal" "$log" | head -5 | sed 's/^/     /'
    fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
