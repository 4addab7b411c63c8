# MS_SANITIZE: compile and link every target of this build with sanitizers.
#
#   -DMS_SANITIZE=address,undefined   ASan + UBSan (the `asan` preset)
#   -DMS_SANITIZE=thread              TSan (the `tsan` preset)
#
# The flags are set for this directory tree (library, tests, examples, bench),
# which must all agree, and never for a consumer that adds meterstream with
# add_subdirectory() without setting MS_SANITIZE. Any error stops the program
# (-fno-sanitize-recover=all), so a ctest run fails on the first report.

include_guard(GLOBAL)

if(MS_SANITIZE)
  if(MS_SANITIZE MATCHES "thread" AND MS_SANITIZE MATCHES "address")
    message(FATAL_ERROR "MS_SANITIZE: thread and address cannot be combined (got '${MS_SANITIZE}')")
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "MS_SANITIZE needs GCC or Clang")
  endif()
  set(_ms_sanitize_flags -fsanitize=${MS_SANITIZE} -fno-omit-frame-pointer
                         -fno-sanitize-recover=all)
  add_compile_options(${_ms_sanitize_flags})
  add_link_options(-fsanitize=${MS_SANITIZE})
  message(STATUS "meterstream: sanitizers ${MS_SANITIZE}")
endif()
