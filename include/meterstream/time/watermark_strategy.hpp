// Watermark strategies: how a stream's event-time clock advances.
//
// A strategy is a value built by a named factory and refined with with_*()
// (like Flink's WatermarkStrategy). It is applied with Stream::with_watermarks();
// applied directly to a source it runs once per split, and the source's watermark
// is the minimum over its active splits.
//
// Semantics of bounded out-of-orderness B (Flink's, checked bit for bit by the
// benchmark): the watermark starts at kMinTimestamp; after every E-th record of a
// split (E = emit_every, default 1000) and, unless with_emit_on_no_data(false),
// whenever the split has no data for now, the split emits max(previous
// watermark, max timestamp seen - B - 1). A split that
// has produced nothing for the idleness timeout emits that watermark once
// more (for the records since its last one), then stops holding the watermark
// back until it produces again. At the end of a split its watermark becomes
// kMaxTimestamp.
//
// Thread-safety: value types.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "meterstream/core/time.hpp"

namespace meterstream {

class WatermarkStrategy {
 public:
  // Watermarks trail the largest timestamp seen by `bound`. A negative bound is
  // reported by Pipeline::build().
  template <typename Rep, typename Period>
  static WatermarkStrategy bounded_out_of_orderness(std::chrono::duration<Rep, Period> bound) {
    WatermarkStrategy s;
    s.bound_ms_ = to_millis(bound);
    s.inexact_ = detail::not_whole_millis(bound);
    if (!s.inexact_.empty()) s.inexact_ = "bounded_out_of_orderness() of " + s.inexact_;
    return s;
  }

  // Timestamps never decrease: bounded_out_of_orderness(0).
  static WatermarkStrategy monotonous_timestamps() { return WatermarkStrategy(); }

  // A split idle (no records) for `timeout` of processing time no longer holds
  // back the watermark. Default: never idle.
  template <typename Rep, typename Period>
  WatermarkStrategy with_idleness(std::chrono::duration<Rep, Period> timeout) const {
    WatermarkStrategy s = *this;
    s.idle_timeout_ms_ = to_millis(timeout);
    if (s.inexact_.empty() && !detail::not_whole_millis(timeout).empty()) {
      s.inexact_ = "with_idleness() of " + detail::not_whole_millis(timeout);
    }
    return s;
  }

  // Emit a watermark after every `records` records of a split. Default: 1000.
  WatermarkStrategy with_emit_every(std::int64_t records) const {
    WatermarkStrategy s = *this;
    s.emit_every_ = records;
    return s;
  }

  // Whether a split that has no data for now (a live Kafka partition whose
  // next fetch has not arrived) emits a watermark at once, for the records
  // since its last one. true keeps a live stream's windows firing when
  // records pause; false emits only after every E-th record (and at a
  // split's end), so the watermarks, and which records are late, depend on
  // the records alone, never on fetch timing: a restored or replayed job
  // judges late records exactly as the uninterrupted run did (a restored
  // Kafka split has no data for now until its first fetch arrives).
  // Default: true
  WatermarkStrategy with_emit_on_no_data(bool emit) const {
    WatermarkStrategy s = *this;
    s.emit_on_no_data_ = emit;
    return s;
  }

  std::int64_t bound_ms() const { return bound_ms_; }
  bool emit_on_no_data() const { return emit_on_no_data_; }
  std::int64_t idle_timeout_ms() const { return idle_timeout_ms_; }  // 0: never idle
  std::int64_t emit_every() const { return emit_every_; }
  // Not empty when a duration given was not whole milliseconds: which and
  // its value, reported by Pipeline::build().
  const std::string& inexact() const { return inexact_; }

 private:
  std::int64_t bound_ms_ = 0;
  std::string inexact_;
  std::int64_t idle_timeout_ms_ = 0;
  std::int64_t emit_every_ = 1000;
  bool emit_on_no_data_ = true;
};

// Shorthand for WatermarkStrategy::bounded_out_of_orderness(bound).
template <typename Rep, typename Period>
WatermarkStrategy bounded_out_of_orderness(std::chrono::duration<Rep, Period> bound) {
  return WatermarkStrategy::bounded_out_of_orderness(bound);
}

// The watermark state of one split or operator instance under a strategy.
class WatermarkGenerator {
 public:
  explicit WatermarkGenerator(std::int64_t bound_ms) : bound_ms_(bound_ms) {}

  void on_event(Timestamp ts) { max_ts_ = std::max(max_ts_, ts); }

  // The watermark to emit now: max(previous, max seen - bound - 1), never decreasing.
  Timestamp advance() {
    if (max_ts_ != kMinTimestamp) {
      // Saturating: timestamps near either end of int64 never overflow.
      current_ = std::max(current_, saturating_sub(saturating_sub(max_ts_, bound_ms_), 1));
    }
    return current_;
  }

  Timestamp current() const { return current_; }
  Timestamp max_timestamp() const { return max_ts_; }
  // Restores the state (used by checkpoint restore).
  void reset(Timestamp current, Timestamp max_ts) {
    current_ = current;
    max_ts_ = max_ts;
  }

 private:
  std::int64_t bound_ms_;
  Timestamp max_ts_ = kMinTimestamp;
  Timestamp current_ = kMinTimestamp;
};

}  // namespace meterstream
