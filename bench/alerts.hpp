// `meterstream-bench alerts`: query Q3 of shared/bench/WORKLOAD.md, voltage-sag
// alerts and hot aggregates in Redis.
//
//   meterstream-bench alerts --redis HOST:PORT [--rate R] [Q1's workload and
//                            window flags] [--dedup-horizon N] [--threads T]
//                            [--batch-size N]  (JobOptions::batch_size; small
//                            batches for low latency: records wait in an
//                            exchange until its batch fills or a watermark)
//
// The events are generated into memory first, then handed to the pipeline by
// a source paced at R events/s (default 10000; 0 = as fast as it goes), each
// stamped with ingest_us (CLOCK_REALTIME, microseconds) when handed over.
// Q2's dedup (dedup_by_sequence per meter), then two branches:
//   - alerts (voltage_dv < 2000): SET NX alert:<meter_id>:<seq>
//     "<ts_ms>,<voltage_dv>,<ingest_us>" through the Redis sink; the latency
//     of each alert is taken when Redis has acknowledged its write (the
//     alert writer waits for the replies of every batch holding alerts);
//   - hot aggregates: Q1's windows as versioned upserts
//     HSET agg:<meter_id> <start> "<count>,<sum_wh>,<min_v>,<max_v>"
//     (version = count, so an older value never replaces a newer one).
// Prints one JSON line: Q2's fields, alerts, alert_digest,
// alert_latency_p50_ms, alert_latency_p99_ms, alert_latency_max_ms.
//
// Thread-safety: one call at a time.
#pragma once

#include <string>
#include <vector>

namespace meterstream::bench {

// Runs the sub-command on `args` (the arguments after "alerts"); prints the
// JSON line on stdout, errors on stderr; returns the exit code (0; 1 a failed
// run, e.g. Redis unreachable; 2 a usage error).
int run_alerts(const std::vector<std::string>& args, const char* usage);

}  // namespace meterstream::bench
