#!/usr/bin/env bash
# Usage: bench/kafka_crash_resume.sh BENCH [KILLS] [Q1 FLAGS...]
#
# The crash-and-resume check of the exactly-once Kafka sink, against the
# real broker at $MS_KAFKA_BROKERS: runs `BENCH q1 FLAGS --checkpoint-dir ..
# --checkpoint-interval-ms 200 --brokers B --output-topic O
# --transactional-id-prefix X`, kills it with SIGKILL, restarts it with the
# same command (and another --threads: 1, 2, 3 in turn), KILLS times
# (default 10), lets the last run finish, then reads O under read_committed
# with confluent-kafka (Python, independent of meterstream) and checks with
# `BENCH check-output` that it holds every window of the uninterrupted run
# exactly once: same windows, count, sum and digest, nothing repeated.
#
# Kills alternate between a random moment (processing) and the phases of a
# checkpoint through the MS_CHECKPOINT_KILL_AT test hook: while workers
# snapshot, between uploads, before the metadata, between the metadata and
# the Kafka commit ("commit"), inside the transaction commit ("kafka-commit":
# offsets sent, commit_transaction not returned) and just after it
# ("committed"). A restart after a SIGKILL waits for the killed run's lease
# to expire (about 6 s). A run that finishes before it is killed ends a
# sequence (checked; new topic, prefix and folder).
# Exits 0 when every check passed.
set -euo pipefail

bench="$1"
kills="${2:-10}"
shift $(($# >= 2 ? 2 : 1))
q1_flags=("$@")
if ((${#q1_flags[@]} == 0)); then
  q1_flags=(--seed 1 --meters 1000 --events 200000)
fi
: "${MS_KAFKA_BROKERS:?MS_KAFKA_BROKERS must name a running Kafka broker (scripts/kafka-broker start DIR)}"
brokers="$MS_KAFKA_BROKERS"
python3 -c 'import confluent_kafka' 2>/dev/null || {
  echo "kafka_crash_resume.sh: needs Python's confluent-kafka (scripts/deps.sh --test)" >&2
  exit 2
}

work="$(mktemp -d "${TMPDIR:-/tmp}/ms-kafka-crash.XXXXXX")"
trap 'rm -rf "$work"' EXIT

field() { # field NAME JSON
  python3 -c 'import json,sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"
}

# create_topic NAME PARTITIONS
create_topic() {
  python3 - "$brokers" "$1" "$2" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
f = admin.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)])
for _, fut in f.items():
    fut.result(30)
EOF
}

# read_committed TOPIC DIR: every message value of TOPIC, one per line, into DIR/all.csv.
read_committed() {
  mkdir -p "$2"
  python3 - "$brokers" "$1" "$2/all.csv" <<'EOF'
import sys, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING, KafkaError
brokers, topic, out = sys.argv[1], sys.argv[2], sys.argv[3]
c = Consumer({"bootstrap.servers": brokers, "group.id": "crash-check-" + topic,
              "enable.auto.commit": False, "enable.partition.eof": True,
              "isolation.level": "read_committed"})
parts = c.list_topics(topic, timeout=30).topics[topic].partitions
c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
done, n, deadline = set(), 0, time.time() + 300
with open(out, "w") as f:
    while len(done) < len(parts) and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                done.add(m.partition())
                continue
            raise SystemExit("read error: %s" % m.error())
        f.write(m.value().decode() + "\n")
        n += 1
c.close()
if len(done) < len(parts):
    raise SystemExit("did not reach the end of %s (last stable offset held?)" % topic)
EOF
}

expected="$("$bench" q1 "${q1_flags[@]}" --threads 2)"
echo "uninterrupted: $expected"

sequence=0
killed=0
run=0
failures=0
phases=(time snapshot time upload time metadata time commit time kafka-commit time committed)

new_sequence() {
  sequence=$((sequence + 1))
  rm -rf "$work/chk" "$work/out"
  topic="ms-crash-$$-$sequence"
  prefix="ms-crash-job-$$-$sequence"
  create_topic "$topic" 3
}

check_output() {
  rm -rf "$work/out"
  if ! read_committed "$topic" "$work/out"; then
    echo "sequence $sequence: cannot read $topic" >&2
    failures=$((failures + 1))
    return
  fi
  local got
  got="$("$bench" check-output --output "$work/out")"
  local ok=1
  for f in windows total_count sum_wh digest; do
    if [[ "$(field "$f" "$got")" != "$(field "$f" "$expected")" ]]; then ok=0; fi
  done
  [[ "$(field repeated "$got")" == 0 && "$(field malformed "$got")" == 0 ]] || ok=0
  if ((ok)); then
    echo "sequence $sequence: read_committed $topic matches ($got)"
  else
    echo "sequence $sequence: MISMATCH: read_committed $topic has $got, expected $expected" >&2
    failures=$((failures + 1))
  fi
}

run_once() { # run_once PHASE -> sets rc
  local phase="$1" threads=$((run % 3 + 1))
  run=$((run + 1))
  local cmd=("$bench" q1 "${q1_flags[@]}" --threads "$threads" --checkpoint-dir "$work/chk"
    --checkpoint-interval-ms 200 --brokers "$brokers" --output-topic "$topic"
    --transactional-id-prefix "$prefix")
  if [[ "$phase" == time ]]; then
    "${cmd[@]}" >"$work/run.json" 2>"$work/run.err" &
    local pid=$!
    # The start (lease, fencing) takes a few seconds after a kill: kill later.
    sleep "$((RANDOM % 3)).$((RANDOM % 9 + 1))"
    kill -9 "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" || rc=$?
  else
    rc=0
    MS_CHECKPOINT_KILL_AT="$phase:$((RANDOM % 3 + 1))" "${cmd[@]}" >"$work/run.json" \
      2>"$work/run.err" || rc=$?
  fi
  echo "run $run (threads $threads, kill at $phase): exit $rc"
  if ((rc != 0 && rc != 137)); then
    echo "run $run failed:" >&2
    cat "$work/run.err" >&2
    failures=$((failures + 1))
  fi
}

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
  echo "the last run did not finish" >&2
  failures=$((failures + 1))
fi
echo "kafka_crash_resume.sh: $killed kills in $run runs over $sequence sequences, $failures failures"
((failures == 0))
