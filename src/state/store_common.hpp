// Internal: what the memory and RocksDB backends share: argument checks of
// open_keyed_store() and register_state(), the registry of open key group
// ranges per operator, error messages, and KeyedStoreBase, the part of a store
// that is the same in both (what it was opened with, its registered states,
// its TTL clock).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/state/state_backend.hpp"
#include "state/ttl_format.hpp"

namespace meterstream::detail {

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// The key group ranges of the stores that are open, per operator id, so that
// two stores never own the same key group of an operator (which RocksDB, with
// one instance per process, would make them share). Stores hold it by
// shared_ptr: a store may outlive its backend.
class OpenStores {
 public:
  Status acquire(const std::string& operator_id, KeyGroupRange range) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<KeyGroupRange>& ranges = open_[operator_id];
    for (const KeyGroupRange& r : ranges) {
      if (r.first <= range.last && range.first <= r.last) {
        return absl::AlreadyExistsError(absl::StrCat(
            "operator '", operator_id, "': key groups [", range.first, ", ", range.last,
            "] overlap an open store of key groups [", r.first, ", ", r.last, "]"));
      }
    }
    ranges.push_back(range);
    return Status();
  }

  void release(const std::string& operator_id, KeyGroupRange range) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = open_.find(operator_id);
    if (it == open_.end()) return;
    std::vector<KeyGroupRange>& ranges = it->second;
    for (auto r = ranges.begin(); r != ranges.end(); ++r) {
      if (*r == range) {
        ranges.erase(r);
        break;
      }
    }
    if (ranges.empty()) open_.erase(it);
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<KeyGroupRange>, std::less<>> open_;
};

// The checks of StateBackend::open_keyed_store() that do not depend on the
// backend.
inline Status check_open_arguments(const std::string& operator_id, KeyGroupRange range,
                                   int max_parallelism) {
  if (operator_id.empty()) {
    return absl::InvalidArgumentError("open_keyed_store: empty operator id");
  }
  if (max_parallelism < 1) {
    return absl::InvalidArgumentError(absl::StrCat("open_keyed_store: operator '",
                                                   operator_id, "': max_parallelism ",
                                                   max_parallelism, " < 1"));
  }
  if (range.size() == 0 || range.first < 0 || range.last >= max_parallelism) {
    return absl::InvalidArgumentError(absl::StrCat(
        "open_keyed_store: operator '", operator_id, "': key groups [", range.first, ", ",
        range.last, "] are empty or not within [0, ", max_parallelism, ")"));
  }
  return Status();
}

inline std::string ttl_to_string(const std::optional<StateTtl>& ttl) {
  if (!ttl) return "no TTL";
  return absl::StrCat("TTL ", ttl->ttl_ms, " ms of ",
                      ttl->domain == TimeDomain::kEventTime ? "event" : "processing",
                      " time", ttl->refresh_on_read ? ", refreshed on read" : "");
}

// The checks of register_state() on a descriptor alone.
inline Status check_descriptor(const std::string& operator_id,
                               const StateDescriptor& descriptor) {
  if (descriptor.name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("operator '", operator_id, "': a state needs a name"));
  }
  if (descriptor.ttl && descriptor.ttl->ttl_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("operator '", operator_id, "' state '", descriptor.name, "': TTL ",
                     descriptor.ttl->ttl_ms, " ms is not positive"));
  }
  return Status();
}

// OK when `requested` may share the state registered as `existing` (same
// name): same kind and TTL.
inline Status check_same_state(const std::string& operator_id,
                               const StateDescriptor& existing,
                               const StateDescriptor& requested) {
  if (existing.kind != requested.kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "operator '", operator_id, "' state '", requested.name, "': registered as ",
        to_string(existing.kind), " state, requested as ", to_string(requested.kind),
        " state"));
  }
  if (existing.ttl != requested.ttl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "operator '", operator_id, "' state '", requested.name, "': registered with ",
        ttl_to_string(existing.ttl), ", requested with ", ttl_to_string(requested.ttl)));
  }
  return Status();
}

// kDataLoss for a stored TTL value too short to hold its expiry.
inline Status short_ttl_value_error(const std::string& operator_id,
                                    const StateDescriptor& descriptor, int key_group,
                                    std::size_t size) {
  return absl::DataLossError(absl::StrCat(
      "operator '", operator_id, "' state '", descriptor.name, "' key group ", key_group,
      ": stored value of ", size, " bytes is shorter than its 8-byte TTL expiry"));
}

// The error for a (state, key group) that a store cannot address: an unknown
// state id, or a key group outside the store's range.
inline Status locate_error(const std::string& operator_id, KeyGroupRange range,
                           const StateDescriptor* descriptor, int state, int key_group) {
  if (descriptor == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("operator '", operator_id,
                                                   "': unknown state id ", state,
                                                   " (key group ", key_group, ")"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "operator '", operator_id, "' state '", descriptor->name, "' key group ", key_group,
      ": outside the store's key groups [", range.first, ", ", range.last, "]",
      key_group < 0 ? " (no current key set?)" : ""));
}

// The error for a key group outside the store's range.
inline Status range_error(const std::string& operator_id, KeyGroupRange range, int key_group) {
  return absl::InvalidArgumentError(absl::StrCat(
      "operator '", operator_id, "' key group ", key_group,
      ": outside the store's key groups [", range.first, ", ", range.last, "]"));
}

// register_state()'s first half, for stores that keep their states in a
// vector whose elements have a `descriptor`: checks `descriptor` and returns
// the id of the state already registered under its name (after checking it is
// the same state), or -1 when there is none.
template <typename States>
StatusOr<int> find_registered_state(const std::string& operator_id, const States& states,
                                    const StateDescriptor& descriptor) {
  MS_RETURN_IF_ERROR(check_descriptor(operator_id, descriptor));
  for (std::size_t i = 0; i < states.size(); ++i) {
    const StateDescriptor& existing = states[i].descriptor;
    if (existing.name != descriptor.name) continue;
    MS_RETURN_IF_ERROR(check_same_state(operator_id, existing, descriptor));
    return static_cast<int>(i);
  }
  return -1;
}

// The part of a KeyedStateStore that both backends share: the operator id,
// key group range and max parallelism it was opened with (and its claim on
// that range in OpenStores, released when it closes), its registered states
// (register_state(), num_states(), descriptor()), its own event-time clock
// (advance_event_time(), current_time()), and the errors that name them.
//
// `State` is the backend's per-state record; it has a member `descriptor`.
// A backend implements new_state(): what registering a state not registered
// yet in this store creates.
template <typename State>
class KeyedStoreBase : public KeyedStateStore {
 public:
  KeyedStoreBase(std::shared_ptr<OpenStores> open_stores, std::string operator_id,
                 KeyGroupRange range, int max_parallelism)
      : operator_id_(std::move(operator_id)),
        range_(range),
        max_parallelism_(max_parallelism),
        open_stores_(std::move(open_stores)) {}
  ~KeyedStoreBase() override { open_stores_->release(operator_id_, range_); }

  const std::string& operator_id() const final { return operator_id_; }
  KeyGroupRange key_group_range() const final { return range_; }
  int max_parallelism() const final { return max_parallelism_; }

  StatusOr<int> register_state(const StateDescriptor& descriptor) final {
    MS_ASSIGN_OR_RETURN(const int existing,
                        find_registered_state(operator_id_, states_, descriptor));
    if (existing >= 0) return existing;
    MS_ASSIGN_OR_RETURN(State state, new_state(descriptor));
    states_.push_back(std::move(state));
    return static_cast<int>(states_.size() - 1);
  }
  int num_states() const final { return static_cast<int>(states_.size()); }
  const StateDescriptor* descriptor(int state) const final {
    if (state < 0 || state >= num_states()) return nullptr;
    return &states_[static_cast<std::size_t>(state)].descriptor;
  }

  void advance_event_time(Timestamp watermark) final { clock_->advance_event_time(watermark); }
  Timestamp current_time(TimeDomain domain) const final { return clock_->now(domain); }

 protected:
  // Makes the record of a state that this store has not registered yet
  // (`descriptor` was checked).
  virtual StatusOr<State> new_state(const StateDescriptor& descriptor) = 0;

  // Whether (state, key group) is addressable; locate_error() says why not.
  bool valid(int state, int key_group) const {
    return state >= 0 && state < num_states() && range_.contains(key_group);
  }
  const TtlClock& clock() const { return *clock_; }
  // The clock, for those that read it from other threads (RocksDB's
  // compaction filters).
  std::shared_ptr<const TtlClock> shared_clock() const { return clock_; }

  Status locate_error(int state, int key_group) const {
    return detail::locate_error(operator_id_, range_, descriptor(state), state, key_group);
  }
  Status range_error(int key_group) const {
    return detail::range_error(operator_id_, range_, key_group);
  }
  Status short_value_error(int state, int key_group, std::size_t size) const {
    return short_ttl_value_error(operator_id_, *descriptor(state), key_group, size);
  }
  // put_stored()'s check: a stored TTL value holds its expiry.
  Status check_stored(int state, int key_group, std::string_view stored) const {
    const StateDescriptor& d = *descriptor(state);
    if (!d.ttl || stored.size() >= kExpiryBytes) return Status();
    return absl::InvalidArgumentError(absl::StrCat(
        "operator '", operator_id_, "' state '", d.name, "' key group ", key_group,
        ": put_stored of ", stored.size(), " bytes, shorter than the 8-byte TTL expiry"));
  }

  const std::string operator_id_;
  const KeyGroupRange range_;
  const int max_parallelism_;
  // A deque so that descriptor() pointers stay valid when states are added.
  std::deque<State> states_;

 private:
  const std::shared_ptr<OpenStores> open_stores_;
  const std::shared_ptr<TtlClock> clock_ = std::make_shared<TtlClock>();
};

// StateBackend::open_keyed_store() for a store of type Store, constructed
// from (open_stores, operator id, range, max_parallelism, args...): checks
// the arguments and claims the range.
template <typename Store, typename... Args>
StatusOr<std::unique_ptr<KeyedStateStore>> open_store(
    const std::shared_ptr<OpenStores>& open_stores, std::string operator_id,
    KeyGroupRange range, int max_parallelism, Args&&... args) {
  MS_RETURN_IF_ERROR(check_open_arguments(operator_id, range, max_parallelism));
  MS_RETURN_IF_ERROR(open_stores->acquire(operator_id, range));
  return std::unique_ptr<KeyedStateStore>(std::make_unique<Store>(
      open_stores, std::move(operator_id), range, max_parallelism, std::forward<Args>(args)...));
}

}  // namespace meterstream::detail
