#!/usr/bin/env bash
# Usage: bench/outage_replay.sh BENCH [EVENTS] [PART1] [METERS] [PARTITIONS] [THREADS]
#
# The outage replay of the seed (a 3-hour network partition), against the
# real broker at $MS_KAFKA_BROKERS:
#   1. `BENCH produce` writes the first PART1 events of the workload
#      (--seed 5 --meters METERS --events EVENTS --late-ppm 0) into a topic of
#      PARTITIONS partitions;
#   2. `BENCH kafka-q1 --bounded no` (unbounded, as a production job runs)
#      reads them, exactly once into an output topic, checkpointing every
#      second; once the consumer group's committed offsets (committed inside
#      the checkpoints' transactions) cover all of part 1, the job is killed
#      with SIGKILL: the outage begins, with windows still open;
#   3. while it is down, `BENCH produce --skip PART1` appends the rest of the
#      workload, EVENTS - PART1 events (with the defaults 800000 events of
#      1000 meters, 15 s apart per meter: 3.03 hours of event time);
#   4. `BENCH kafka-q1 --bounded each-start` with the same command restores
#      the committed checkpoint, reads up to the end offsets found at this
#      start (a restored Flink-style bounded job would keep the end offsets
#      of its first start and never see the backlog), fires every window and
#      exits: its events_per_s is the catch-up rate (events read by the run
#      over its wall time, start and restore included);
#   5. the output topic, read under read_committed by `BENCH verify` and
#      tests/e2e/kafka_verify.py, must hold every window of `BENCH q1` over
#      the whole workload exactly once (windows, count, sum, digest; nothing
#      repeated). --late-ppm 0: which records are late in a multi-partition
#      topic depends on how partitions interleave (docs/kafka_sink.md,
#      "Chaos tests").
# With REFERENCE=1 it also runs kafka-q1 over the whole topic from scratch
# (new group, prefix and output), for the catch-up rate's ratio to a run
# that was never interrupted. Prints the figures; exits 0 when the checks
# passed.
set -euo pipefail

bench="$1"
events="${2:-900000}"
part1="${3:-100000}"
meters="${4:-1000}"
partitions="${5:-4}"
threads="${6:-2}"
: "${MS_KAFKA_BROKERS:?MS_KAFKA_BROKERS must name a running Kafka broker (scripts/kafka-broker start DIR)}"
brokers="$MS_KAFKA_BROKERS"
# shellcheck source=bench/kafka_common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka_common.sh"
kc_require_python_kafka
((part1 > 0 && part1 < events)) || {
  echo "outage_replay.sh: PART1 must be in (0, EVENTS)" >&2
  exit 2
}

work="$(mktemp -d "${TMPDIR:-/tmp}/ms-outage.XXXXXX")"
job_pid=""
cleanup() {
  [[ -n "$job_pid" ]] && kill -9 "$job_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
tag="$$-$RANDOM"
workload=(--seed 5 --meters "$meters" --late-ppm 0)
input="ms-outage-in-$tag"
output="ms-outage-out-$tag"
group="ms-outage-group-$tag"
prefix="ms-outage-job-$tag"
kc_create_topic "$output" 3
# Event time of the backlog: the workload reports (meters - 1 + 100) times per
# 15 s round (WORKLOAD.md, hot factor 100).
backlog_h="$(python3 -c "print(round(($events - $part1) / ($meters - 1 + 100) * 15 / 3600, 2))")"
echo "outage_replay.sh: $events events of $meters meters into $partitions partitions; part 1: $part1, backlog: $((events - part1)) events, ${backlog_h} h of event time"

job=("$bench" kafka-q1 --brokers "$brokers" --input "$input" --output-topic "$output"
  --group "$group" --transactional-id-prefix "$prefix" --checkpoint-dir "$work/chk"
  --checkpoint-interval-ms 1000 --threads "$threads")

"$bench" produce --brokers "$brokers" --topic "$input" --partitions "$partitions" \
  --events "$part1" "${workload[@]}" >/dev/null
"${job[@]}" --bounded no >"$work/run1.json" 2>"$work/run1.err" &
job_pid=$!
deadline=$((SECONDS + 600))
while :; do
  if ! kill -0 "$job_pid" 2>/dev/null; then
    echo "outage_replay.sh: the unbounded run ended by itself:" >&2
    cat "$work/run1.err" >&2
    exit 1
  fi
  committed="$(kc_committed "$group" "$input")"
  ((committed >= part1)) && break
  if ((SECONDS > deadline)); then
    echo "outage_replay.sh: part 1 not committed in 600 s (committed offsets: $committed)" >&2
    exit 1
  fi
  sleep 0.5
done
kill -9 "$job_pid"
wait "$job_pid" 2>/dev/null || true
job_pid=""
down=$SECONDS
echo "part 1 read and committed (group offsets $committed); job killed: the outage begins"

produced="$("$bench" produce --brokers "$brokers" --topic "$input" --partitions "$partitions" \
  --events "$events" --skip "$part1" "${workload[@]}")"
echo "backlog produced while the job is down: $produced"
# Three hours without the job: its lease (6 s) has long expired when it
# comes back; wait it out here so that the catch-up rate does not include it.
while ((SECONDS - down < 10)); do sleep 1; done

catchup="$("${job[@]}" --bounded each-start 2>"$work/run2.err")" || {
  echo "outage_replay.sh: the resumed run failed:" >&2
  cat "$work/run2.err" >&2
  exit 1
}
echo "catch-up run: $catchup"
expected="$("$bench" q1 "${workload[@]}" --events "$events" --threads 2)"
echo "uninterrupted q1: $expected"
failures=0
kc_check_output "$output" "$expected" "outage replay" || failures=1
read_back="$(kc_field events "$catchup")"
((read_back >= events - part1)) || {
  echo "the catch-up run read $read_back events, fewer than the backlog" >&2
  failures=1
}
rate="$(kc_field events_per_s "$catchup")"
echo "catch-up: $read_back events in $(kc_field proc_s "$catchup") s: $rate events/s"

if [[ "${REFERENCE:-0}" == 1 ]]; then
  kc_create_topic "$output-ref" 3
  reference="$("$bench" kafka-q1 --brokers "$brokers" --input "$input" \
    --output-topic "$output-ref" --group "$group-ref" --transactional-id-prefix "$prefix-ref" \
    --checkpoint-dir "$work/chk-ref" --checkpoint-interval-ms 1000 --threads "$threads")"
  echo "uninterrupted kafka-q1 over the whole topic: $reference"
  python3 -c "import sys; print('catch-up rate / uninterrupted rate: %.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" \
    "$rate" "$(kc_field events_per_s "$reference")"
fi
((failures == 0))
