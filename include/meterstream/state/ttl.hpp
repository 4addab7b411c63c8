// State time-to-live (Flink's StateTtlConfig): how long a state's values live
// after they were last written (or read, with refresh_on_read).
//
// A TTL is attached to a state when it is declared:
//
// Example:
//   using namespace std::chrono_literals;
//   MS_ASSIGN_OR_RETURN(
//       auto seen, ms::make_value_state<bool>(*store, ctx, "seen",
//                                             ms::Ttl(24h).event_time()));
//
// Semantics, for both backends:
//   - Every write of a value (ValueState::update, AggregatingState::add,
//     MapState::put of one entry, ListState::add/update of the whole list)
//     stamps it with expiry = now + ttl, where now is the current time of the
//     TTL's domain (below). Map state expires per entry; list, value and
//     aggregating state per key.
//   - A value whose expiry <= now is expired: it is never returned (reads see
//     no value) and is removed lazily when a read finds it, by
//     KeyedStateStore::purge_expired() and, on RocksDB, by a compaction filter.
//   - With refresh_on_read, a read that returns a value stamps it again.
//   - Processing time is the system clock. Event time is the store's own:
//     the largest watermark passed to KeyedStateStore::advance_event_time()
//     on that store (the operator instance's watermark), never another
//     operator's; a value written before the first watermark has no expiry
//     until it is written again (event time is unknown then, and expiring it
//     at the first watermark would drop live state).
//
// Thread-safety: value types.
#pragma once

#include <chrono>
#include <cstdint>

#include "meterstream/core/time.hpp"

namespace meterstream {

// The TTL of a state: the plain configuration a StateDescriptor carries. Build
// it with Ttl (below).
struct StateTtl {
  // How long a value lives after it was written, in milliseconds; must be > 0.
  std::int64_t ttl_ms = 0;
  // The clock that ttl_ms is measured on. Default: processing time.
  TimeDomain domain = TimeDomain::kProcessingTime;
  // Whether a read that returns a value restarts its TTL. Default: false.
  bool refresh_on_read = false;

  bool operator==(const StateTtl& o) const {
    return ttl_ms == o.ttl_ms && domain == o.domain && refresh_on_read == o.refresh_on_read;
  }
  bool operator!=(const StateTtl& o) const { return !(*this == o); }
};

// A builder of StateTtl, refined with value-returning methods; converts to
// StateTtl wherever one is expected.
//
// Example:
//   ms::Ttl(std::chrono::hours(24)).event_time().refresh_on_read()
class Ttl {
 public:
  // A processing-time TTL of `ttl` (truncated to milliseconds).
  template <typename Rep, typename Period>
  explicit Ttl(std::chrono::duration<Rep, Period> ttl) {
    config_.ttl_ms = to_millis(ttl);
  }

  // Measures the TTL on event time (the watermark).
  Ttl event_time() const { return with_domain(TimeDomain::kEventTime); }
  // Measures the TTL on processing time (the system clock); the default.
  Ttl processing_time() const { return with_domain(TimeDomain::kProcessingTime); }
  // Restarts a value's TTL when a read returns it.
  Ttl refresh_on_read(bool on = true) const {
    Ttl t = *this;
    t.config_.refresh_on_read = on;
    return t;
  }

  const StateTtl& config() const { return config_; }
  operator StateTtl() const { return config_; }  // NOLINT(google-explicit-constructor)

 private:
  Ttl with_domain(TimeDomain domain) const {
    Ttl t = *this;
    t.config_.domain = domain;
    return t;
  }

  StateTtl config_;
};

}  // namespace meterstream
