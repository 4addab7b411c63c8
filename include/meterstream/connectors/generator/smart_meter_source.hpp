// The smart-meter workload as a source: the deterministic generator of
// bench/WORKLOAD.md, read as one split, without materialising the events.
//
// Thread-safety: as Source.
#pragma once

#include <memory>

#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream {

// A source of `workload.events` readings. Invalid parameters fail the job at
// start with SmartMeterWorkload::validate()'s error. It can be checkpointed:
// the split's position is SmartMeterGenerator::save_position(), which a
// restored job only accepts for the same workload parameters.
std::shared_ptr<Source<MeterReading>> smart_meter_source(const SmartMeterWorkload& workload);

}  // namespace meterstream
