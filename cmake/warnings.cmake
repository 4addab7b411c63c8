# meterstream_warnings: the warning flags of meterstream's own targets.
#
# An INTERFACE target linked PRIVATE (through $<BUILD_INTERFACE:...>) to the
# library, the tests, the examples and the bench, so the flags are never
# imposed on a consumer (taskflow's error_settings). MS_WERROR adds -Werror.

include_guard(GLOBAL)

add_library(meterstream_warnings INTERFACE)
add_library(meterstream::warnings ALIAS meterstream_warnings)

if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(meterstream_warnings INTERFACE -Wall -Wextra -Wpedantic)
  if(MS_WERROR)
    target_compile_options(meterstream_warnings INTERFACE -Werror)
  endif()
elseif(MSVC)
  target_compile_options(meterstream_warnings INTERFACE /W4 /permissive-)
  if(MS_WERROR)
    target_compile_options(meterstream_warnings INTERFACE /WX)
  endif()
endif()
