// Event time and watermarks.
//
// Event time is a Timestamp: milliseconds since the Unix epoch as int64. A
// watermark W promises that no more records with timestamp <= W are expected.
// Durations in the API are std::chrono durations; they are converted to
// milliseconds where they meet event time.
//
// Thread-safety: value types and constants only.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>

namespace meterstream {

// Milliseconds since the Unix epoch.
using Timestamp = std::int64_t;

// The watermark before any record: nothing is known yet (Flink's Long.MIN_VALUE).
inline constexpr Timestamp kMinTimestamp = std::numeric_limits<Timestamp>::min();
// The watermark at end of input: every window fires.
inline constexpr Timestamp kMaxTimestamp = std::numeric_limits<Timestamp>::max();

// Durations in milliseconds; any std::chrono duration converts to it.
using Duration = std::chrono::milliseconds;

// Converts any std::chrono duration to whole milliseconds (truncating).
template <typename Rep, typename Period>
constexpr std::int64_t to_millis(std::chrono::duration<Rep, Period> d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// Which clock a timer or TTL follows.
enum class TimeDomain { kEventTime, kProcessingTime };

// Processing time now, in milliseconds since the epoch (system clock).
inline Timestamp processing_time_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Microseconds of a monotonic clock, for measuring durations.
inline std::int64_t steady_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace meterstream
