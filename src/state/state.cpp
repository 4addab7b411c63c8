// Out-of-line parts of the typed state API (state/state.hpp) and the backend
// interface (state/state_backend.hpp): error types and messages, kept here so
// that the cold paths do not bloat every operator that includes the headers.
#include "meterstream/state/state.hpp"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace meterstream {

const char* to_string(StateDescriptor::Kind kind) {
  switch (kind) {
    case StateDescriptor::Kind::kValue:
      return "value";
    case StateDescriptor::Kind::kMap:
      return "map";
    case StateDescriptor::Kind::kList:
      return "list";
    case StateDescriptor::Kind::kAggregating:
      return "aggregating";
  }
  return "unknown";
}

StateError::StateError(Status status)
    : std::runtime_error(status.ToString()), status_(std::move(status)) {}

namespace detail {

Status decode_error(const KeyedStateStore& store, int state, int key_group, const char* what,
                    std::size_t size) {
  const StateDescriptor* descriptor = store.descriptor(state);
  // Corrupt bytes, or state written by a build with another type or codec for
  // this state: either way the stored data cannot be trusted (kDataLoss).
  return absl::DataLossError(absl::StrCat(
      "operator '", store.operator_id(), "' state '",
      descriptor != nullptr ? descriptor->name : std::string("?"), "' key group ",
      key_group, ": cannot decode the stored ", what, " (", size,
      " bytes) with the state's codec"));
}

}  // namespace detail
}  // namespace meterstream
