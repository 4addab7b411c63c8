#!/usr/bin/env bash
# Usage: bench/checkpoint_overhead.sh BUILD_DIR [REPS] [Q1 FLAGS...]
#
# What checkpoints cost Q1: runs, alternately and REPS times (default 3), the
# same query
#   plain      no checkpoints, totals folded in memory (meterstream-bench q1);
#   eo-final   exactly-once file output, only the final checkpoint;
#   eo-1s      exactly-once file output, a checkpoint every second;
#   eo-200ms   exactly-once file output, a checkpoint every 200 ms;
# and prints each run's JSON, then per configuration the median events/s, its
# ratio to eo-final (the cost of checkpointing itself) and to plain, the
# checkpoints taken, the longest pause and the megabytes uploaded.
# Default flags: --seed 42 --meters 1000000 --events 40000000 --threads 2.
set -euo pipefail

build="${1:?usage: bench/checkpoint_overhead.sh BUILD_DIR [REPS] [Q1 FLAGS...]}"
reps="${2:-3}"
shift $(($# >= 2 ? 2 : 1))
flags=("$@")
if ((${#flags[@]} == 0)); then
  flags=(--seed 42 --meters 1000000 --events 40000000 --threads 2)
fi
bench="$build/bench/meterstream-bench"
work="$(mktemp -d "${TMPDIR:-/tmp}/ms-ckpt-overhead.XXXXXX")"
trap 'rm -rf "$work"' EXIT
results="$work/results.txt"

for ((r = 1; r <= reps; r++)); do
  for config in plain eo-final eo-1s eo-200ms; do
    rm -rf "$work/chk" "$work/out"
    extra=()
    case "$config" in
      eo-final) extra=(--checkpoint-interval-ms 100000000) ;;
      eo-1s) extra=(--checkpoint-interval-ms 1000) ;;
      eo-200ms) extra=(--checkpoint-interval-ms 200) ;;
    esac
    if [[ "$config" != plain ]]; then
      extra+=(--checkpoint-dir "$work/chk" --output "$work/out")
    fi
    line="$("$bench" q1 "${flags[@]}" "${extra[@]}")"
    echo "$config $line"
    echo "$config $line" >>"$results"
  done
done

python3 - "$results" <<'EOF'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    config, js = line.split(" ", 1)
    runs.setdefault(config, []).append(json.loads(js))
med = {c: statistics.median(r["events_per_s"] for r in rs) for c, rs in runs.items()}
print(f"{'config':10} {'events/s':>12} {'vs eo-final':>12} {'vs plain':>9} {'checkpoints':>12} {'max pause ms':>13} {'MiB uploaded':>13}")
for c, rs in runs.items():
    ck = statistics.median(r.get("checkpoints", 0) for r in rs)
    pause = max(r.get("checkpoint_max_sync_ms", 0) for r in rs)
    mb = statistics.median(r.get("checkpoint_uploaded_mb", 0) for r in rs)
    print(f"{c:10} {med[c]:12.0f} {med[c] / med['eo-final']:12.2f} {med[c] / med['plain']:9.2f} {ck:12.0f} {pause:13d} {mb:13.1f}")
EOF
