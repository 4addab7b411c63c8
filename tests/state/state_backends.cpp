// The backends the state suite (state_suite.hpp) runs against.
#include <memory>
#include <vector>

#include "meterstream/state/state_backend.hpp"
#include "state_suite.hpp"

namespace meterstream::testing {

const std::vector<StateBackendUnderTest>& state_backends_under_test() {
  static const std::vector<StateBackendUnderTest> backends = {
      {"memory", [] { return make_memory_state_backend().value(); }},
      // TODO: add {"rocksdb", ...} here when the RocksDB backend lands.
  };
  return backends;
}

}  // namespace meterstream::testing
