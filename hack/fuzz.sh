#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (`make fuzz`; docs/faults.md "Fuzzing").
#
# Needs the nightly toolchain (`rustup toolchain install nightly`), which a fresh CI machine may
# not be able to download: that is why this is not part of `make test`. `make test` replays every
# committed input on stable instead (fuzzing/tests/corpus.rs).
#
#   FUZZ_SECONDS=60    time per target
#   FUZZ_RUNS=N        executions per target instead (e.g. 10000000; no time limit then)
#   FUZZ_TARGETS="..." targets to run (default: all in fuzz/fuzz_targets/)
#   FUZZ_JOBS=1        parallel fuzzing processes per target (-fork)
#
# The corpus in fuzz/corpus/<target>/ grows with every run and is minimised (-merge=1) at the
# end, so what is committed stays small; fuzz/seeds/<target>/ (hand-written starting points) is
# read but never rewritten. A crash is written to fuzz/artifacts/<target>/; copy it
# to fuzz/regressions/<target>/ so that `make test` replays it, then fix it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-60}"
runs="${FUZZ_RUNS:-}"
if [ -n "$runs" ]; then
  limit="-runs=$runs" what="$runs executions"
else
  limit="-max_total_time=$seconds" what="${seconds}s"
fi
jobs="${FUZZ_JOBS:-1}"
targets="${FUZZ_TARGETS:-$(cd fuzz_targets && ls ./*.rs | sed 's|^\./||; s|\.rs$||')}"
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "make fuzz: the nightly toolchain is not installed (rustup toolchain install nightly)" >&2
  exit 1
fi

# What cargo-fuzz passes: SanitizerCoverage for libFuzzer's feedback, `--cfg fuzzing`, debug
# assertions and overflow checks on. `--target` keeps these flags off build scripts and proc
# macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo +nightly build --release --locked --target "$triple" --bins

status=0
for target in $targets; do
  mkdir -p "corpus/$target" "artifacts/$target"
  log="artifacts/$target/last-run.log"
  echo "== $target: $what"
  if ! "target/$triple/release/$target" "corpus/$target" "seeds/$target" \
      "$limit" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="artifacts/$target/" \
      ${FUZZ_JOBS:+-fork="$jobs"} >"$log" 2>&1; then
    echo "$target: CRASH, see $log and artifacts/$target/" >&2
    status=1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)" "$log" || tail -5 "$log"
  # Keep only the inputs that add coverage.
  rm -rf "corpus.min/$target" && mkdir -p "corpus.min/$target"
  "target/$triple/release/$target" -merge=1 "corpus.min/$target" "corpus/$target" >/dev/null 2>&1
  rm -rf "corpus/$target" && mv "corpus.min/$target" "corpus/$target"
  echo "$target: $(ls "corpus/$target" | wc -l) corpus files after minimising"
done
exit $status
