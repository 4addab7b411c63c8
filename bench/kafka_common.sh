# Helpers of the Kafka chaos scripts (bench/kafka_crash_resume.sh,
# bench/kafka_broker_chaos.sh, bench/outage_replay.sh); sourced, not run.
# Needs $bench (meterstream-bench), $brokers and Python's confluent-kafka.

kc_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kc_verify_py="$kc_here/../tests/e2e/kafka_verify.py"

kc_require_python_kafka() {
  python3 -c 'import confluent_kafka' 2>/dev/null || {
    echo "$(basename "$0"): needs Python's confluent-kafka (scripts/deps.sh --test)" >&2
    exit 2
  }
}

kc_field() { # kc_field NAME JSON
  python3 -c 'import json,sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"
}

kc_create_topic() { # kc_create_topic NAME PARTITIONS
  python3 - "$brokers" "$1" "$2" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
admin.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)])[sys.argv[2]].result(60)
EOF
}

# kc_committed GROUP TOPIC: the sum over TOPIC's partitions of GROUP's
# committed offsets (0 for a partition without one), or -1 when the broker
# does not answer.
kc_committed() {
  python3 - "$brokers" "$1" "$2" <<'EOF' 2>/dev/null || echo -1
import sys
from confluent_kafka import Consumer, TopicPartition
brokers, group, topic = sys.argv[1:4]
c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False,
              "isolation.level": "read_committed"})
parts = c.list_topics(topic, timeout=5).topics[topic].partitions
got = c.committed([TopicPartition(topic, p) for p in parts], timeout=5)
print(sum(max(tp.offset, 0) for tp in got))
c.close()
EOF
}

# kc_check_output TOPIC EXPECTED-JSON WHAT: `$bench verify` and
# kafka_verify.py read TOPIC under read_committed; both must give EXPECTED's
# windows, total_count, sum_wh and digest, with nothing repeated or
# undecodable. Returns 1 (and says why) otherwise.
kc_check_output() {
  local topic="$1" expected="$2" what="$3" got f ok=1
  if ! got="$("$bench" verify --brokers "$brokers" --topic "$topic")"; then
    echo "$what: verify failed on $topic" >&2
    return 1
  fi
  for f in windows total_count sum_wh digest; do
    [[ "$(kc_field "$f" "$got")" == "$(kc_field "$f" "$expected")" ]] || ok=0
  done
  [[ "$(kc_field repeated "$got")" == 0 && "$(kc_field undecodable "$got")" == 0 ]] || ok=0
  if ((ok)) && printf '%s' "$got" |
    python3 "$kc_verify_py" --brokers "$brokers" --topic "$topic" --expect-json - >/dev/null; then
    echo "$what: read_committed $topic matches (verify and kafka_verify.py: $got)"
    return 0
  fi
  echo "$what: MISMATCH: $topic has $got, expected $expected" >&2
  kc_partition_report "$topic" >&2 || true
  return 1
}

# kc_partition_report TOPIC: per partition, the end offset (high watermark),
# the last stable offset (held below the end by an open transaction) and the
# messages read under read_committed and read_uncommitted: tells lost output
# (not in the log, or in aborted transactions) from a hanging transaction.
kc_partition_report() {
  python3 - "$brokers" "$1" <<'EOF' 2>/dev/null
import sys
from confluent_kafka import Consumer, TopicPartition
brokers, topic = sys.argv[1:3]
rows = {}
for iso in ("read_uncommitted", "read_committed"):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "kc-partition-report",
                  "enable.auto.commit": False, "isolation.level": iso,
                  "enable.partition.eof": True})
    parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    read, eof = {p: 0 for p in parts}, set()
    while len(eof) < len(parts):
        m = c.poll(10)
        if m is None:
            break
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
            continue
        read[m.partition()] += 1
    c.close()
    for p in parts:
        rows.setdefault(p, {})[iso] = (ends[p], read[p])
for p, r in sorted(rows.items()):
    print(f"{topic}[{p}]: end {r['read_uncommitted'][0]}, last stable {r['read_committed'][0]}, "
          f"read committed {r['read_committed'][1]}, uncommitted {r['read_uncommitted'][1]}")
EOF
}
