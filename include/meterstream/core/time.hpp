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
#include <ratio>
#include <sstream>
#include <string>
#include <type_traits>

namespace meterstream {

// Milliseconds since the Unix epoch.
using Timestamp = std::int64_t;

// The watermark before any record: nothing is known yet (Flink's Long.MIN_VALUE).
inline constexpr Timestamp kMinTimestamp = std::numeric_limits<Timestamp>::min();
// The watermark at end of input: every window fires.
inline constexpr Timestamp kMaxTimestamp = std::numeric_limits<Timestamp>::max();

// t + d and t - d, saturating at kMinTimestamp and kMaxTimestamp instead of
// overflowing: window ends, lateness and out-of-orderness bounds are added to
// timestamps that may lie near either end of int64.
constexpr Timestamp saturating_add(Timestamp t, std::int64_t d) {
  Timestamp r = 0;
  if (__builtin_add_overflow(t, d, &r)) return d > 0 ? kMaxTimestamp : kMinTimestamp;
  return r;
}
constexpr Timestamp saturating_sub(Timestamp t, std::int64_t d) {
  Timestamp r = 0;
  if (__builtin_sub_overflow(t, d, &r)) return d > 0 ? kMinTimestamp : kMaxTimestamp;
  return r;
}

// Durations in milliseconds; any std::chrono duration converts to it.
using Duration = std::chrono::milliseconds;

// Converts any std::chrono duration to whole milliseconds (truncating).
template <typename Rep, typename Period>
constexpr std::int64_t to_millis(std::chrono::duration<Rep, Period> d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

namespace detail {

// The unit of a std::chrono period for messages: "ns", "us", "ms", "s",
// "min", "h", or "x N/D s".
template <typename Period>
std::string period_unit() {
  if constexpr (std::is_same_v<Period, std::nano>) return "ns";
  else if constexpr (std::is_same_v<Period, std::micro>) return "us";
  else if constexpr (std::is_same_v<Period, std::milli>) return "ms";
  else if constexpr (std::is_same_v<Period, std::ratio<1>>) return "s";
  else if constexpr (std::is_same_v<Period, std::ratio<60>>) return "min";
  else if constexpr (std::is_same_v<Period, std::ratio<3600>>) return "h";
  else return " x " + std::to_string(Period::num) + "/" + std::to_string(Period::den) + " s";
}

// Empty when `d` is a whole number of milliseconds (event time's
// resolution); else `d` with its unit ("500us"), for the error that
// Pipeline::build() reports instead of truncating it.
template <typename Rep, typename Period>
std::string not_whole_millis(std::chrono::duration<Rep, Period> d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d);
  if (ms == d) return std::string();  // compared exactly, in their common unit
  std::ostringstream text;
  text << d.count() << period_unit<Period>();
  return text.str();
}

// `ms` milliseconds in the largest unit that divides it, for default operator
// names: "1min", "30s", "1500ms", "2h".
inline std::string format_millis(std::int64_t ms) {
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "min";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace detail

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
