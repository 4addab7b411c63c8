// The state backend test suite, run against every backend.
//
// The cases in state_suite_test.cpp call for_each_state_backend(), which runs
// the case body once per backend listed in state_backends_under_test() (in
// state_backends.cpp), each in its own Catch2 section named after the backend.
// A new backend joins the suite with one line in that list.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "common/temp_dir.hpp"
#include "meterstream/state/state.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::testing {

struct StateBackendUnderTest {
  std::string name;
  // Makes a fresh backend (each section gets its own).
  std::function<std::shared_ptr<StateBackend>()> make;
};

// The backends the suite runs against.
const std::vector<StateBackendUnderTest>& state_backends_under_test();

// A path that does not exist yet (a backend's or a snapshot's folder), removed
// with everything in it at scope exit.
using test::TempPath;

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

// Polls `condition` until it holds (true) or a minute has passed (false), for
// what a backend does on its own threads (RocksDB's flushes and compactions).
// The minute is a bound against hanging, not a speed requirement.
template <typename Condition>
bool eventually(Condition&& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// Sets the current key without hashing, to address a chosen key group.
inline void set_key(KeyContext& ctx, int key_group, std::string key) {
  ctx.key_group = key_group;
  ctx.key = std::move(key);
}

// The mean of the values added: an aggregating state's function.
struct Average {
  using accumulator_type = std::pair<double, std::int64_t>;  // sum, count
  accumulator_type create() const { return {0.0, 0}; }
  void add(accumulator_type& acc, const double& v) const {
    acc.first += v;
    ++acc.second;
  }
  void merge(accumulator_type& acc, const accumulator_type& other) const {
    acc.first += other.first;
    acc.second += other.second;
  }
  double result(const accumulator_type& acc) const { return acc.first / acc.second; }
};

}  // namespace meterstream::testing
