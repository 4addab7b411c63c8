#!/usr/bin/env bash
# Usage: bench/q1_scaling.sh [BUILD_DIR] [EVENTS]
#
# Q1 against the hand-written single-threaded baseline, measured in the same
# run, at 100k and 2M meters: the memory backend at 1 and 2 threads, RocksDB
# (512 MiB budget) at 2 threads. Prints one Markdown table row per run: what
# docs/performance.md records. "vs baseline" is the ratio of events/s. Build BUILD_DIR (default
# build/release) first: cmake --preset release && cmake --build --preset release
set -euo pipefail
build="${1:-build/release}"
events="${2:-20000000}"
bench="$build/bench/meterstream-bench"
[[ -x "$bench" ]] || { echo "q1_scaling.sh: no $bench; build the release preset" >&2; exit 2; }

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

echo "| meters | run | events/s | proc_s | peak RSS MiB | vs baseline | digest |"
echo "|---|---|---|---|---|---|---|"
for meters in 100000 2000000; do
  base="$("$bench" q1-baseline --meters "$meters" --events "$events")"
  base_eps="$(field "$base" events_per_s)"
  printf '| %s | baseline | %.1f M | %.3f | %.0f | 1.00 | %s |\n' "$meters" \
    "$(python3 -c "print($base_eps/1e6)")" "$(field "$base" proc_s)" \
    "$(field "$base" peak_rss_mb)" "$(field "$base" digest)"
  for run in "memory 1" "memory 2" "rocksdb 2"; do
    read -r state threads <<<"$run"
    out="$("$bench" q1 --meters "$meters" --events "$events" --threads "$threads" --state "$state")"
    eps="$(field "$out" events_per_s)"
    if [[ "$(field "$out" digest)" != "$(field "$base" digest)" ]]; then
      echo "q1_scaling.sh: digest differs from the baseline ($meters meters, $run)" >&2
      exit 1
    fi
    printf '| %s | q1 --threads %s --state %s | %.1f M | %.3f | %.0f | %.2f | %s |\n' \
      "$meters" "$threads" "$state" \
      "$(python3 -c "print($eps/1e6)")" "$(field "$out" proc_s)" "$(field "$out" peak_rss_mb)" \
      "$(python3 -c "print($eps/$base_eps)")" "$(field "$out" digest)"
  done
done
