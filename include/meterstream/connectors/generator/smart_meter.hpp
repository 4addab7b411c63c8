// The smart-meter workload generator.
//
// SmartMeterGenerator produces the canonical benchmark stream of
// shared/bench/WORKLOAD.md ("the smart-meter workload"): a deterministic,
// bit-exact sequence of meter readings with a hot meter, late (out-of-order)
// arrivals, exact duplicates (retries) and voltage sags. The same
// SmartMeterWorkload always gives the same events, on every platform.
//
// The queries run over it (Q1's aggregate, totals and digest) belong to the
// benchmark, not to the library: see bench/q1.hpp.
//
// Thread-safety: SmartMeterGenerator is not thread-safe (one generator per
// thread); the value types and free functions are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"

namespace meterstream {

// One meter report. `ts_ms` is event time in milliseconds since the Unix epoch,
// `wh` the energy of the interval in watt-hours, `voltage_dv` the voltage in
// decivolts (2300 = 230.0 V).
struct MeterReading {
  std::uint64_t meter_id = 0;
  std::int64_t ts_ms = 0;
  std::uint32_t seq = 0;
  std::uint32_t wh = 0;
  std::uint16_t voltage_dv = 0;

  bool operator==(const MeterReading& o) const {
    return meter_id == o.meter_id && ts_ms == o.ts_ms && seq == o.seq && wh == o.wh &&
           voltage_dv == o.voltage_dv;
  }
  bool operator!=(const MeterReading& o) const { return !(*this == o); }
};

// The parameters of the workload (WORKLOAD.md "Parameters").
struct SmartMeterWorkload {
  // Seed of the splitmix64 stream.
  // Default: 42
  std::uint64_t seed = 42;

  // Number of meters K; meter 0 is the hot meter. Must be >= 2.
  // Default: 100000
  std::uint64_t meters = 100000;

  // Number of events N to emit, duplicates included.
  // Default: 20000000
  std::uint64_t events = 20000000;

  // Reporting interval R of every meter, in milliseconds. Must be > 0.
  // Default: 15000
  std::int64_t interval_ms = 15000;

  // Hot factor H: meter 0 reports H times per round. Must be >= 1.
  // Default: 100
  std::uint64_t hot_factor = 100;

  // Parts per million of events that arrive late (out of order). <= 1000000.
  // Default: 10000
  std::uint32_t late_ppm = 10000;

  // Maximum delay D of a late event, in milliseconds. Must be >= 0.
  // Default: 600000
  std::int64_t max_delay_ms = 600000;

  // Parts per million of events that are sent again later (retries). <= 1000000.
  // Default: 5000
  std::uint32_t dup_ppm = 5000;

  // Parts per million of events that carry a voltage sag (1800 dV). <= 1000000.
  // Default: 100
  std::uint32_t anomaly_ppm = 100;

  // Returns kInvalidArgument naming the first field out of range, else OK.
  Status validate() const;
};

// Generates the workload's events one at a time (WORKLOAD.md "Generator").
//
// The workload must be valid (see SmartMeterWorkload::validate()); an invalid
// one gives an unspecified (but memory-safe) sequence.
//
// Example:
//   SmartMeterGenerator gen(workload);
//   MeterReading r;
//   while (gen.next(&r)) consume(r);
class SmartMeterGenerator {
 public:
  explicit SmartMeterGenerator(const SmartMeterWorkload& workload);

  // Writes the next event into `*out` and returns true; returns false (and
  // leaves `*out` untouched) once `workload.events` events have been emitted.
  bool next(MeterReading* out);

  // Writes up to `max` next events into `out[0..)`; returns how many (0 at the
  // end of the stream).
  std::size_t next_batch(MeterReading* out, std::size_t max);

  // Events emitted so far, duplicates included.
  std::uint64_t emitted() const { return emitted_; }

  // True once every event has been emitted.
  bool done() const { return emitted_ >= workload_.events; }

  const SmartMeterWorkload& workload() const { return workload_; }

  // Serialises the generator's position (report counter, events emitted,
  // splitmix64 state and pending duplicates) into an opaque byte string, for
  // a source checkpoint. The bytes embed a fingerprint of the workload.
  std::string save_position() const;

  // Restores a position written by save_position(). Returns kInvalidArgument
  // when the bytes are truncated or corrupt, or were saved by a generator with
  // different workload parameters; the generator is unchanged on error.
  Status restore_position(std::string_view bytes);

 private:
  struct Pending {
    std::uint64_t due;
    std::uint64_t order;  // insertion counter: FIFO among equal `due`
    MeterReading event;
  };
  // Heap comparator: the smallest (due, order) on top.
  struct Later {
    bool operator()(const Pending& a, const Pending& b) const {
      return a.due != b.due ? a.due > b.due : a.order > b.order;
    }
  };

  std::uint64_t fingerprint() const;

  SmartMeterWorkload workload_;
  std::uint64_t reports_per_round_;  // M = (K - 1) + H
  std::uint64_t b_ = 0;               // report counter
  std::uint64_t emitted_ = 0;
  std::uint64_t rng_state_;
  std::uint64_t next_order_ = 0;
  std::vector<Pending> pending_;  // binary min-heap by (due, order)
};

// Generates all `workload.events` events into memory.
std::vector<MeterReading> generate_smart_meter_events(const SmartMeterWorkload& workload);

}  // namespace meterstream
