// The lifecycle the runtime drives: operator instances and the heads a
// worker polls. Not API.
#pragma once

#include <cstdint>

#include "meterstream/core/time.hpp"
#include "meterstream/runtime/detail/operator_context.hpp"

namespace meterstream::detail {

// Lifecycle of an operator instance on a worker.
class OperatorInstance {
 public:
  virtual ~OperatorInstance() = default;
  // Called on the worker thread before any record. `context` outlives the
  // instance's use of it (keep a pointer to it for barriers).
  virtual void open(OperatorContext& /*context*/) {}
  // The earliest processing time at which on_processing_time() must be called;
  // kMaxTimestamp when none.
  virtual Timestamp next_processing_time() const { return kMaxTimestamp; }
  virtual void on_processing_time(Timestamp /*now*/) {}
  // For an instance that is also a Collector: true when push() leaves the
  // batch it is given unchanged and hands it to no collector that may change
  // it. A fan-out (fan_out.hpp) then gives it the producer's batch instead of
  // a copy. Default: false (Collector::push() may modify the batch).
  virtual bool reads_input_only() const { return false; }
};

// What a worker polls: a source instance or the receiving end of an exchange.
class StageHead : public OperatorInstance {
 public:
  // Does a bounded amount of work; true if it made progress. Called after
  // open().
  virtual bool poll() = 0;
  virtual bool finished() const = 0;

  // Number of exchanges between the sources and this head. A worker blocked on
  // pushing from stage s only polls heads of later stages, so no operator is
  // re-entered.
  int stage = 0;
  // The newest checkpoint barrier this head has passed on (aligned and
  // forwarded; for a source, injected).
  std::int64_t last_barrier = 0;
};

}  // namespace meterstream::detail
