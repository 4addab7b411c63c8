#!/usr/bin/env python3
"""Independent check of a Kafka topic of Q1 output windows.

Usage: kafka_verify.py --brokers B --topic O [--expect-json FILE] [--timeout-s S]

Reads every partition of topic O from the beginning up to the high
watermark found at the start, under isolation.level=read_committed (waiting
up to S seconds, default 120, for open transactions to end), with PyPI's
confluent-kafka (its own librdkafka, not meterstream's). Each record value is
a line `meter_id,start,count,sum_wh,min_v,max_v` (decimal integers, one
trailing newline allowed), as `meterstream-bench kafka-q1` writes them.

Prints one JSON line with what `meterstream-bench verify` prints:
windows, total_count, sum_wh, digest (shared/bench/WORKLOAD.md's Q1 digest,
repeated windows included), repeated (records whose (meter_id, start) an
earlier record had), undecodable, records, partitions.

With --expect-json FILE (a file holding `meterstream-bench verify`'s JSON,
or - for stdin) it compares every key the file has with its own result and
exits 1 naming the differences. Exit 0: read (and matched); 1: mismatch or
the broker failed; 2: usage error or missing topic.
"""

import argparse
import json
import re
import sys
import time

MASK = (1 << 64) - 1
U64 = re.compile(rb"^[0-9]+$")
I64 = re.compile(rb"^-?[0-9]+$")


def fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK
    k ^= k >> 33
    return k


def window_digest(meter_id, start, count, sum_wh, min_v, max_v):
    h = fmix64(meter_id)
    h = fmix64(h ^ (start & MASK))
    h = fmix64(h ^ count)
    h = fmix64(h ^ sum_wh)
    return fmix64(h ^ ((min_v << 16) | max_v))


def parse_line(value):
    """The window of one record value, or None when it does not parse."""
    if value is None:
        return None
    if value.endswith(b"\n"):
        value = value[:-1]
    fields = value.split(b",")
    if len(fields) != 6:
        return None
    meter_id, start, count, sum_wh, min_v, max_v = fields
    for f in (meter_id, count, sum_wh, min_v, max_v):
        if not U64.match(f):
            return None
    if not I64.match(start):
        return None
    w = [int(f) for f in fields]
    if w[0] > MASK or w[2] > MASK or w[3] > MASK:
        return None
    if not -(1 << 63) <= w[1] < (1 << 63):
        return None
    if w[4] > 0xFFFF or w[5] > 0xFFFF:
        return None
    return tuple(w)


def read_topic(brokers, topic, timeout_s):
    from confluent_kafka import (Consumer, KafkaError, KafkaException, TopicPartition,
                                 OFFSET_BEGINNING)

    common = {"bootstrap.servers": brokers, "group.id": "meterstream-kafka-verify-py",
              "enable.auto.commit": False}
    probe = Consumer(dict(common, **{"isolation.level": "read_uncommitted"}))
    md = probe.list_topics(timeout=30)
    if topic not in md.topics or md.topics[topic].error is not None:
        probe.close()
        raise LookupError("topic %s does not exist on %s" % (topic, brokers))
    partitions = sorted(md.topics[topic].partitions)
    end = {}
    for p in partitions:
        # Retried: a broker that has just restarted answers "not leader" for
        # a moment.
        query_deadline = time.monotonic() + 30
        while True:
            try:
                low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                        cached=False)
                break
            except KafkaException:
                if time.monotonic() > query_deadline:
                    probe.close()
                    raise
                time.sleep(0.2)
        end[p] = high if high > low else None  # None: nothing to read
    probe.close()

    consumer = Consumer(dict(common, **{"isolation.level": "read_committed",
                                        "enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    pending = {p for p in partitions if end[p] is not None}
    reached = {p: 0 for p in partitions}
    values = []
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            state = " ".join("[%d] at %d of %d" % (p, reached[p], end[p]) for p in sorted(pending))
            consumer.close()
            raise TimeoutError("reading %s under read_committed did not reach the end offsets "
                               "found at start within %ss: %s" % (topic, timeout_s, state))
        m = consumer.poll(0.2)
        if m is None:
            continue
        p = m.partition()
        if m.error() is not None:
            if m.error().code() == KafkaError._PARTITION_EOF:
                reached[p] = max(reached[p], m.offset())
                if p in pending and m.offset() >= end[p]:
                    pending.discard(p)
                continue
            if m.error().fatal() or m.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                consumer.close()
                raise RuntimeError("reading %s: %s" % (topic, m.error()))
            continue  # transient: librdkafka retries
        if end[p] is not None and m.offset() < end[p]:
            values.append(m.value())
        reached[p] = max(reached[p], m.offset() + 1)
        if p in pending and m.offset() + 1 >= end[p]:
            pending.discard(p)
    consumer.close()
    return values, len(partitions)


def check(values, partitions):
    windows = total_count = sum_wh = digest = undecodable = 0
    seen = set()
    repeated = 0
    for v in values:
        w = parse_line(v)
        if w is None:
            undecodable += 1
            continue
        windows += 1
        total_count = (total_count + w[2]) & MASK
        sum_wh = (sum_wh + w[3]) & MASK
        digest = (digest + window_digest(*w)) & MASK
        key = (w[0], w[1])
        if key in seen:
            repeated += 1
        seen.add(key)
    return {"windows": windows, "total_count": total_count, "sum_wh": sum_wh,
            "digest": digest, "repeated": repeated, "undecodable": undecodable,
            "records": len(values), "partitions": partitions}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--expect-json", metavar="FILE")
    ap.add_argument("--timeout-s", type=float, default=120)
    args = ap.parse_args()
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        print("kafka_verify.py: python3 cannot import confluent_kafka; install it with "
              "scripts/deps.sh --test (pip install confluent-kafka)", file=sys.stderr)
        return 2
    try:
        values, partitions = read_topic(args.brokers, args.topic, args.timeout_s)
    except LookupError as e:
        print("kafka_verify.py: %s" % e, file=sys.stderr)
        return 2
    except Exception as e:  # the broker: time-out, connection, fatal error
        print("kafka_verify.py: %s" % e, file=sys.stderr)
        return 1
    result = check(values, partitions)
    print(json.dumps(result, separators=(",", ":")), flush=True)
    if args.expect_json:
        text = sys.stdin.read() if args.expect_json == "-" else open(args.expect_json).read()
        expected = json.loads(text)
        diffs = ["%s: expected %s, found %s" % (k, expected[k], result.get(k, "(none)"))
                 for k in expected if k in result and result[k] != expected[k]]
        unknown = [k for k in expected if k not in result]
        if diffs:
            print("kafka_verify.py: %s differs from the expected JSON: %s"
                  % (args.topic, "; ".join(diffs)), file=sys.stderr)
            return 1
        if unknown:
            print("kafka_verify.py: not compared (not computed here): %s" % ", ".join(unknown),
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
