// What stateful operators share to take part in checkpoints: their state
// bytes per key group, their store snapshots, and reading both back. Not API.
#pragma once

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include "meterstream/core/codec.hpp"
#include "meterstream/checkpoint/detail/checkpoint_parts.hpp"
#include "meterstream/runtime/detail/operator_context.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::detail {

[[noreturn]] inline void throw_corrupt(const std::string& op, const std::string& what) {
  throw StatusError{absl::DataLossError(
      op + ": " + what + " in the checkpoint being restored does not decode")};
}

// The smallest of the old instances' watermarks, which start their operator
// states (they are equal: every instance sees the same watermarks before a
// barrier); nullopt when the checkpoint has none.
inline std::optional<Timestamp> restored_watermark(const RestoredCheckpoint::Operator& part,
                                                   const std::string& op) {
  std::optional<Timestamp> wm;
  for (const auto& [worker, bytes] : part.operator_states) {
    std::string_view in = bytes;
    std::int64_t v = 0;
    if (!get_i64(&in, &v)) throw_corrupt(op, "its operator state");
    wm = wm ? std::min(*wm, v) : v;
  }
  return wm;
}

// The readable (demangled) name of T, for messages.
template <typename T>
std::string type_name() {
  const char* mangled = typeid(T).name();
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && demangled != nullptr ? std::string(demangled.get()) : mangled;
}

// The names of those of Types that have no Codec, comma-separated.
template <typename... Types>
std::string types_without_codec() {
  std::string names;
  ((HasCodec<Types>::value ? void()
                           : void(names += (names.empty() ? "" : ", ") + type_name<Types>())),
   ...);
  return names;
}

// Checkpointing writes the state of these types with their Codec; the error
// names those that have none.
template <typename... Types>
void require_codecs(const std::string& op) {
  if constexpr (!(HasCodec<Types>::value && ...)) {
    throw StatusError{absl::FailedPreconditionError(
        op + ": checkpointing needs a Codec (core/codec.hpp) for the types of its state; " +
        types_without_codec<Types...>() +
        " has none (specialise meterstream::Codec<T> with encode and decode)")};
  }
}

// Snapshots `store` (the synchronous part) into a new local folder of
// the operator's checkpoint `id` and adds it to `snap`.
inline void snapshot_store(OperatorContext& context, std::int64_t id, KeyedStateStore& store,
                           OperatorInstanceState& snap) {
  std::string dir = context.store_snapshot_dir(id);
  StatusOr<StoreManifest> taken = store.snapshot(dir);
  if (!taken.ok()) throw StatusError{taken.status()};
  snap.stores.push_back(LocalStoreCopy{std::move(dir), *std::move(taken)});
}

// Restores into `store` every store snapshot of `part` (the key groups of
// the store's own range).
inline void restore_stores(KeyedStateStore& store, const RestoredCheckpoint::Operator& part) {
  for (const LocalStoreCopy& s : part.stores) {
    Status st = store.restore(s.local_dir, s.manifest);
    if (!st.ok()) throw StatusError{st};
  }
}

// An instance's state bytes, one string per key group of its range, put into
// a snapshot (empty ones left out).
class KeyGroupBytes {
 public:
  explicit KeyGroupBytes(KeyGroupRange range)
      : range_(range), bytes_(static_cast<std::size_t>(range.size())) {}
  std::string& operator[](int key_group) {
    return bytes_[static_cast<std::size_t>(key_group - range_.first)];
  }
  void move_into(OperatorInstanceState& snap) {
    for (std::size_t g = 0; g < bytes_.size(); ++g) {
      if (!bytes_[g].empty()) {
        snap.keyed.emplace_back(range_.first + static_cast<int>(g), std::move(bytes_[g]));
      }
    }
  }

 private:
  KeyGroupRange range_;
  std::vector<std::string> bytes_;
};

// Calls fn(bytes) for the restored bytes of each key group in `range`.
template <typename F>
void for_each_restored(const RestoredCheckpoint::Operator& part, KeyGroupRange range, F&& fn) {
  for (const auto& [kg, blobs] : part.keyed) {
    if (kg < range.first || kg > range.last) continue;
    for (const std::string& b : blobs) fn(std::string_view(b));
  }
}

}  // namespace meterstream::detail
