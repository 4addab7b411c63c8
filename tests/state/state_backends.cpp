// The backends the state suite (state_suite.hpp) runs against.
#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "meterstream/state/rocksdb_state_backend.hpp"
#include "meterstream/state/state_backend.hpp"
#include "state_suite.hpp"

namespace meterstream::testing {

std::string make_temp_dir_path(const std::string& tag) {
  static std::atomic<int> counter{0};
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("meterstream-" + tag + "-" + std::to_string(::getpid()) + "-" +
       std::to_string(counter.fetch_add(1)));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return dir.string();
}

namespace {

// A RocksDB backend in a fresh temporary directory, removed with the backend.
std::shared_ptr<StateBackend> make_temp_rocksdb_backend() {
  RocksDBStateBackendOptions options;
  options.path = make_temp_dir_path("state-suite");
  // Small: the suite opens many backends, and exercises no large state.
  options.memory_budget_bytes = std::size_t{32} << 20;
  StatusOr<std::shared_ptr<StateBackend>> backend = make_rocksdb_state_backend(options);
  INFO(backend.status().ToString());
  REQUIRE(backend.ok());
  std::shared_ptr<StateBackend> real = std::move(backend).value();
  StateBackend* raw = real.get();
  return std::shared_ptr<StateBackend>(raw, [real, path = options.path](StateBackend*) mutable {
    real.reset();
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
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
