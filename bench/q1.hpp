// Query Q1 of the smart-meter workload (shared/bench/WORKLOAD.md), defined
// once for the benchmark, the tests and the demo: its parameters, its
// aggregate (count, energy and voltage range per meter and window), the
// totals and digest a run is judged by, and the output line of a fired
// window. The workload generator and its source are the library's
// (connectors/generator/); the query is not.
//
// The digest is an order-independent sum over fired windows, so a parallel
// run must give exactly the totals of a sequential one.
//
// Thread-safety: value types and pure functions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/window/aggregate.hpp"

namespace meterstream {

// The query parameters of Q1 (the workload's own are in SmartMeterWorkload).
struct Q1Params {
  // Tumbling window size W, aligned to the epoch. Must be > 0.
  // Default: 60000
  std::int64_t window_ms = 60000;

  // Bounded out-of-orderness B of the watermark. Must be >= 0.
  // Default: 300000
  std::int64_t bound_ms = 300000;

  // The source emits a watermark after every E-th event. Must be >= 1.
  // Default: 1000
  std::int64_t wm_every = 1000;

  // Query Q2: drop every event whose (meter_id, seq) was seen before, then Q1.
  // Default: false
  bool dedup = false;

  // Q2 through the DSL: the horizon of dedup_by_sequence() in sequence
  // numbers (the baseline keeps an exact set and ignores it). Default: 4096
  std::uint64_t dedup_horizon = 4096;

  // The state's memory budget with --state rocksdb (RocksDB plus the
  // operators' in-memory tables). Default: 512
  std::uint64_t state_memory_mb = 512;

  // key_by().salted(salt) in the DSL run (hot keys); 1: not salted.
  // Default: 1
  int salt = 1;

  // JobOptions::source_threads for the DSL run. Default: false
  bool source_threads = false;

  // Crash-and-resume runs (WORKLOAD.md): checkpoints every
  // checkpoint_interval_ms into checkpoint_storage (a URI; empty: the local
  // folder checkpoint_dir), resuming from the newest one found, with the
  // windows written exactly once to output_dir. Default: off.
  std::string checkpoint_dir;
  std::int64_t checkpoint_interval_ms = 0;
  std::string output_dir;
  std::string checkpoint_storage;
  std::string s3_endpoint;
  // Instead of output_dir: the windows as messages of output_topic at
  // brokers, exactly once (Kafka transactions with transactional_id_prefix).
  std::string brokers;
  std::string output_topic;
  std::string transactional_id_prefix;
  // The output topic's delivery: "exactly_once", "at_least_once" or "none"
  // (KafkaDelivery). Default: "exactly_once"
  std::string kafka_delivery = "exactly_once";
  // `meterstream-bench kafka-q1`: read the events from input_topic at
  // brokers (bounded mode, MeterReading values, consumer group input_group)
  // instead of the in-memory events. Default: "" (in-memory events)
  std::string input_topic;
  std::string input_group;
  // How the input is bounded: "first-start" (the end offsets found when the
  // job first starts, kept by restores: Flink's setBounded), "each-start"
  // (the end offsets found at each start, restores included:
  // KafkaSourceOptions::bounded_end_at_each_start) or "no" (read forever).
  // Default: "first-start"
  std::string kafka_bounded = "first-start";
  // JobOptions::restart: attempts after a failure (0: none) and the delay
  // between them. Default: 0, 1000
  int restart_attempts = 0;
  std::int64_t restart_delay_ms = 1000;
  // `kafka-q1`: read at most this many events per second (over the
  // process, all partitions together; 0: as fast as possible), so that a
  // chaos test's fault lands while the job runs, whatever the machine's
  // speed. Default: 0
  std::int64_t pace_events_per_s = 0;

  // Returns kInvalidArgument naming the first field out of range, else OK.
  Status validate() const;
};

// The digest term of one fired Q1 window (WORKLOAD.md "Query Q1"): a chain of
// fmix64 over meter_id, start, count, sum_wh and (min_v << 16 | max_v).
// Inline because it runs once per fired window in the benchmark's hot path.
inline std::uint64_t q1_window_digest(std::uint64_t meter_id,
                                      std::int64_t start, std::uint64_t count,
                                      std::uint64_t sum_wh, std::uint32_t min_v,
                                      std::uint32_t max_v) {
  std::uint64_t h = fmix64(meter_id);
  h = fmix64(h ^ static_cast<std::uint64_t>(start));
  h = fmix64(h ^ count);
  h = fmix64(h ^ sum_wh);
  return fmix64(h ^ (static_cast<std::uint64_t>(min_v) << 16 | max_v));
}

// The results of Q1. All fields are sums, so partial totals (per worker) merge
// by addition, with the digest wrapping mod 2^64.
struct Q1Totals {
  std::uint64_t windows = 0;       // windows fired (one per meter and window)
  std::uint64_t late_dropped = 0;  // events dropped as late
  std::uint64_t duplicates_dropped = 0;  // Q2: events dropped as retries
  std::uint64_t total_count = 0;         // sum of the windows' counts
  std::uint64_t sum_wh = 0;              // sum of the windows' wh sums
  std::uint64_t digest = 0;  // wrapping sum of q1_window_digest terms

  // Accounts for one fired window.
  void add_window(std::uint64_t meter_id, std::int64_t start,
                  std::uint64_t count, std::uint64_t window_sum_wh,
                  std::uint32_t min_v, std::uint32_t max_v) {
    ++windows;
    total_count += count;
    sum_wh += window_sum_wh;
    digest +=
        q1_window_digest(meter_id, start, count, window_sum_wh, min_v, max_v);
  }

  // Adds another partial result (e.g. of another worker).
  void merge(const Q1Totals& o) {
    windows += o.windows;
    late_dropped += o.late_dropped;
    duplicates_dropped += o.duplicates_dropped;
    total_count += o.total_count;
    sum_wh += o.sum_wh;
    digest += o.digest;
  }

  bool operator==(const Q1Totals& o) const {
    return windows == o.windows && late_dropped == o.late_dropped &&
           duplicates_dropped == o.duplicates_dropped &&
           total_count == o.total_count && sum_wh == o.sum_wh &&
           digest == o.digest;
  }
  bool operator!=(const Q1Totals& o) const { return !(*this == o); }
};

// Q1's aggregate: count, sum of wh, min and max voltage per meter and window.
struct Q1Aggregate {
  struct Acc {
    std::uint64_t count = 0;
    std::uint64_t sum_wh = 0;
    std::uint32_t min_v = std::numeric_limits<std::uint32_t>::max();
    std::uint32_t max_v = 0;
  };
  using accumulator_type = Acc;
  Acc create() const { return Acc{}; }
  void add(Acc& a, const MeterReading& r) const {
    ++a.count;
    a.sum_wh += r.wh;
    a.min_v = std::min<std::uint32_t>(a.min_v, r.voltage_dv);
    a.max_v = std::max<std::uint32_t>(a.max_v, r.voltage_dv);
  }
  void merge(Acc& a, const Acc& b) const {
    a.count += b.count;
    a.sum_wh += b.sum_wh;
    a.min_v = std::min(a.min_v, b.min_v);
    a.max_v = std::max(a.max_v, b.max_v);
  }
  Acc result(const Acc& a) const { return a; }
};

// One fired Q1 window: meter id, window and Q1Aggregate's result.
using Q1Result = WindowResult<std::uint64_t, Q1Aggregate::Acc>;

// The output line of `r` (bench/output_check.hpp's format, without '\n').
std::string q1_result_line(const Q1Result& r);

}  // namespace meterstream
