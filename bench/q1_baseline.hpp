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

#include "q1.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"

namespace meterstream {

// Runs Q1 over `events` in order and returns its totals. `params` must be
// valid (see Q1Params::validate()).
Q1Totals run_q1_baseline(const std::vector<MeterReading>& events, const Q1Params& params);

}  // namespace meterstream
