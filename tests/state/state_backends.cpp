// The backends the state suite (state_suite.hpp) runs against.
#include <memory>
#include <string>
#include <vector>

#include "meterstream/state/rocksdb_state_backend.hpp"
#include "meterstream/state/state_backend.hpp"
#include "state_suite.hpp"

namespace meterstream::testing {

namespace {

// A RocksDB backend in a fresh temporary directory, removed with the backend.
std::shared_ptr<StateBackend> make_temp_rocksdb_backend() {
  auto dir = std::make_shared<TempPath>("state-suite");
  RocksDBStateBackendOptions options;
  options.path = dir->path;
  // Small: the suite opens many backends, and exercises no large state.
  options.memory_budget_bytes = std::size_t{32} << 20;
  StatusOr<std::shared_ptr<StateBackend>> backend = make_rocksdb_state_backend(options);
  INFO(backend.status().ToString());
  REQUIRE(backend.ok());
  std::shared_ptr<StateBackend> real = std::move(backend).value();
  StateBackend* raw = real.get();
  return std::shared_ptr<StateBackend>(raw, [real, dir](StateBackend*) mutable {
    real.reset();  // closed before its directory is removed
    dir.reset();
  });
}

}  // namespace

const std::vector<StateBackendUnderTest>& state_backends_under_test() {
  static const std::vector<StateBackendUnderTest> backends = {
      {"memory", [] { return make_memory_state_backend().value(); }},
      {"rocksdb", make_temp_rocksdb_backend},
  };
  return backends;
}

}  // namespace meterstream::testing
