// Helpers of the meterstream-bench program: command-line flags, peak memory and
// the one-line JSON result (shared/bench/WORKLOAD.md "The benchmark program").
//
// Thread-safety: Flags is a value type (const methods may be called
// concurrently); peak_rss_mb() reads the process's resource usage.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "q1.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/core/status.hpp"

namespace meterstream::bench {

// The flags of one sub-command: `--name value` pairs (or `--name=value`),
// checked against the sub-command's allowed names. Values are typed when read.
//
// Example:
//   MS_ASSIGN_OR_RETURN(Flags flags, Flags::parse(args, {"seed", "events"}));
//   MS_ASSIGN_OR_RETURN(std::uint64_t seed, flags.get_uint("seed", 42));
class Flags {
 public:
  // Parses `args` (the arguments after the sub-command). Names in `allowed`
  // are given without the leading "--". Returns kInvalidArgument naming the
  // flag for an unknown flag, a flag given twice, a flag without a value, or
  // an argument that is not a flag.
  static StatusOr<Flags> parse(const std::vector<std::string>& args,
                               const std::set<std::string>& allowed);

  // True when the flag was given.
  bool has(std::string_view name) const;

  // The flag's value as an unsigned decimal integer in [min, max], or
  // `default_value` when absent. kInvalidArgument naming the flag when the
  // value is malformed or out of range.
  StatusOr<std::uint64_t> get_uint(std::string_view name, std::uint64_t default_value,
                                   std::uint64_t min = 0,
                                   std::uint64_t max = UINT64_MAX) const;

  // The flag's value as a signed decimal integer in [min, max], or
  // `default_value` when absent; errors as get_uint().
  StatusOr<std::int64_t> get_int(std::string_view name, std::int64_t default_value,
                                 std::int64_t min = INT64_MIN,
                                 std::int64_t max = INT64_MAX) const;

  // The flag's value, or `default_value` when absent. When `choices` is not
  // empty the value must be one of them (kInvalidArgument naming the flag).
  StatusOr<std::string> get_string(std::string_view name, std::string default_value,
                                   const std::vector<std::string>& choices = {}) const;

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

// The workload flags every sub-command that generates events takes (--seed,
// --meters, --events, --hot-factor, --late-ppm, --dup-ppm, --anomaly-ppm),
// into `w` (its values are the defaults); then w->validate().
Status parse_workload_flags(const Flags& flags, SmartMeterWorkload* w);

// Q1's window flags (--window-ms, --bound-ms, --wm-every) into `q`; then
// q->validate().
Status parse_window_flags(const Flags& flags, Q1Params* q);

// The process's peak resident set size in MiB (getrusage ru_maxrss / 1024).
double peak_rss_mb();

// Builds the Q1 result object with the keys in WORKLOAD.md's order: events,
// windows, late_dropped, total_count, sum_wh, digest, proc_s, events_per_s,
// peak_rss_mb. Counters are JSON integers. Further fields (e.g. Q2's
// duplicates_dropped) may be added to the returned object by the caller.
nlohmann::ordered_json q1_result_json(std::uint64_t events, const Q1Totals& totals,
                                      double proc_s, double peak_rss_mb,
                                      bool with_duplicates = false);

// Serialises `result` as one compact JSON line, newline included.
std::string json_line(const nlohmann::ordered_json& result);

}  // namespace meterstream::bench
