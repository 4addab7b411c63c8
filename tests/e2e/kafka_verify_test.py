#!/usr/bin/env python3
"""ctest e2e/kafka_verify_py: `meterstream-bench verify` and the independent
tests/e2e/kafka_verify.py agree, and are right, on topics of Q1 output lines.

Usage: kafka_verify_test.py METERSTREAM_BENCH   (needs MS_KAFKA_BROKERS)

1. A small topic filled with known lines through confluent-kafka's
   transactional producer: committed windows (one repeated, one with a
   trailing newline), an aborted window, a malformed line and an empty
   value. Both tools must report exactly the expected totals.
2. The exactly-once file output of `meterstream-bench q1` for WORKLOAD.md's
   first parameter set (46059 windows, digest 16496968906046104147), written
   to a 3-partition topic: both tools must report WORKLOAD.md's numbers.
3. --expect-json with a wrong digest exits 1.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFY_PY = os.path.join(HERE, "kafka_verify.py")
sys.path.insert(0, HERE)
import kafka_verify  # noqa: E402


def fail(msg):
    print("kafka_verify_test.py: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def run(cmd, expect_rc=0):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != expect_rc:
        fail("%s exited %d (expected %d)\nstdout: %s\nstderr: %s"
             % (" ".join(cmd), p.returncode, expect_rc, p.stdout, p.stderr))
    return p.stdout


def create_topic(admin, topic, partitions):
    from confluent_kafka.admin import NewTopic
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30)
    futures[topic].result(timeout=60)


def transaction(brokers, topic, records, commit):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": brokers, "transactional.id": "ms-py-" + uuid.uuid4().hex,
                  "transaction.timeout.ms": 10000})
    p.init_transactions(60)
    p.begin_transaction()
    for partition, value in records:
        p.produce(topic, value=value, partition=partition)
    p.flush(60)
    if commit:
        p.commit_transaction(60)
    else:
        p.abort_transaction(60)


def both(bench, brokers, topic):
    """Runs both tools; checks they agree; returns the bench's JSON."""
    bench_json = json.loads(run([bench, "verify", "--brokers", brokers, "--topic", topic]))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(bench_json, f)
        path = f.name
    try:
        py_json = json.loads(run([sys.executable, VERIFY_PY, "--brokers", brokers, "--topic",
                                  topic, "--expect-json", path]))
        bad = dict(bench_json, digest=(bench_json["digest"] + 1) % (1 << 64))
        with open(path, "w") as f:
            json.dump(bad, f)
        run([sys.executable, VERIFY_PY, "--brokers", brokers, "--topic", topic,
             "--expect-json", path], expect_rc=1)
    finally:
        os.unlink(path)
    if py_json != bench_json:
        fail("the tools disagree on %s: bench %s, python %s" % (topic, bench_json, py_json))
    return bench_json


def expect(found, **want):
    for k, v in want.items():
        if found.get(k) != v:
            fail("%s: expected %s, found %s (all: %s)" % (k, v, found.get(k), found))


def main():
    if len(sys.argv) != 2:
        fail("usage: kafka_verify_test.py METERSTREAM_BENCH")
    bench = sys.argv[1]
    brokers = os.environ.get("MS_KAFKA_BROKERS")
    if not brokers:
        fail("MS_KAFKA_BROKERS is not set. Run the tests with scripts/test.sh, or start a "
             "broker: export MS_KAFKA_BROKERS=$(scripts/kafka-broker start /tmp/ms-kafka)")
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        fail("python3 cannot import confluent_kafka: run scripts/deps.sh --test")
    admin = AdminClient({"bootstrap.servers": brokers})
    run_id = "%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])

    # 1. Known lines.
    topic = "ms-pyverify-known-" + run_id
    create_topic(admin, topic, 2)
    transaction(brokers, topic, [(0, b"7,1700000040000,3,300,2250,2350"),
                                 (1, b"8,1700000040000,2,120,1800,2300\n")], True)
    transaction(brokers, topic, [(0, b"10,1700000100000,4,4000,2300,2300")], False)
    transaction(brokers, topic, [(1, b"7,1700000040000,3,300,2250,2350"),
                                 (0, b"9,-60000,1,55,2299,2299"),
                                 (0, b"9,1700000100000,1,55,2299,70000"),
                                 (1, b"")], True)
    digest = (2 * kafka_verify.window_digest(7, 1700000040000, 3, 300, 2250, 2350)
              + kafka_verify.window_digest(8, 1700000040000, 2, 120, 1800, 2300)
              + kafka_verify.window_digest(9, -60000, 1, 55, 2299, 2299)) % (1 << 64)
    expect(both(bench, brokers, topic), windows=4, total_count=9, sum_wh=775, digest=digest,
           repeated=1, undecodable=2, records=6, partitions=2)

    # 2. A real Q1 output: WORKLOAD.md's first parameter set.
    with tempfile.TemporaryDirectory(prefix="ms-pyverify-") as tmp:
        out = os.path.join(tmp, "out")
        run([bench, "q1", "--seed", "1", "--meters", "1000", "--events", "200000",
             "--checkpoint-dir", os.path.join(tmp, "ckpt"), "--checkpoint-interval-ms", "60000",
             "--output", out])
        lines = []
        for path in sorted(glob.glob(os.path.join(out, "*.csv"))):
            with open(path, "rb") as f:
                lines.extend(f.read().splitlines())
    topic = "ms-pyverify-q1-" + run_id
    create_topic(admin, topic, 3)
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True,
                  "linger.ms": 20})
    for i, line in enumerate(lines):
        while True:
            try:
                p.produce(topic, value=line, partition=i % 3)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    if p.flush(60) != 0:
        fail("not every line was delivered to %s" % topic)
    expect(both(bench, brokers, topic), windows=46059, total_count=199088, sum_wh=112028929,
           digest=16496968906046104147, repeated=0, undecodable=0, records=46059,
           partitions=3)
    print("kafka_verify_test.py: both tools agree with each other and with the expected "
          "totals")


if __name__ == "__main__":
    main()
