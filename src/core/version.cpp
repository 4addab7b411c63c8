#include "meterstream/core/version.hpp"

// CMake passes the project's VERSION, so that the version lives in one place.
#ifndef MS_VERSION_STRING
#error "MS_VERSION_STRING must be defined by the build (see CMakeLists.txt)"
#endif

namespace meterstream {

const char* version() { return MS_VERSION_STRING; }

}  // namespace meterstream
