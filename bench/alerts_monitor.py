#!/usr/bin/env python3
"""Alert latency as Redis sees it: reads `redis-cli MONITOR` output (stdin or a
file), and for every alert write (the Redis sink's EVALSHA on alert:<m>:<s>)
takes the server's receive time minus the ingest_us in its value.
Prints one JSON line: alerts, p50_ms, p99_ms, max_ms.

    redis-cli -p PORT monitor > mon.txt &   # then run meterstream-bench alerts
    python3 bench/alerts_monitor.py mon.txt
"""
import json
import re
import sys

LINE = re.compile(r'^(\d+\.\d+) \[.*?\] "EVALSHA" "[0-9a-f]+" "\d+" "alert:(\d+):(\d+)"(?: "[^"]*")? "(\d+),(\d+),(\d+)"')


def main():
    src = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    lat = {}
    for line in src:
        m = LINE.match(line)
        if not m:
            continue
        t_us = int(m.group(1).replace('.', ''))
        key = (m.group(2), m.group(3))
        lat.setdefault(key, (t_us - int(m.group(6))) / 1000.0)  # the first write
    v = sorted(lat.values())
    pick = lambda q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))] if v else 0
    print(json.dumps({"alerts": len(v), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                      "max_ms": v[-1] if v else 0}))


if __name__ == "__main__":
    main()
