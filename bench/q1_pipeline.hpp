// Q1 through the library's public DSL: what `meterstream-bench q1` measures.
//
// Implemented in bench/q1_pipeline.cpp with the meterstream DSL (in-memory
// source, bounded out-of-orderness watermarks every E events, key_by meter,
// tumbling windows, q1.hpp's Q1Aggregate). Its totals must equal
// run_q1_baseline()'s for the same input, whatever the thread count.
//
// Thread-safety: each call builds and runs its own job; `events` is read only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "q1.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream {

// Runs Q1 over `events` (or, with params.input_topic, over that Kafka topic
// in bounded mode: `events` is then unused) with `threads` workers (>= 1) and
// the state backend named by `state` ("memory" or "rocksdb"; `state_dir` is where an on-disk
// backend keeps its files, empty for a temporary folder). On failure writes
// the error to `*error` (kInvalidArgument / kUnimplemented for a configuration
// the program cannot run, e.g. an unavailable backend) and returns partial or
// empty totals; on success leaves `*error` OK.
class StateBackend;

// The state backend a run names with --state ("memory" or "rocksdb"),
// --state-dir and --state-memory-mb: `backend` stays null for "memory" (the
// JobOptions default) and is RocksDB in `state_dir`, or in a temporary
// directory when that is empty, for "rocksdb". The temporary directory is
// removed on destruction, after this object's reference to the backend is
// dropped: declare it before the JobOptions that copy `backend`.
class BenchStateBackend {
 public:
  BenchStateBackend() = default;
  BenchStateBackend(const BenchStateBackend&) = delete;
  BenchStateBackend& operator=(const BenchStateBackend&) = delete;
  ~BenchStateBackend();

  // kInvalidArgument for another `state`, kUnavailable when the temporary
  // directory cannot be made, or RocksDB's error.
  Status open(const std::string& state, const std::string& state_dir, std::uint64_t memory_mb);

  std::shared_ptr<StateBackend> backend;

 private:
  std::string temp_dir_;
};

// What a run reports besides the totals (from the job's metrics).
struct Q1RunInfo {
  std::uint64_t events_read = 0;  // by this run (a resumed run starts past the first)
  std::int64_t checkpoints = 0;
  std::int64_t checkpoints_failed = 0;
  std::int64_t checkpoint_max_sync_ms = 0;
  std::int64_t checkpoint_uploaded_bytes = 0;
  std::int64_t restarts = 0;        // JobOptions::restart attempts used
  std::uint64_t undecodable = 0;    // kafka-q1: input records that did not decode
};

// kafka-q1's source (bench/kafka_q1_source.cpp): the MeterReading values of
// params.input_topic at params.brokers, group params.input_group, bounded as
// params.kafka_bounded says.
std::shared_ptr<Source<MeterReading>> make_kafka_q1_source(const Q1Params& params);

Q1Totals run_q1_pipeline(const std::vector<MeterReading>& events, const Q1Params& params,
                         int threads, const std::string& state, const std::string& state_dir,
                         Status* error, Q1RunInfo* info = nullptr);

}  // namespace meterstream
