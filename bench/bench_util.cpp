#include "bench_util.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meterstream::bench {
namespace {

// Debian's Abseil is built with its own absl::string_view, which StrCat does
// not accept from std::string_view directly.
absl::string_view to_absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

Status malformed(std::string_view name, std::string_view value, std::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat("--", to_absl(name), ": expected ",
                                                 to_absl(expected), ", got '", to_absl(value),
                                                 "'"));
}

// Parses the whole of `text` as a decimal integer; false on any leftover,
// empty text, or overflow.
template <typename T>
bool parse_integer(std::string_view text, T* out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out, 10);
  return ec == std::errc() && ptr == end;
}

}  // namespace

StatusOr<Flags> Flags::parse(const std::vector<std::string>& args,
                             const std::set<std::string>& allowed) {
  Flags flags;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "': expected --flag value"));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const std::size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    if (allowed.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown flag --", name, " (allowed: --", absl::StrJoin(allowed, " --"), ")"));
    }
    if (!has_value) {
      // A following "--flag" is the next flag, not this one's value.
      if (i + 1 >= args.size() || args[i + 1].compare(0, 2, "--") == 0) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    if (!flags.values_.emplace(name, std::move(value)).second) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " given twice"));
    }
  }
  return flags;
}

bool Flags::has(std::string_view name) const { return values_.find(name) != values_.end(); }

StatusOr<std::uint64_t> Flags::get_uint(std::string_view name, std::uint64_t default_value,
                                        std::uint64_t min, std::uint64_t max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return default_value;
  std::uint64_t v = 0;
  if (!parse_integer(it->second, &v)) {
    return malformed(name, it->second, "an unsigned integer");
  }
  if (v < min || v > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", to_absl(name), ": must be in [", min, ", ", max, "], got ", v));
  }
  return v;
}

StatusOr<std::int64_t> Flags::get_int(std::string_view name, std::int64_t default_value,
                                      std::int64_t min, std::int64_t max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return default_value;
  std::int64_t v = 0;
  if (!parse_integer(it->second, &v)) return malformed(name, it->second, "an integer");
  if (v < min || v > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", to_absl(name), ": must be in [", min, ", ", max, "], got ", v));
  }
  return v;
}

StatusOr<std::string> Flags::get_string(std::string_view name, std::string default_value,
                                        const std::vector<std::string>& choices) const {
  auto it = values_.find(name);
  if (it == values_.end()) return default_value;
  if (!choices.empty() &&
      std::find(choices.begin(), choices.end(), it->second) == choices.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", to_absl(name), ": must be one of ", absl::StrJoin(choices, "|"), ", got '", it->second,
        "'"));
  }
  return it->second;
}

double peak_rss_mb() {
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0.0;
  // Linux reports ru_maxrss in KiB.
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

nlohmann::ordered_json q1_result_json(std::uint64_t events, const Q1Totals& totals,
                                      double proc_s, double peak_rss, bool with_duplicates) {
  nlohmann::ordered_json j;
  j["events"] = events;
  j["windows"] = totals.windows;
  j["late_dropped"] = totals.late_dropped;
  if (with_duplicates) j["duplicates_dropped"] = totals.duplicates_dropped;
  j["total_count"] = totals.total_count;
  j["sum_wh"] = totals.sum_wh;
  j["digest"] = totals.digest;
  j["proc_s"] = proc_s;
  // A run too short for the clock still gives a finite rate.
  j["events_per_s"] = static_cast<double>(events) / std::max(proc_s, 1e-9);
  j["peak_rss_mb"] = peak_rss;
  return j;
}

std::string json_line(const nlohmann::ordered_json& result) { return result.dump() + "\n"; }

Status parse_workload_flags(const Flags& flags, SmartMeterWorkload* w) {
  constexpr std::uint64_t kPpm = 1000000;
  MS_ASSIGN_OR_RETURN(w->seed, flags.get_uint("seed", w->seed));
  MS_ASSIGN_OR_RETURN(w->meters, flags.get_uint("meters", w->meters, 2, std::uint64_t{1} << 40));
  MS_ASSIGN_OR_RETURN(w->events, flags.get_uint("events", w->events));
  MS_ASSIGN_OR_RETURN(w->hot_factor,
                      flags.get_uint("hot-factor", w->hot_factor, 1, std::uint64_t{1} << 40));
  MS_ASSIGN_OR_RETURN(std::uint64_t late, flags.get_uint("late-ppm", w->late_ppm, 0, kPpm));
  MS_ASSIGN_OR_RETURN(std::uint64_t dup, flags.get_uint("dup-ppm", w->dup_ppm, 0, kPpm));
  MS_ASSIGN_OR_RETURN(std::uint64_t anomaly,
                      flags.get_uint("anomaly-ppm", w->anomaly_ppm, 0, kPpm));
  w->late_ppm = static_cast<std::uint32_t>(late);
  w->dup_ppm = static_cast<std::uint32_t>(dup);
  w->anomaly_ppm = static_cast<std::uint32_t>(anomaly);
  return w->validate();
}

Status parse_window_flags(const Flags& flags, Q1Params* q) {
  MS_ASSIGN_OR_RETURN(q->window_ms,
                      flags.get_int("window-ms", q->window_ms, 1, std::int64_t{1} << 50));
  MS_ASSIGN_OR_RETURN(q->bound_ms,
                      flags.get_int("bound-ms", q->bound_ms, 0, std::int64_t{1} << 50));
  MS_ASSIGN_OR_RETURN(q->wm_every, flags.get_int("wm-every", q->wm_every, 1));
  return q->validate();
}

}  // namespace meterstream::bench
