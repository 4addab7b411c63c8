// The version of the meterstream library that a program is linked with.
//
// Thread-safety: pure function; safe from any thread.
#pragma once

namespace meterstream {

// Returns the library's version as "MAJOR.MINOR.PATCH" (for example "0.1.0"),
// the VERSION of the CMake project that built it. The string is static: never
// free it.
//
// Example:
//   std::printf("meterstream %s\n", meterstream::version());
const char* version();

}  // namespace meterstream
