// A consumer of meterstream: compiles against the public headers and links
// meterstream::meterstream (see CMakeLists.txt beside this file).

#include <cstdio>
#include <cstring>

#include "meterstream/core/status.hpp"
#include "meterstream/core/version.hpp"

// The umbrella header too, once it exists: every public header must compile
// from the installed include folder alone.
#if __has_include("meterstream/meterstream.hpp")
#include "meterstream/meterstream.hpp"
#endif

namespace {

meterstream::Status check_version() {
  if (std::strlen(meterstream::version()) == 0) {
    return absl::InternalError("meterstream::version() is empty");
  }
  return meterstream::Status();
}

meterstream::Status run() {
  MS_RETURN_IF_ERROR(check_version());
  return meterstream::Status();
}

}  // namespace

int main() {
  const meterstream::Status status = run();
  if (!status.ok()) {
    std::fprintf(stderr, "consumer: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("consumer: linked meterstream %s\n", meterstream::version());
  return 0;
}
