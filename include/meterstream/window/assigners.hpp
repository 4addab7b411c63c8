// Window assigners: which event-time windows a record belongs to.
//
// tumbling(size[, offset]): fixed, non-overlapping windows aligned to the epoch
//   (start = ts - (ts - offset) mod size).
// sliding(size, slide[, offset]): windows of `size` starting every `slide`; a
//   record belongs to size/slide of them.
// session(gap): per key, records closer than `gap` fall in one window, which
//   closes after `gap` without records.
// A window [start, end) fires when the watermark reaches end - 1. Sizes must be
// positive whole milliseconds (event time counts milliseconds: tumbling(500us)
// is an error, not a window of 0 ms), and a sliding window's slide must not
// exceed its size (the records between windows would be lost);
// Pipeline::build() reports a bad one, naming the duration and its unit.
//
// Thread-safety: value types.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "meterstream/core/time.hpp"

namespace meterstream {

struct TumblingWindows {
  std::int64_t size_ms = 0;
  std::int64_t offset_ms = 0;
  // Not empty when a duration given was not whole milliseconds: what and
  // its value ("size 500us"), reported by Pipeline::build().
  std::string inexact;
};

struct SlidingWindows {
  std::int64_t size_ms = 0;
  std::int64_t slide_ms = 0;
  std::int64_t offset_ms = 0;
  std::string inexact;  // as TumblingWindows::inexact
};

struct SessionWindows {
  std::int64_t gap_ms = 0;
  std::string inexact;  // as TumblingWindows::inexact
};

namespace detail {
// "what value" when `d` is not whole milliseconds, else `so_far`.
template <typename Rep, typename Period>
std::string inexact_duration(std::string so_far, const char* what,
                             std::chrono::duration<Rep, Period> d) {
  if (!so_far.empty()) return so_far;
  const std::string text = not_whole_millis(d);
  return text.empty() ? std::string() : std::string(what) + " " + text;
}
}  // namespace detail

template <typename Rep, typename Period>
TumblingWindows tumbling(std::chrono::duration<Rep, Period> size,
                         std::chrono::milliseconds offset = std::chrono::milliseconds(0)) {
  return TumblingWindows{to_millis(size), to_millis(offset),
                         detail::inexact_duration("", "size", size)};
}

template <typename R1, typename P1, typename R2, typename P2>
SlidingWindows sliding(std::chrono::duration<R1, P1> size, std::chrono::duration<R2, P2> slide,
                       std::chrono::milliseconds offset = std::chrono::milliseconds(0)) {
  return SlidingWindows{
      to_millis(size), to_millis(slide), to_millis(offset),
      detail::inexact_duration(detail::inexact_duration("", "size", size), "slide", slide)};
}

template <typename Rep, typename Period>
SessionWindows session(std::chrono::duration<Rep, Period> gap) {
  return SessionWindows{to_millis(gap), detail::inexact_duration("", "gap", gap)};
}

// The start of the window of `size` > 0 (aligned to `offset`) that holds
// `ts`. Near the low end of int64, where that start is not representable, it
// is kMinTimestamp (the first window is cut there); no overflow for any ts
// and offset.
constexpr Timestamp window_start(Timestamp ts, std::int64_t size, std::int64_t offset = 0) {
  // r = (ts - offset) mod size, in [0, size), without computing ts - offset.
  std::int64_t a = ts % size;
  if (a < 0) a += size;
  std::int64_t b = offset % size;
  if (b < 0) b += size;
  std::int64_t r = a - b;
  if (r < 0) r += size;
  return saturating_sub(ts, r);
}

// The end (exclusive) of a window of `size` starting at `start`: start +
// size, saturating at kMaxTimestamp (the last window is cut there).
constexpr Timestamp window_end(Timestamp start, std::int64_t size) {
  return saturating_add(start, size);
}

}  // namespace meterstream
