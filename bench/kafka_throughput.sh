#!/usr/bin/env bash
# Usage: bench/kafka_throughput.sh BENCH [ROUNDS] [WORKLOAD FLAGS...]
#
# The Kafka throughput benchmark (docs/performance.md, "Kafka end to end").
# Produces the workload (default: --seed 42 --meters 100000 --events 2000000
# --late-ppm 0) into a new 4-partition topic with `BENCH produce`, then, in
# the same run and alternating, ROUNDS times (default 3):
#   consume  `BENCH kafka-consume`: the Kafka source, bounded, read_committed,
#            into a counting sink (the ceiling: reading and decoding only);
#   eos      `BENCH kafka-q1 --delivery exactly_once`, checkpoints every
#            second, 2 threads, each window one message of a new topic;
#   alo      the same with `--delivery at_least_once`.
# Until `BENCH kafka-q1` exists, eos and alo run the Kafka example instead
# (EXAMPLE, default <build>/examples/kafka_meter_aggregates next to BENCH:
# Q2, i.e. dedup then Q1's windows, with `--bounded` and, for alo,
# `--at-least-once`); the summary says which ran.
# Each eos/alo run gets a new output topic, group, transactional-id prefix
# and checkpoint folder; the output of every run is checked with
# `BENCH verify` (windows as `BENCH q1` of the same workload; eos: nothing
# repeated). Prints each run's JSON, then the medians and the ratios
# eos/consume (goal >= 0.5) and eos/alo (goal >= 0.9) as one JSON line.
#
# The broker: $MS_KAFKA_BROKERS when set, otherwise one started here with
# scripts/kafka-broker in a temporary folder (stopped at exit). Needs
# python3 with confluent-kafka (scripts/deps.sh --test) to create topics.
# Environment: THREADS (2), INTERVAL_MS (1000), PARTITIONS (4).
set -euo pipefail

bench="$1"
rounds="${2:-3}"
shift $(($# >= 2 ? 2 : 1))
workload=("$@")
if ((${#workload[@]} == 0)); then
  workload=(--seed 42 --meters 100000 --events 2000000 --late-ppm 0)
fi
threads="${THREADS:-2}"
interval="${INTERVAL_MS:-1000}"
partitions="${PARTITIONS:-4}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/ms-kafka-throughput.XXXXXX")"
own_broker=""
cleanup() {
  if [[ -n "$own_broker" ]]; then "$here/../scripts/kafka-broker" stop "$own_broker" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [[ -z "${MS_KAFKA_BROKERS:-}" ]]; then
  own_broker="$work/broker"
  MS_KAFKA_BROKERS="$("$here/../scripts/kafka-broker" start "$own_broker")"
  echo "started a broker at $MS_KAFKA_BROKERS" >&2
fi
brokers="$MS_KAFKA_BROKERS"

field() { # field NAME JSON
  python3 -c 'import json,sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"
}

create_topic() { # create_topic NAME PARTITIONS
  python3 - "$brokers" "$1" "$2" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for _, fut in admin.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)]).items():
    fut.result(30)
PY
}

example="${EXAMPLE:-$(dirname "$bench")/../examples/kafka_meter_aggregates}"
if "$bench" --help 2>/dev/null | grep -q 'kafka-q1'; then
  pipeline=kafka-q1
else
  pipeline=kafka_meter_aggregates
  [[ -x "$example" ]] || { echo "kafka_throughput.sh: no kafka-q1 in $bench and no $example" >&2; exit 2; }
fi
echo "pipeline for eos/alo: $pipeline" >&2

# example_json MODE ARGS...: runs the example, prints its summary as JSON.
example_json() {
  local text
  text="$("$example" "$@")"
  python3 - "$text" <<'PY'
import json, re, sys
t = sys.argv[1]
g = lambda k: int(re.search(r"\n  " + k + r" +([0-9]+)", t).group(1))
el = float(re.search(r"elapsed +([0-9.]+) s", t).group(1))
print(json.dumps({"events": g("events"), "windows": g("windows"), "duplicates": g("duplicates"),
                  "transactions": g("transactions committed"), "proc_s": el,
                  "events_per_s": g("events") / el}))
PY
}

tag="$$-$RANDOM"
input="ms-throughput-$tag"
echo "producing ${workload[*]} into $input ($partitions partitions)" >&2
produced="$("$bench" produce --brokers "$brokers" --topic "$input" --partitions "$partitions" \
  "${workload[@]}")"
echo "produce: $produced"
if [[ "$pipeline" == kafka-q1 ]]; then
  expected="$("$bench" q1 "${workload[@]}" --threads "$threads")"
else
  expected="$("$bench" dedup "${workload[@]}" --threads "$threads")"
fi
echo "in memory, expected windows: $expected"
want_windows="$(field windows "$expected")"
events="$(field events "$produced")"

declare -A rates
failures=0
run_mode() { # run_mode MODE ROUND
  local mode="$1" round="$2" out
  case "$mode" in
    consume)
      out="$("$bench" kafka-consume --brokers "$brokers" --topic "$input" --threads "$threads")"
      if [[ "$(field events "$out")" != "$events" ]]; then
        echo "consume round $round: read $(field events "$out") of $events events" >&2
        failures=$((failures + 1))
      fi
      ;;
    eos | alo)
      local delivery=exactly_once
      [[ "$mode" == alo ]] && delivery=at_least_once
      local topic="ms-throughput-out-$tag-$mode-$round"
      create_topic "$topic" "$partitions"
      if [[ "$pipeline" == kafka-q1 ]]; then
        out="$("$bench" kafka-q1 --brokers "$brokers" --input "$input" --output-topic "$topic" \
          --group "ms-throughput-$tag-$mode-$round" \
          --transactional-id-prefix "ms-throughput-$tag-$mode-$round" \
          --checkpoint-dir "$work/chk-$mode-$round" --checkpoint-interval-ms "$interval" \
          --threads "$threads" --delivery "$delivery")"
      else
        local extra=()
        [[ "$mode" == alo ]] && extra=(--at-least-once)
        create_topic "$topic-dead" 1
        out="$(example_json --brokers "$brokers" --input "$input" --output "$topic" \
          --dead-letter "$topic-dead" --group "ms-throughput-$tag-$mode-$round" \
          --prefix "ms-throughput-$tag-$mode-$round" --checkpoint-dir "$work/chk-$mode-$round" \
          --checkpoint-interval-ms "$interval" --threads "$threads" --bounded "${extra[@]}")"
      fi
      local check
      check="$("$bench" verify --brokers "$brokers" --topic "$topic")"
      if [[ "$(field windows "$check")" != "$want_windows" ]] ||
        { [[ "$mode" == eos ]] && [[ "$(field repeated "$check")" != 0 ]]; }; then
        echo "$mode round $round: output $check, expected $want_windows windows" >&2
        failures=$((failures + 1))
      fi
      rm -rf "$work/chk-$mode-$round"
      ;;
  esac
  echo "$mode round $round: $out"
  rates[$mode]+="$(field events_per_s "$out") "
}

for ((r = 1; r <= rounds; r++)); do
  # Alternate the order so that no mode always runs first (a cold page
  # cache, a broker still compacting) or last.
  if ((r % 2)); then order=(consume eos alo); else order=(alo eos consume); fi
  for mode in "${order[@]}"; do run_mode "$mode" "$r"; done
done

python3 - "${rates[consume]}" "${rates[eos]}" "${rates[alo]}" "$threads" "$interval" "$failures" \
  "$pipeline" <<'PY'
import json, statistics, sys
c, e, a = ([float(x) for x in s.split()] for s in sys.argv[1:4])
med = lambda v: statistics.median(v)
print(json.dumps({
    "pipeline": sys.argv[7], "threads": int(sys.argv[4]), "checkpoint_interval_ms": int(sys.argv[5]),
    "consume_events_per_s": round(med(c)), "eos_events_per_s": round(med(e)),
    "alo_events_per_s": round(med(a)),
    "eos_over_consume": round(med(e) / med(c), 3), "eos_over_alo": round(med(e) / med(a), 3),
    "runs": len(c), "failures": int(sys.argv[6])}))
PY
((failures == 0))
