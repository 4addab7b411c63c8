// The memory state backend: per state and key group, an ordered map from key
// bytes to value bytes.
//
// A btree (rather than a hash map) keeps the entries of a (state, key group)
// ordered, as RocksDB does, so that prefix scans (MapState iteration) are
// ordered and cost the entries visited, and so that both backends give the
// same iteration order. One map per key group lets a key group be snapshotted
// or dropped without touching the others.
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "meterstream/state/state_backend.hpp"

namespace meterstream {
namespace {

using EntryMap = absl::btree_map<std::string, std::string, std::less<>>;

bool starts_with(std::string_view s, std::string_view prefix) {
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

class MemoryKeyedStateStore final : public KeyedStateStore {
 public:
  MemoryKeyedStateStore(std::shared_ptr<OpenStores> open_stores, std::string operator_id,
                        KeyGroupRange range, int max_parallelism)
      : open_stores_(std::move(open_stores)),
        operator_id_(std::move(operator_id)),
        range_(range),
        max_parallelism_(max_parallelism) {}

  ~MemoryKeyedStateStore() override { open_stores_->release(operator_id_, range_); }

  const char* name() const override { return "memory"; }
  const std::string& operator_id() const override { return operator_id_; }
  KeyGroupRange key_group_range() const override { return range_; }
  int max_parallelism() const override { return max_parallelism_; }

  StatusOr<int> register_state(const StateDescriptor& descriptor) override {
    if (descriptor.name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("operator '", operator_id_, "': a state needs a name"));
    }
    for (std::size_t i = 0; i < states_.size(); ++i) {
      const StateDescriptor& existing = states_[i].descriptor;
      if (existing.name != descriptor.name) continue;
      if (existing.kind != descriptor.kind) {
        return absl::InvalidArgumentError(absl::StrCat(
            "operator '", operator_id_, "' state '", descriptor.name,
            "': registered as ", to_string(existing.kind), " state, requested as ",
            to_string(descriptor.kind), " state"));
      }
      return static_cast<int>(i);
    }
    states_.push_back(State{descriptor, std::vector<EntryMap>(
                                            static_cast<std::size_t>(range_.size()))});
    return static_cast<int>(states_.size() - 1);
  }

  int num_states() const override { return static_cast<int>(states_.size()); }

  const StateDescriptor* descriptor(int state) const override {
    if (state < 0 || state >= num_states()) return nullptr;
    return &states_[static_cast<std::size_t>(state)].descriptor;
  }

  StatusOr<bool> get(int state, int key_group, std::string_view key,
                     std::string* value) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    auto it = map->find(key);
    if (it == map->end()) return false;
    value->assign(it->second);
    return true;
  }

  Status put(int state, int key_group, std::string_view key,
             std::string_view value) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    auto it = map->find(key);
    if (it != map->end()) {
      it->second.assign(value.data(), value.size());
    } else {
      map->emplace(std::string(key), std::string(value));
    }
    return Status();
  }

  Status append(int state, int key_group, std::string_view key,
                std::string_view bytes) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    auto it = map->find(key);
    if (it != map->end()) {
      it->second.append(bytes.data(), bytes.size());
    } else {
      map->emplace(std::string(key), std::string(bytes));
    }
    return Status();
  }

  Status remove(int state, int key_group, std::string_view key) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    auto it = map->find(key);
    if (it != map->end()) map->erase(it);
    return Status();
  }

  Status for_each(int state, int key_group, std::string_view prefix,
                  absl::FunctionRef<bool(std::string_view, std::string_view)> fn) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    for (auto it = map->lower_bound(prefix);
         it != map->end() && starts_with(it->first, prefix); ++it) {
      if (!fn(it->first, it->second)) break;
    }
    return Status();
  }

  Status remove_prefix(int state, int key_group, std::string_view prefix) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    auto first = map->lower_bound(prefix);
    auto last = first;
    while (last != map->end() && starts_with(last->first, prefix)) ++last;
    map->erase(first, last);
    return Status();
  }

  Status for_each_in_key_group(
      int key_group,
      absl::FunctionRef<bool(int, std::string_view, std::string_view)> fn) override {
    if (!range_.contains(key_group)) return range_error(key_group);
    const std::size_t index = group_index(key_group);
    for (std::size_t s = 0; s < states_.size(); ++s) {
      for (const auto& [key, value] : states_[s].groups[index]) {
        if (!fn(static_cast<int>(s), key, value)) return Status();
      }
    }
    return Status();
  }

  Status clear_key_group(int key_group) override {
    if (!range_.contains(key_group)) return range_error(key_group);
    const std::size_t index = group_index(key_group);
    for (State& state : states_) state.groups[index].clear();
    return Status();
  }

 private:
  struct State {
    StateDescriptor descriptor;
    std::vector<EntryMap> groups;  // indexed by key group - range_.first
  };

  std::size_t group_index(int key_group) const {
    return static_cast<std::size_t>(key_group - range_.first);
  }

  // The map of (state, key group), or nullptr when either is invalid (then
  // locate_error says why). The hot path, so it builds no Status.
  EntryMap* find(int state, int key_group) {
    if (state < 0 || state >= num_states() || !range_.contains(key_group)) {
      return nullptr;
    }
    return &states_[static_cast<std::size_t>(state)].groups[group_index(key_group)];
  }

  Status locate_error(int state, int key_group) const {
    const StateDescriptor* d = descriptor(state);
    if (d == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "operator '", operator_id_, "': unknown state id ", state, " (key group ",
          key_group, ")"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "operator '", operator_id_, "' state '", d->name, "' key group ", key_group,
        ": outside the store's key groups [", range_.first, ", ", range_.last, "]",
        key_group < 0 ? " (no current key set?)" : ""));
  }

  Status range_error(int key_group) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "operator '", operator_id_, "' key group ", key_group,
        ": outside the store's key groups [", range_.first, ", ", range_.last, "]"));
  }

  const std::shared_ptr<OpenStores> open_stores_;
  const std::string operator_id_;
  const KeyGroupRange range_;
  const int max_parallelism_;
  // A deque so that descriptor() pointers stay valid when states are added.
  std::deque<State> states_;
};

class MemoryStateBackend final : public StateBackend {
 public:
  const char* name() const override { return "memory"; }

  StatusOr<std::unique_ptr<KeyedStateStore>> open_keyed_store(
      std::string_view operator_id, KeyGroupRange range, int max_parallelism) override {
    if (operator_id.empty()) {
      return absl::InvalidArgumentError("open_keyed_store: empty operator id");
    }
    // A std::string: absl::StrCat takes absl::string_view, which Debian's
    // Abseil does not alias to std::string_view.
    std::string id(operator_id);
    if (max_parallelism < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "open_keyed_store: operator '", id, "': max_parallelism ",
          max_parallelism, " < 1"));
    }
    if (range.size() == 0 || range.first < 0 || range.last >= max_parallelism) {
      return absl::InvalidArgumentError(absl::StrCat(
          "open_keyed_store: operator '", id, "': key groups [", range.first,
          ", ", range.last, "] are empty or not within [0, ", max_parallelism, ")"));
    }
    MS_RETURN_IF_ERROR(open_stores_->acquire(id, range));
    return std::unique_ptr<KeyedStateStore>(std::make_unique<MemoryKeyedStateStore>(
        open_stores_, std::move(id), range, max_parallelism));
  }

 private:
  const std::shared_ptr<OpenStores> open_stores_ = std::make_shared<OpenStores>();
};

}  // namespace

StatusOr<std::shared_ptr<StateBackend>> make_memory_state_backend(
    const MemoryStateBackendOptions& /*options*/) {
  return std::shared_ptr<StateBackend>(std::make_shared<MemoryStateBackend>());
}

}  // namespace meterstream
