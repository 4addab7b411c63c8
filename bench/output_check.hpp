// The check of a crash-and-resume run's output (shared/bench/WORKLOAD.md
// "Crash-and-resume runs"): reads the committed files of an output folder,
// one fired Q1 window per line, and computes Q1's results from them, plus
// the windows that appear more than once and the lines that do not parse.
// Once a run has exited 0, its output must give the digest of the
// uninterrupted run with no repeated window and no malformed line.
//
// Line format (q1_output_line() writes it, no spaces, '\n' after each line):
//   meter_id,start,count,sum_wh,min_v,max_v
// as decimal integers: meter_id, count, sum_wh unsigned 64-bit, start signed
// 64-bit, min_v and max_v in [0, 65535].
//
// Thread-safety: pure functions; concurrent calls are independent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "q1.hpp"
#include "meterstream/core/status.hpp"

namespace meterstream::bench {

// One fired Q1 window as written to the output.
struct Q1OutputWindow {
  std::uint64_t meter_id = 0;
  std::int64_t start = 0;
  std::uint64_t count = 0;
  std::uint64_t sum_wh = 0;
  std::uint32_t min_v = 0;
  std::uint32_t max_v = 0;
};

// The output line of `w`, without '\n'.
std::string q1_output_line(const Q1OutputWindow& w);

// Parses one line (without '\n') of the format above into `*out`; false,
// leaving `*out` unspecified, when it is malformed (wrong field count, a
// field that is not a whole decimal number of its type, a voltage > 65535).
bool parse_q1_output_line(std::string_view line, Q1OutputWindow* out);

// What check_q1_output() found.
struct OutputCheck {
  // windows, total_count, sum_wh and digest over the well-formed lines,
  // repeated ones included (so a repeat changes the digest too);
  // late_dropped and duplicates_dropped stay 0: the output does not say.
  Q1Totals totals;
  // Well-formed lines whose (meter_id, start) an earlier line already had:
  // a window counted twice.
  std::uint64_t repeated = 0;
  // Lines that do not parse, including an empty line and a last line without
  // its '\n' (a truncated file).
  std::uint64_t malformed = 0;
  // Committed files read.
  std::uint64_t files = 0;
};

// Reads every committed file of `dir`: the regular files whose name ends in
// ".csv" (not starting with '.', as the shell's *.csv); other names are
// staging and are ignored. kNotFound when `dir` does not exist,
// kInvalidArgument when it is not a folder, kUnavailable naming the file
// that cannot be read.
StatusOr<OutputCheck> check_q1_output(const std::string& dir);

// The JSON object of `meterstream-bench check-output`, keys in this order:
// windows, total_count, sum_wh, digest, repeated, malformed, files (integers).
nlohmann::ordered_json output_check_json(const OutputCheck& check);

}  // namespace meterstream::bench
