#!/usr/bin/env bash
# Usage: bench/kafka_crash_resume.sh BENCH [KILLS] [EVENTS]
#
# The crash-and-resume check of Kafka end to end, against the real broker at
# $MS_KAFKA_BROKERS: `BENCH kafka-q1` reads an input topic that `BENCH
# produce` filled, checkpoints every 200 ms and writes its windows exactly
# once to an output topic; it is killed with SIGKILL, restarted with the same
# command (and another --threads: 1, 2, 3 in turn), KILLS times per input
# (default 9), then a last run finishes. The output topic is then read under
# read_committed by `BENCH verify` and by tests/e2e/kafka_verify.py
# (confluent-kafka, independent of meterstream): both must hold every window
# of the uninterrupted run exactly once (windows, count, sum, digest of
# `BENCH q1` over the same workload; nothing repeated).
#
# Two inputs (the determinism note of docs/kafka_sink.md, "Chaos tests"):
#   - 4 partitions, --late-ppm 0: with several partitions which records are
#     late depends on how the partitions interleave, so the exact check uses
#     an input where no record exceeds the bound;
#   - 1 partition, late records included (the workload's default 1%): one
#     partition is read in one order, so late records are judged the same
#     by every run, restored or not.
# EVENTS (default 100000) events each, 1000 and 2000 meters.
#
# Kills alternate between a random moment and the phases of a checkpoint
# through the MS_CHECKPOINT_KILL_AT test hook (docs/checkpoints.md): while
# workers snapshot, between uploads, before the metadata, between the
# metadata and the Kafka commit ("commit"), inside the transaction commit
# ("kafka-commit": offsets sent, commit_transaction not returned) and just
# after it ("committed"). A restart after a SIGKILL waits for the killed
# run's lease to expire (about 6 s). A run that finishes before it is killed
# ends a sequence (checked; new output topic, group, prefix and folder).
# Exits 0 when every check passed.
set -euo pipefail

bench="$1"
kills="${2:-9}"
events="${3:-100000}"
: "${MS_KAFKA_BROKERS:?MS_KAFKA_BROKERS must name a running Kafka broker (scripts/kafka-broker start DIR)}"
brokers="$MS_KAFKA_BROKERS"
# shellcheck source=bench/kafka_common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka_common.sh"
kc_require_python_kafka

work="$(mktemp -d "${TMPDIR:-/tmp}/ms-kafka-crash.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tag="$$-$RANDOM"
started=$SECONDS

total_kills=0
run=0
failures=0
phases=(time snapshot upload time metadata commit time kafka-commit committed)
declare -A max_tenths=([first]=15 [restart]=80)

new_sequence() {
  sequence=$((sequence + 1))
  rm -rf "$work/chk" "$work/started"
  output="ms-crash-out-$tag-$name-$sequence"
  group="ms-crash-group-$tag-$name-$sequence"
  prefix="ms-crash-job-$tag-$name-$sequence"
  kc_create_topic "$output" 3
}

check_output() {
  kc_check_output "$output" "$expected" "$name sequence $sequence" || failures=$((failures + 1))
}

run_once() { # run_once PHASE -> sets rc
  local phase="$1" threads=$((run % 3 + 1))
  run=$((run + 1))
  local cmd=("$bench" kafka-q1 --brokers "$brokers" --input "$input" --output-topic "$output"
    --group "$group" --transactional-id-prefix "$prefix" --checkpoint-dir "$work/chk"
    --checkpoint-interval-ms 200 --threads "$threads")
  if [[ "$phase" == time ]]; then
    "${cmd[@]}" >"$work/run.json" 2>"$work/run.err" &
    local pid=$!
    # A random moment within the run's expected life: a restart first waits
    # for the killed run's lease to expire (6 s and more), a first run does
    # not. A run that ends before its kill shortens that kind's window.
    local kind=first
    [[ -e "$work/started" ]] && kind=restart
    local tenths=$((RANDOM % ${max_tenths[$kind]} + 1)) t0=$SECONDS
    sleep "$((tenths / 10)).$((tenths % 10))"
    kill -9 "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    if ((rc == 0)); then
      max_tenths[$kind]=$(((SECONDS - t0) * 7 + 5))
    fi
  else
    rc=0
    # In a subshell: bash does not report the SIGKILL of a foreground job.
    (MS_CHECKPOINT_KILL_AT="$phase:$((RANDOM % 3 + 1))" exec "${cmd[@]}" >"$work/run.json" \
      2>"$work/run.err") 2>/dev/null || rc=$?
  fi
  touch "$work/started"
  echo "$name run $run (threads $threads, kill at $phase): exit $rc"
  if ((rc != 0 && rc != 137)); then
    echo "$name run $run failed:" >&2
    cat "$work/run.err" >&2
    failures=$((failures + 1))
  fi
}

# scenario NAME PARTITIONS WORKLOAD-FLAGS...
scenario() {
  name="$1"
  local partitions="$2"
  shift 2
  local workload=("$@")
  input="ms-crash-in-$tag-$name"
  "$bench" produce --brokers "$brokers" --topic "$input" --partitions "$partitions" \
    "${workload[@]}" >/dev/null
  expected="$("$bench" q1 "${workload[@]}" --threads 2)"
  echo "$name: $partitions partition(s), ${workload[*]}; uninterrupted q1: $expected"
  sequence=0
  local killed=0
  new_sequence
  while ((killed < kills)); do
    run_once "${phases[$((killed % ${#phases[@]}))]}"
    if ((rc == 137)); then
      killed=$((killed + 1))
    elif ((rc == 0)); then
      check_output
      new_sequence
    else
      break
    fi
  done
  for _ in 1 2 3; do
    run_once none
    if ((rc == 0)); then
      check_output
      break
    fi
  done
  if ((rc != 0)); then
    echo "$name: the last run did not finish" >&2
    failures=$((failures + 1))
  fi
  total_kills=$((total_kills + killed))
  echo "$name: $killed kills over $sequence sequence(s)"
}

scenario p4 4 --seed 7 --meters 2000 --events "$events" --late-ppm 0
scenario p1-late 1 --seed 1 --meters 1000 --events "$events"
echo "kafka_crash_resume.sh: $total_kills kills in $run runs, $failures failures, $((SECONDS - started)) s"
((failures == 0))
