// The hand-written Q1 baseline: the performance bar the library must beat.
//
// run_q1_baseline() computes query Q1 of shared/bench/WORKLOAD.md (per-meter
// tumbling event-time windows, bounded out-of-orderness watermarks emitted
// every E events, late events dropped and counted) in one tight
// single-threaded loop over events already in memory, with an open-addressing
// hash table per open window. It is also the reference that the DSL pipeline's
// results are compared with.
//
// Thread-safety: pure function; concurrent calls are independent.
#pragma once

#include <cstdint>
#include <vector>

#include "meterstream/connectors/generator/smart_meter.hpp"

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

  // Returns kInvalidArgument naming the first field out of range, else OK.
  Status validate() const;
};

// Runs Q1 over `events` in order and returns its totals. `params` must be
// valid (see Q1Params::validate()).
Q1Totals run_q1_baseline(const std::vector<MeterReading>& events, const Q1Params& params);

}  // namespace meterstream
