// The state backend test suite, run against every backend.
//
// The cases in state_suite_test.cpp call for_each_state_backend(), which runs
// the case body once per backend listed in state_backends_under_test() (in
// state_backends.cpp), each in its own Catch2 section named after the backend.
// A new backend joins the suite with one line in that list.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/state/state_backend.hpp"

namespace meterstream::testing {

struct StateBackendUnderTest {
  std::string name;
  // Makes a fresh backend (each section gets its own).
  std::function<std::shared_ptr<StateBackend>()> make;
};

// The backends the suite runs against.
const std::vector<StateBackendUnderTest>& state_backends_under_test();

// A path for a temporary directory, unique in this process, that does not
// exist yet (tests remove it when done).
std::string make_temp_dir_path(const std::string& tag);

// A temporary directory path (not created), removed with everything in it at
// scope exit.
struct TempDir {
  explicit TempDir(const std::string& tag = "test") : path(make_temp_dir_path(tag)) {}
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path;
};

// Runs fn(StateBackend&) once per backend, in a section named after it.
template <typename Fn>
void for_each_state_backend(Fn&& fn) {
  for (const StateBackendUnderTest& b : state_backends_under_test()) {
    DYNAMIC_SECTION(b.name << " backend") {
      std::shared_ptr<StateBackend> backend = b.make();
      REQUIRE(backend != nullptr);
      fn(*backend);
    }
  }
}

// Opens a store, failing the test on error.
inline std::unique_ptr<KeyedStateStore> open_store(StateBackend& backend,
                                                   std::string_view operator_id,
                                                   KeyGroupRange range,
                                                   int max_parallelism = 128) {
  StatusOr<std::unique_ptr<KeyedStateStore>> store =
      backend.open_keyed_store(operator_id, range, max_parallelism);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  REQUIRE(*store != nullptr);
  return std::move(store).value();
}

// Returns the value of a StatusOr, failing the test on error.
template <typename T>
T value_or_fail(StatusOr<T> s) {
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(s).value();
}

}  // namespace meterstream::testing
