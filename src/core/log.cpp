#include "meterstream/core/log.hpp"

#include <cstdio>
#include <string>

namespace meterstream {

const char* to_string(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

void log_to_stderr(LogLevel /*level*/, std::string_view message) {
  // One fwrite per line, so that lines of concurrent callers do not mix.
  std::string line = "meterstream: ";
  line.append(message.data(), message.size());
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

namespace detail {

void call_log(const LogFunction& log, LogLevel level, std::string_view message) {
  if (!log) return;
  try {
    log(level, message);
  } catch (...) {
    // Dropped: see the declaration.
  }
}

}  // namespace detail

}  // namespace meterstream
