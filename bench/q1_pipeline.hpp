// Q1 through the library's public DSL: what `meterstream-bench q1` measures.
//
// Implemented in bench/q1_pipeline.cpp with the meterstream DSL (in-memory
// source, bounded out-of-orderness watermarks every E events, key_by meter,
// tumbling windows, the count/sum/min/max aggregate Q1Aggregate). Its totals
// must equal run_q1_baseline()'s for the same input, whatever the thread
// count. The tests build their Q1 pipelines with Q1Aggregate too.
//
// Thread-safety: each call builds and runs its own job; `events` is read only.
// Q1Aggregate and q1_result_line() keep no state.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "q1_baseline.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/window/aggregate.hpp"

namespace meterstream {

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

// Runs Q1 over `events` (or, with params.input_topic, over that Kafka topic
// in bounded mode: `events` is then unused) with `threads` workers (>= 1) and the state backend
// named by `state` ("memory" or "rocksdb"; `state_dir` is where an on-disk
// backend keeps its files, empty for a temporary folder). On failure writes
// the error to `*error` (kInvalidArgument / kUnimplemented for a configuration
// the program cannot run, e.g. an unavailable backend) and returns partial or
// empty totals; on success leaves `*error` OK.
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
// params.kafka_bounded says. Kept in a file of its own: kafka_source.hpp and
// kafka_sink.hpp both declared a KafkaRecord when it was written.
std::shared_ptr<Source<MeterReading>> make_kafka_q1_source(const Q1Params& params);

Q1Totals run_q1_pipeline(const std::vector<MeterReading>& events, const Q1Params& params,
                         int threads, const std::string& state, const std::string& state_dir,
                         Status* error, Q1RunInfo* info = nullptr);

}  // namespace meterstream
