#!/usr/bin/env bash
# Usage: bench/kafka_broker_chaos.sh BENCH [EVENTS [PACE]]
#
# The Kafka broker killed with SIGKILL under a running job, and restarted:
# the job's output must still be exact. Starts a broker of its own
# (scripts/kafka-broker, or $MS_KAFKA_BROKER_SCRIPT, in a temporary DIR) so
# that it disturbs no other test, and stops it at the end whatever happens.
#
# Input: EVENTS (default 600000) events of --seed 9 --meters 5000
# --late-ppm 0 in 4 partitions (no record beyond the bound: a restart from a
# checkpoint may interleave the partitions otherwise; docs/kafka.md,
# "Chaos tests"), read at most PACE (default EVENTS / 15) events per second
# (`kafka-q1 --pace-events-per-s`): the job runs for 15 s or more however
# fast the machine is, so the kill lands while it produces (a transaction
# open, with messages in flight). Two rounds, each with a new output topic,
# group and prefix:
#   1. in-process restart: `BENCH kafka-q1 --restart-attempts 40
#      --restart-delay-ms 2000` (JobOptions::restart); once it has committed
#      a checkpoint the broker is killed, left down 5 s and restarted; the
#      job either waits it out (librdkafka retries) or fails and restarts
#      itself from its last committed checkpoint; it must exit 0;
#   2. supervisor restart: the same without --restart-attempts; a failed run
#      is started again with the same command until one exits 0 (at most 10).
# After each round the output topic, read under read_committed by `BENCH
# verify` and tests/e2e/kafka_verify.py, must hold every window of `BENCH q1`
# of the same workload exactly once. Exits 0 when both rounds passed.
set -euo pipefail

bench="$1"
events="${2:-600000}"
pace="${3:-$((events / 15))}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="${MS_KAFKA_BROKER_SCRIPT:-$here/../scripts/kafka-broker}"

work="$(mktemp -d "${TMPDIR:-/tmp}/ms-broker-chaos.XXXXXX")"
job_pid=""
cleanup() {
  [[ -n "$job_pid" ]] && kill -9 "$job_pid" 2>/dev/null
  "$script" stop "$work/broker" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
started=$SECONDS
brokers="$("$script" start "$work/broker")"
echo "kafka_broker_chaos.sh: own broker at $brokers (started in $((SECONDS - started)) s)"
# shellcheck source=bench/kafka_common.sh
source "$here/kafka_common.sh"
kc_require_python_kafka

tag="$$-$RANDOM"
workload=(--seed 9 --meters 5000 --events "$events" --late-ppm 0)
input="ms-chaos-in-$tag"
"$bench" produce --brokers "$brokers" --topic "$input" --partitions 4 "${workload[@]}" >/dev/null
expected="$("$bench" q1 "${workload[@]}" --threads 2)"
echo "uninterrupted q1: $expected"
failures=0

# kill_broker_mid_run GROUP: waits for the job ($job_pid) to commit a
# checkpoint, then kills the broker, waits 5 s and restarts it (always, so
# that what follows has a broker). Fails when the job ended before the kill
# (then nothing was tested: PACE too high for EVENTS).
kill_broker_mid_run() {
  local deadline=$((SECONDS + 300)) rc=0
  while (($(kc_committed "$1" "$input") <= 0)); do
    if ! kill -0 "$job_pid" 2>/dev/null || ((SECONDS > deadline)); then
      echo "the job ended (or committed nothing in 300 s) before the broker could be killed" >&2
      return 1
    fi
    sleep 0.3
  done
  "$script" kill "$work/broker"
  if kill -0 "$job_pid" 2>/dev/null; then
    echo "broker killed while the job runs (it had committed a checkpoint)"
  else
    echo "the job ended before the broker was killed: lower PACE or raise EVENTS" >&2
    rc=1
  fi
  sleep 5
  local t=$SECONDS
  "$script" restart "$work/broker" >/dev/null
  echo "broker restarted in $((SECONDS - t)) s"
  return $rc
}

round() { # round NAME EXTRA-FLAGS...
  local name="$1"
  shift
  local output="ms-chaos-out-$tag-$name" group="ms-chaos-group-$tag-$name"
  kc_create_topic "$output" 3
  local cmd=("$bench" kafka-q1 --brokers "$brokers" --input "$input" --output-topic "$output"
    --group "$group" --transactional-id-prefix "ms-chaos-job-$tag-$name"
    --checkpoint-dir "$work/chk-$name" --checkpoint-interval-ms 500 --threads 2
    --pace-events-per-s "$pace" "$@")
  "${cmd[@]}" >"$work/$name.json" 2>"$work/$name.err" &
  job_pid=$!
  if ! kill_broker_mid_run "$group"; then
    failures=$((failures + 1))
  fi
  local rc=0 runs=1
  wait "$job_pid" || rc=$?
  job_pid=""
  while ((rc != 0 && runs < 10)); do
    echo "$name: run $runs exited $rc: $(tail -n 1 "$work/$name.err")"
    if [[ "$name" == in-process ]]; then break; fi
    runs=$((runs + 1))
    rc=0
    "${cmd[@]}" >"$work/$name.json" 2>"$work/$name.err" || rc=$?
  done
  if ((rc != 0)); then
    echo "$name: the job did not finish (exit $rc):" >&2
    cat "$work/$name.err" >&2
    failures=$((failures + 1))
    return
  fi
  echo "$name: finished after $runs run(s): $(cat "$work/$name.json")"
  grep 'meterstream: the job failed' "$work/$name.err" | sed "s/^/$name: /" || true
  kc_check_output "$output" "$expected" "$name" || failures=$((failures + 1))
}

round in-process --restart-attempts 40 --restart-delay-ms 2000
round supervisor
echo "kafka_broker_chaos.sh: $failures failures, $((SECONDS - started)) s"
((failures == 0))
