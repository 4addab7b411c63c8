#include "output_check.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace meterstream::bench {
namespace {

namespace fs = std::filesystem;

// Parses the whole of `field` as a decimal integer.
template <typename T>
bool parse_field(std::string_view field, T* out) {
  const char* end = field.data() + field.size();
  const auto [ptr, ec] = std::from_chars(field.data(), end, *out, 10);
  return !field.empty() && ec == std::errc() && ptr == end;
}

// Splits off the field before the next ',' (or the rest of `line`).
std::string_view next_field(std::string_view& line, bool* last) {
  const std::size_t comma = line.find(',');
  *last = comma == std::string_view::npos;
  std::string_view field = line.substr(0, comma);
  line.remove_prefix(*last ? line.size() : comma + 1);
  return field;
}

// Which (meter_id, start) each well-formed line had, to count repeats once
// every file is read: a sorted vector takes far less memory than a hash set
// for the millions of windows of a large run.
using WindowKey = std::pair<std::uint64_t, std::int64_t>;

// Adds the lines of one committed file to `check` and `keys`.
Status read_file(const std::string& path, OutputCheck* check, std::vector<WindowKey>* keys) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot open output file '", path, "': ", std::strerror(errno)));
  }
  char* buf = nullptr;
  std::size_t cap = 0;
  Q1OutputWindow w;
  for (;;) {
    const ssize_t n = getline(&buf, &cap, f);
    if (n < 0) break;
    std::string_view line(buf, static_cast<std::size_t>(n));
    // A last line without '\n' is a truncated write.
    if (line.empty() || line.back() != '\n') {
      ++check->malformed;
      continue;
    }
    line.remove_suffix(1);
    if (!parse_q1_output_line(line, &w)) {
      ++check->malformed;
      continue;
    }
    check->totals.add_window(w.meter_id, w.start, w.count, w.sum_wh, w.min_v, w.max_v);
    keys->emplace_back(w.meter_id, w.start);
  }
  std::free(buf);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return absl::UnavailableError(absl::StrCat("cannot read output file '", path, "'"));
  ++check->files;
  return Status();
}

}  // namespace

std::string q1_output_line(const Q1OutputWindow& w) {
  return absl::StrCat(w.meter_id, ",", w.start, ",", w.count, ",", w.sum_wh, ",", w.min_v, ",",
                      w.max_v);
}

bool parse_q1_output_line(std::string_view line, Q1OutputWindow* out) {
  bool last = false;
  if (!parse_field(next_field(line, &last), &out->meter_id) || last) return false;
  if (!parse_field(next_field(line, &last), &out->start) || last) return false;
  if (!parse_field(next_field(line, &last), &out->count) || last) return false;
  if (!parse_field(next_field(line, &last), &out->sum_wh) || last) return false;
  if (!parse_field(next_field(line, &last), &out->min_v) || last) return false;
  if (!parse_field(next_field(line, &last), &out->max_v) || !last) return false;
  // Voltages are 16-bit: the digest packs them as min_v << 16 | max_v.
  return out->min_v <= 0xffff && out->max_v <= 0xffff;
}

StatusOr<OutputCheck> check_q1_output(const std::string& dir) {
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (!fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat("output folder '", dir, "' does not exist"));
  }
  if (!fs::is_directory(status)) {
    return absl::InvalidArgumentError(absl::StrCat("output '", dir, "' is not a folder"));
  }
  std::vector<std::string> paths;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    const bool committed = name.size() > 4 && name.front() != '.' &&
                           name.compare(name.size() - 4, 4, ".csv") == 0 &&
                           it->is_regular_file(type_ec);
    if (committed) paths.push_back(it->path().string());
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot list output folder '", dir, "': ", ec.message()));
  }
  // The totals do not depend on the order; sorted for reproducible errors.
  std::sort(paths.begin(), paths.end());

  OutputCheck check;
  std::vector<WindowKey> keys;
  for (const std::string& path : paths) MS_RETURN_IF_ERROR(read_file(path, &check, &keys));
  std::sort(keys.begin(), keys.end());
  for (std::size_t i = 1; i < keys.size(); ++i) {
    if (keys[i] == keys[i - 1]) ++check.repeated;
  }
  return check;
}

nlohmann::ordered_json output_check_json(const OutputCheck& check) {
  nlohmann::ordered_json j;
  j["windows"] = check.totals.windows;
  j["total_count"] = check.totals.total_count;
  j["sum_wh"] = check.totals.sum_wh;
  j["digest"] = check.totals.digest;
  j["repeated"] = check.repeated;
  j["malformed"] = check.malformed;
  j["files"] = check.files;
  return j;
}

}  // namespace meterstream::bench
