#!/usr/bin/env python3
"""ctest e2e/kafka_q1: `meterstream-bench kafka-q1` computes Q1 from a Kafka
topic into a Kafka topic, exactly once, against the real broker.

Usage: kafka_q1_test.py METERSTREAM_BENCH   (needs MS_KAFKA_BROKERS)

1. WORKLOAD.md's first Q1 row (--seed 1 --meters 1000 --events 200000, late
   records included) produced into a 1-partition topic: kafka-q1 (2 threads,
   exactly once) prints that row, and the output topic read under
   read_committed by `meterstream-bench verify` and by the independent
   tests/e2e/kafka_verify.py holds exactly that row (windows, total_count,
   sum_wh, digest), nothing repeated.
2. A late-ppm-0 workload in a 4-partition topic (a multi-partition input only
   gives deterministic results when no record exceeds the bound: docs, "Chaos
   tests"): kafka-q1 with 3 threads gives what `meterstream-bench q1` of the
   same parameters gives, in its JSON and in the output topic.
3. The same input with --delivery at_least_once: same totals (no failure, so
   nothing written twice).
4. A run on the topic of 1. after it finished, from its checkpoint: the input
   ends at once (the final checkpoint is restored) and nothing is added.
"""

import json
import os
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFY_PY = os.path.join(HERE, "kafka_verify.py")

ROW1 = {"windows": 46059, "late_dropped": 912, "total_count": 199088, "sum_wh": 112028929,
        "digest": 16496968906046104147}
KEYS = ("windows", "total_count", "sum_wh", "digest")


def fail(msg):
    print("kafka_q1_test.py: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        fail("%s exited %d\nstdout: %s\nstderr: %s"
             % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return json.loads(p.stdout)


def create_topic(brokers, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=60)


def check_output(bench, brokers, topic, expected, what):
    """verify and kafka_verify.py on `topic` both give `expected`'s KEYS."""
    got = run([bench, "verify", "--brokers", brokers, "--topic", topic])
    for k in KEYS:
        if got[k] != expected[k]:
            fail("%s: verify %s = %s, expected %s (%s)" % (what, k, got[k], expected[k], got))
    if got["repeated"] != 0 or got["undecodable"] != 0:
        fail("%s: verify found repeated or undecodable records: %s" % (what, got))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(got, f)
        path = f.name
    try:
        run([sys.executable, VERIFY_PY, "--brokers", brokers, "--topic", topic,
             "--expect-json", path])
    finally:
        os.unlink(path)
    print("%s: %s" % (what, got))


def main():
    if len(sys.argv) != 2:
        fail("usage: kafka_q1_test.py METERSTREAM_BENCH")
    bench = sys.argv[1]
    brokers = os.environ.get("MS_KAFKA_BROKERS", "")
    if not brokers:
        fail("MS_KAFKA_BROKERS is not set: start a broker with "
             "`export MS_KAFKA_BROKERS=$(scripts/kafka-broker start /tmp/ms-kafka)`")
    tag = uuid.uuid4().hex[:8]
    work = tempfile.mkdtemp(prefix="ms-kafka-q1-")

    def kafka_q1(name, input_topic, threads, extra=()):
        out = "ms-q1-out-%s-%s" % (name, tag)
        create_topic(brokers, out, 2)
        cmd = [bench, "kafka-q1", "--brokers", brokers, "--input", input_topic,
               "--output-topic", out, "--group", "ms-q1-group-%s-%s" % (name, tag),
               "--transactional-id-prefix", "ms-q1-job-%s-%s" % (name, tag),
               "--checkpoint-dir", os.path.join(work, name), "--checkpoint-interval-ms", "500",
               "--threads", str(threads)] + list(extra)
        return out, cmd

    # 1. WORKLOAD's first row through a 1-partition topic.
    row1 = ["--seed", "1", "--meters", "1000", "--events", "200000"]
    in1 = "ms-q1-in1-" + tag
    run([bench, "produce", "--brokers", brokers, "--topic", in1, "--partitions", "1"] + row1)
    out1, cmd1 = kafka_q1("row1", in1, 2)
    got = run(cmd1)
    for k, v in ROW1.items():
        if got[k] != v:
            fail("row 1: kafka-q1 %s = %s, expected %s (%s)" % (k, got[k], v, got))
    if got["events"] != 200000 or got["undecodable"] != 0:
        fail("row 1: kafka-q1 read %s events, %s undecodable" % (got["events"],
                                                                 got["undecodable"]))
    print("row 1 kafka-q1: %s" % got)
    check_output(bench, brokers, out1, ROW1, "row 1 output")

    # 4. Again from its final checkpoint: nothing more is read or written.
    again = run(cmd1)
    if again["events"] != 0 or again["windows"] != 0:
        fail("a run restored from the final checkpoint read or wrote again: %s" % again)
    check_output(bench, brokers, out1, ROW1, "row 1 output after a rerun")

    # 2. A late-ppm-0 workload through 4 partitions, against q1 of the same flags.
    small = ["--seed", "11", "--meters", "3000", "--events", "120000", "--late-ppm", "0"]
    q1 = run([bench, "q1"] + small + ["--threads", "2"])
    if q1["late_dropped"] != 0:
        fail("the late-ppm-0 workload has late records: %s" % q1)
    in4 = "ms-q1-in4-" + tag
    run([bench, "produce", "--brokers", brokers, "--topic", in4, "--partitions", "4"] + small)
    out4, cmd4 = kafka_q1("p4", in4, 3)
    got = run(cmd4)
    for k in KEYS + ("late_dropped",):
        if got[k] != q1[k]:
            fail("4 partitions: kafka-q1 %s = %s, q1 gives %s (%s)" % (k, got[k], q1[k], got))
    print("4 partitions kafka-q1: %s" % got)
    check_output(bench, brokers, out4, q1, "4 partitions output")

    # 3. at_least_once delivery, same input.
    out_alo, cmd_alo = kafka_q1("alo", in4, 2, ["--delivery", "at_least_once"])
    got = run(cmd_alo)
    for k in KEYS:
        if got[k] != q1[k]:
            fail("at_least_once: kafka-q1 %s = %s, q1 gives %s" % (k, got[k], q1[k]))
    check_output(bench, brokers, out_alo, q1, "at_least_once output")
    print("kafka_q1_test.py: OK")


if __name__ == "__main__":
    main()
