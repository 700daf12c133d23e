#!/usr/bin/env bash
# Instructions executed by one validate + plan (`validate_and_plan` in validate_plan.rs) per
# shape and size, counted by callgrind: repeatable on a loaded machine, unlike wall-clock time.
# Prints a table with the instructions per member relative to the 10-member case.
#
# Usage: topology/benches/callgrind.sh [BENCH_BINARY]
# Without an argument it builds the bench and uses the binary cargo reports.
set -euo pipefail

bin=${1:-}
if [[ -z $bin ]]; then
    bin=$(cargo bench -p federator-topology --bench validate_plan --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*validate_plan[^"]*\)".*/\1/p' | tail -n1)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "| members | shape   | instructions | per member | per member vs 10 |"
echo "|--------:|---------|-------------:|-----------:|-----------------:|"
for shape in star ring cascade; do
    base=
    for n in 10 100 1000 10000; do
        valgrind --tool=callgrind --callgrind-out-file="$out/cg.$shape.$n" \
            --toggle-collect='*validate_and_plan*' "$bin" --once "$shape" "$n" >/dev/null 2>"$out/log"
        ir=$(sed -n 's/^summary: //p' "$out/cg.$shape.$n")
        per=$((ir / n))
        base=${base:-$per}
        printf '| %7d | %-7s | %12d | %10d | %16s |\n' "$n" "$shape" "$ir" "$per" \
            "$(awk -v a="$per" -v b="$base" 'BEGIN { printf "%.2f", a / b }')"
    done
done
