// Fault injection (core/failpoint.hpp). MS_FAULT_INJECTION is defined for
// this file only (CMakeLists.txt), so the option rebuilds nothing else.
#include "core/failpoint.hpp"

#if MS_FAULT_INJECTION
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <signal.h>
#include <unistd.h>
#endif

namespace meterstream::detail {

#if MS_FAULT_INJECTION

bool fault_injection_enabled() { return true; }

void failpoint(const char* point) {
  static const std::string spec = [] {
    const char* v = std::getenv("MS_CHECKPOINT_KILL_AT");
    return std::string(v == nullptr ? "" : v);
  }();
  static std::atomic<int> hits{0};
  if (spec.empty()) return;
  const std::size_t colon = spec.find(':');
  if (spec.compare(0, colon, point) != 0) return;
  const int n =
      colon == std::string::npos ? 1 : std::atoi(spec.c_str() + colon + 1);
  if (hits.fetch_add(1) + 1 == n) {
    std::fprintf(stderr,
                 "meterstream: MS_CHECKPOINT_KILL_AT=%s: killing the process\n",
                 spec.c_str());
    ::kill(::getpid(), SIGKILL);
  }
}

#else

bool fault_injection_enabled() { return false; }

void failpoint(const char* /*point*/) {}

#endif

}  // namespace meterstream::detail
