// Query "join" of `meterstream-bench join`: the workload's readings joined
// with its calibration stream (docs/workload-calibration.md) by event time
// (temporal_join()), then Q1 over the calibrated readings. The baseline
// computes the same by brute force.
//
// Thread-safety: each call builds and runs its own job; inputs are read only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/q1.hpp"
#include "meterstream/connectors/generator/calibration.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"

namespace meterstream {

struct JoinTotals {
  Q1Totals q1;                        // Q1 over the calibrated readings
  std::uint64_t joined = 0;           // readings that had a calibration version
  std::uint64_t unmatched = 0;        // readings that had none (side output)
  std::uint64_t versions_dropped = 0; // superseded versions dropped (pipeline only)
};

// The brute-force join, then run_q1_baseline() over the calibrated readings
// in input order.
JoinTotals run_join_baseline(const std::vector<MeterReading>& events,
                             const std::vector<Calibration>& calibration, const Q1Params& params);

// temporal_join() then Q1 through the DSL, `threads` workers, state backend
// `state` ("memory" or "rocksdb", files in `state_dir` or a temporary folder).
JoinTotals run_join_pipeline(const std::vector<MeterReading>& events,
                             const std::vector<Calibration>& calibration, const Q1Params& params,
                             int threads, const std::string& state, const std::string& state_dir,
                             Status* error);

// `meterstream-bench join|join-baseline ARGS`: prints one JSON line; returns
// the exit code.
int run_join_command(const std::string& command, const std::vector<std::string>& args);

}  // namespace meterstream
