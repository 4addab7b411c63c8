# meterstream_add_test(<layer> <source>...)
#
# Builds the listed sources of tests/<layer>/ (paths relative to it) into one
# executable, meterstream_<layer>_tests, linked with meterstream, Catch2, the shared
# Catch2 main (meterstream_test_main) and the warnings, and registers each
# TEST_CASE as a ctest test with catch_discover_tests (fmt's add_fmt_test).
#
# - Test names are prefixed with "<layer>/"; every test has the label
#   <layer>, the tests of tests/e2e/ have the label e2e too, test cases
#   tagged [slow] have the label slow (excluded by the sanitizer presets) and
#   those tagged [rocksdb] the label rocksdb (excluded by the tsan preset),
#   those tagged [kafka] the label kafka (`ctest -L kafka`: the tests that
#   use a Kafka broker or Kafka's conventions), and those tagged [serial]
#   the label serial and RUN_SERIAL (no other test runs beside them: e.g.
#   a chaos test that kills the shared Kafka broker), and those tagged
#   [tools] (they run bench/ or examples/ binaries) the label tools.
# - Tests run in the build directory and get MS_SOURCE_DIR / MS_BINARY_DIR as
#   string macros (the source tree and the build tree).
# - Tests may include bench/ headers ("bench/q1.hpp") and link
#   meterstream_bench_lib.
# - Tests may include <librdkafka/rdkafka.h> (linked with PkgConfig::rdkafka).

include_guard(GLOBAL)

function(meterstream_add_test layer)
  set(_dir "${PROJECT_SOURCE_DIR}/tests/${layer}")
  set(_sources "")
  foreach(_source IN LISTS ARGN)
    list(APPEND _sources "${_dir}/${_source}")
  endforeach()
  if(NOT _sources)
    message(FATAL_ERROR "meterstream_add_test(${layer}): no sources listed")
  endif()

  set(_target meterstream_${layer}_tests)
  add_executable(${_target} ${_sources})
  target_link_libraries(
    ${_target} PRIVATE meterstream::meterstream meterstream_test_main Catch2::Catch2
                       meterstream_warnings)
  target_link_libraries(${_target} PRIVATE meterstream_bench_lib)
  # Tests may use librdkafka directly (tests/common/kafka_broker.hpp), to
  # prepare and check topics independently of the library's connectors.
  target_link_libraries(${_target} PRIVATE PkgConfig::rdkafka)
  # And hiredis (tests/common/redis_server.hpp), to read what the Redis sink
  # wrote through a connection of their own.
  target_link_libraries(${_target} PRIVATE PkgConfig::hiredis)
  target_include_directories(${_target} PRIVATE "${PROJECT_SOURCE_DIR}"
                                                "${PROJECT_SOURCE_DIR}/tests")
  target_compile_definitions(
    ${_target} PRIVATE MS_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                       MS_BINARY_DIR="${PROJECT_BINARY_DIR}"
                       MS_FAULT_INJECTION_CONFIGURED=$<BOOL:${MS_FAULT_INJECTION}>)
  set_target_properties(${_target} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                              "${PROJECT_BINARY_DIR}/tests")
  # One precompiled header for every test executable (MS_TEST_PCH): Catch2's
  # single header and the umbrella header cost about 5 s of parsing per test
  # source, more than most tests' own code. The first test target builds it,
  # the others reuse it (they share flags, definitions and include paths).
  if(MS_TEST_PCH)
    get_property(_pch_owner GLOBAL PROPERTY MS_TEST_PCH_OWNER)
    if(_pch_owner)
      target_precompile_headers(${_target} REUSE_FROM ${_pch_owner})
    else()
      target_precompile_headers(
        ${_target} PRIVATE <catch2/catch.hpp> "${PROJECT_SOURCE_DIR}/include/meterstream/meterstream.hpp"
        <algorithm> <atomic> <chrono> <cstdint> <map> <memory> <string> <thread> <vector>)
      set_property(GLOBAL PROPERTY MS_TEST_PCH_OWNER ${_target})
    endif()
  endif()

  set(_labels ${layer})
  if(layer STREQUAL "e2e")
    list(APPEND _labels e2e)
  endif()
  list(REMOVE_DUPLICATES _labels)

  catch_discover_tests(
    ${_target}
    TEST_PREFIX "${layer}/"
    WORKING_DIRECTORY "${PROJECT_BINARY_DIR}"
    PROPERTIES LABELS "${_labels}")

  # Test cases tagged [slow] get the ctest label `slow` too, which the
  # sanitizer test presets exclude, those tagged [rocksdb] the label
  # `rocksdb`, which the tsan preset excludes (Debian's RocksDB is not built
  # for TSan), those tagged [kafka] the label `kafka`, and those tagged
  # [serial] the label `serial` and RUN_SERIAL, and those tagged [tools]
  # (they run the bench or example binaries) the label `tools`, which the
  # asan preset excludes (it builds neither). Catch2 v2's
  # discovery does not turn tags into labels, so this ctest-time script (run
  # after the discovered tests are defined) asks the executable which test
  # cases carry each tag.
  file(
    GENERATE
    OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/${_target}_tag_labels.cmake"
    CONTENT
      "set(_exe [==[$<TARGET_FILE:${_target}>]==])
if(EXISTS \"\${_exe}\")
  set(_tagged \"\")
  foreach(_tag IN ITEMS slow rocksdb kafka serial tools)
    execute_process(COMMAND \"\${_exe}\" \"[\${_tag}]\" --list-test-names-only
                    OUTPUT_VARIABLE _out RESULT_VARIABLE _rc ERROR_QUIET)
    string(REPLACE \"\\n\" \";\" _names \"\${_out}\")
    foreach(_name IN LISTS _names)
      if(NOT _name STREQUAL \"\")
        string(MD5 _key \"\${_name}\")
        if(NOT DEFINED _labels_\${_key})
          set(_labels_\${_key} \"${_labels}\")
          set(_name_\${_key} \"\${_name}\")
          list(APPEND _tagged \${_key})
        endif()
        list(APPEND _labels_\${_key} \${_tag})
      endif()
    endforeach()
  endforeach()
  foreach(_key IN LISTS _tagged)
    set_tests_properties(\"${layer}/\${_name_\${_key}}\" PROPERTIES LABELS \"\${_labels_\${_key}}\")
    # list(FIND), not IN_LIST: this script runs without a policy version.
    list(FIND _labels_\${_key} serial _serial)
    if(_serial GREATER -1)
      set_tests_properties(\"${layer}/\${_name_\${_key}}\" PROPERTIES RUN_SERIAL TRUE)
    endif()
  endforeach()
endif()
")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES
                                         "${CMAKE_CURRENT_BINARY_DIR}/${_target}_tag_labels.cmake")
endfunction()
