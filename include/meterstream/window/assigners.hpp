// Window assigners: which event-time windows a record belongs to.
//
// tumbling(size[, offset]): fixed, non-overlapping windows aligned to the epoch
//   (start = ts - (ts - offset) mod size).
// sliding(size, slide[, offset]): windows of `size` starting every `slide`; a
//   record belongs to size/slide of them.
// session(gap): per key, records closer than `gap` fall in one window, which
//   closes after `gap` without records.
// A window [start, end) fires when the watermark reaches end - 1. Sizes must be
// positive; Pipeline::build() reports a bad one.
//
// Thread-safety: value types.
#pragma once

#include <chrono>
#include <cstdint>

#include "meterstream/core/time.hpp"

namespace meterstream {

struct TumblingWindows {
  std::int64_t size_ms = 0;
  std::int64_t offset_ms = 0;
};

struct SlidingWindows {
  std::int64_t size_ms = 0;
  std::int64_t slide_ms = 0;
  std::int64_t offset_ms = 0;
};

struct SessionWindows {
  std::int64_t gap_ms = 0;
};

template <typename Rep, typename Period>
TumblingWindows tumbling(std::chrono::duration<Rep, Period> size,
                         std::chrono::milliseconds offset = std::chrono::milliseconds(0)) {
  return TumblingWindows{to_millis(size), to_millis(offset)};
}

template <typename R1, typename P1, typename R2, typename P2>
SlidingWindows sliding(std::chrono::duration<R1, P1> size, std::chrono::duration<R2, P2> slide,
                       std::chrono::milliseconds offset = std::chrono::milliseconds(0)) {
  return SlidingWindows{to_millis(size), to_millis(slide), to_millis(offset)};
}

template <typename Rep, typename Period>
SessionWindows session(std::chrono::duration<Rep, Period> gap) {
  return SessionWindows{to_millis(gap)};
}

// The start of the window of `size` (aligned to `offset`) that holds `ts`.
constexpr Timestamp window_start(Timestamp ts, std::int64_t size, std::int64_t offset = 0) {
  std::int64_t r = (ts - offset) % size;
  if (r < 0) r += size;
  return ts - r;
}

}  // namespace meterstream
