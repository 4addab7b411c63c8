// Window assigners: which event-time windows a record belongs to.
//
// An assigner is a value type in the shape of Flink's WindowAssigner: given a
// record's timestamp, assign(ts) says which windows the record falls in.
//
// tumbling(size[, offset]): fixed, non-overlapping windows aligned to the epoch
//   (start = ts - (ts - offset) mod size); assign(ts) is one TimeWindow.
// sliding(size, slide[, offset]): windows of `size` starting every `slide`; a
//   record belongs to size/slide of them; assign(ts) is a range of them, the
//   newest first.
// session(gap): per key, records closer than `gap` fall in one window, which
//   closes after `gap` without records; assign(ts) is [ts, ts + gap), which
//   the operator merges with the key's sessions it intersects (Flink's
//   MergingWindowAssigner).
// A window [start, end) fires when the watermark reaches end - 1. Sizes must be
// positive whole milliseconds (event time counts milliseconds: tumbling(500us)
// is an error, not a window of 0 ms), and a sliding window's slide must not
// exceed its size (the records between windows would be lost);
// Pipeline::build() reports a bad one (invalid()), naming the duration and its
// unit.
//
// A checkpoint records the window definition (kind, size, slide, offset, gap)
// and the aggregate's type; restoring it into a window defined otherwise is
// refused (docs/checkpoints.md).
//
// Thread-safety: value types.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>

#include "meterstream/core/time.hpp"

namespace meterstream {

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

// A window of event time, [start, end) (Flink's TimeWindow).
struct TimeWindow {
  Timestamp start = 0;
  Timestamp end = 0;

  // The last timestamp in the window: it fires when the watermark reaches it.
  constexpr Timestamp max_timestamp() const { return end - 1; }
  // Whether the windows overlap or touch (sessions that do merge).
  constexpr bool intersects(const TimeWindow& other) const {
    return start <= other.end && end >= other.start;
  }
  // The smallest window that covers both.
  constexpr TimeWindow cover(const TimeWindow& other) const {
    return TimeWindow{start < other.start ? start : other.start,
                      end > other.end ? end : other.end};
  }
  constexpr bool operator==(const TimeWindow& o) const { return start == o.start && end == o.end; }
  constexpr bool operator!=(const TimeWindow& o) const { return !(*this == o); }
};

// Fixed windows of size_ms, aligned to offset_ms. Made by tumbling().
struct TumblingWindows {
  std::int64_t size_ms = 0;
  std::int64_t offset_ms = 0;
  // Not empty when a duration given was not whole milliseconds: what and
  // its value ("size 500us"), reported by Pipeline::build().
  std::string inexact;

  // Sessions merge; time windows do not.
  static constexpr bool kMerging = false;

  // The one window of a record at `ts`.
  constexpr TimeWindow assign(Timestamp ts) const { return window_at(window_start(ts, size_ms, offset_ms)); }
  // The window that starts at `start`.
  constexpr TimeWindow window_at(Timestamp start) const {
    return TimeWindow{start, window_end(start, size_ms)};
  }
  // "tumbling 1min", for default step names.
  std::string describe() const { return "tumbling " + detail::format_millis(size_ms); }
  // Empty when valid, else what is wrong (without the "window(): " prefix).
  std::string invalid() const {
    if (!inexact.empty()) {
      return "tumbling(): " + inexact +
             " is not a whole number of milliseconds (event time counts milliseconds)";
    }
    if (size_ms <= 0) return "tumbling() needs a size > 0, got " + std::to_string(size_ms) + " ms";
    return std::string();
  }
};

// The windows a record of a sliding assigner falls in, the newest first: a
// range of TimeWindow, computed as iterated (no allocation).
class SlidingAssignment {
 public:
  // What range-for needs (an input iterator without the std traits).
  class Iterator {
   public:
    TimeWindow operator*() const { return TimeWindow{start_, window_end(start_, size_)}; }
    Iterator& operator++() {
      // Windows start after ts - size; stopping where the next start is not
      // representable (timestamps near the low end of int64).
      if (start_ < kMinTimestamp + slide_) {
        done_ = true;
      } else {
        start_ -= slide_;
        if (start_ <= first_excluded_) done_ = true;
      }
      return *this;
    }
    bool operator==(const Iterator& o) const {
      return done_ == o.done_ && (done_ || start_ == o.start_);
    }
    bool operator!=(const Iterator& o) const { return !(*this == o); }

   private:
    friend class SlidingAssignment;
    Iterator(Timestamp start, Timestamp first_excluded, std::int64_t size, std::int64_t slide,
             bool done)
        : start_(start), first_excluded_(first_excluded), size_(size), slide_(slide),
          done_(done) {}
    Timestamp start_;
    Timestamp first_excluded_;
    std::int64_t size_;
    std::int64_t slide_;
    bool done_;
  };

  SlidingAssignment(Timestamp ts, std::int64_t size, std::int64_t slide, std::int64_t offset)
      : last_start_(window_start(ts, slide, offset)), first_excluded_(saturating_sub(ts, size)),
        size_(size), slide_(slide) {}
  // The newest window, [window_start(ts, slide, offset), + size), always
  // first; then every `slide` earlier while the window still holds ts.
  Iterator begin() const { return Iterator(last_start_, first_excluded_, size_, slide_, false); }
  Iterator end() const { return Iterator(0, 0, size_, slide_, true); }

 private:
  Timestamp last_start_;
  Timestamp first_excluded_;
  std::int64_t size_;
  std::int64_t slide_;
};

// Windows of size_ms starting every slide_ms, aligned to offset_ms. Made by
// sliding().
struct SlidingWindows {
  std::int64_t size_ms = 0;
  std::int64_t slide_ms = 0;
  std::int64_t offset_ms = 0;
  std::string inexact;  // as TumblingWindows::inexact

  static constexpr bool kMerging = false;

  // The windows of a record at `ts`, the newest first.
  SlidingAssignment assign(Timestamp ts) const {
    return SlidingAssignment(ts, size_ms, slide_ms, offset_ms);
  }
  constexpr TimeWindow window_at(Timestamp start) const {
    return TimeWindow{start, window_end(start, size_ms)};
  }
  // "sliding 10min/1min".
  std::string describe() const {
    return "sliding " + detail::format_millis(size_ms) + "/" + detail::format_millis(slide_ms);
  }
  std::string invalid() const {
    if (!inexact.empty()) {
      return "sliding(): " + inexact +
             " is not a whole number of milliseconds (event time counts milliseconds)";
    }
    if (size_ms <= 0 || slide_ms <= 0) {
      return "sliding() needs a size > 0 and a slide > 0, got " + std::to_string(size_ms) +
             " ms and " + std::to_string(slide_ms) + " ms";
    }
    if (slide_ms > size_ms) {
      return "sliding() with a slide of " + std::to_string(slide_ms) + " ms > its size of " +
             std::to_string(size_ms) + " ms would drop the records between windows";
    }
    return std::string();
  }
};

// Per-key sessions closed by a gap of gap_ms without records. Made by
// session().
struct SessionWindows {
  std::int64_t gap_ms = 0;
  std::string inexact;  // as TumblingWindows::inexact

  // A record's window merges with the sessions of its key it intersects.
  static constexpr bool kMerging = true;

  // The window of a record at `ts` before merging: [ts, ts + gap).
  constexpr TimeWindow assign(Timestamp ts) const {
    return TimeWindow{ts, saturating_add(ts, gap_ms)};
  }
  // "session 30s".
  std::string describe() const { return "session " + detail::format_millis(gap_ms); }
  std::string invalid() const {
    if (!inexact.empty()) {
      return "session(): " + inexact +
             " is not a whole number of milliseconds (event time counts milliseconds)";
    }
    if (gap_ms <= 0) return "session() needs a gap > 0, got " + std::to_string(gap_ms) + " ms";
    return std::string();
  }
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

// Whether A is one of the assigners above.
template <typename A>
inline constexpr bool kIsWindowAssigner = std::is_same_v<A, TumblingWindows> ||
                                          std::is_same_v<A, SlidingWindows> ||
                                          std::is_same_v<A, SessionWindows>;
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

}  // namespace meterstream
