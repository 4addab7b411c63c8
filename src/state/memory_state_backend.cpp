// The memory state backend: per state and key group, an ordered map from key
// bytes to value bytes.
//
// A btree (rather than a hash map) keeps the entries of a (state, key group)
// ordered, as RocksDB does, so that prefix scans (MapState iteration) are
// ordered and cost the entries visited, and so that both backends give the
// same iteration order. One map per key group lets a key group be snapshotted
// or dropped without touching the others.
//
// TTL states store the expiry in front of each value (state/ttl_format.hpp),
// exactly as RocksDB does, so that both backends snapshot the same bytes.
//
// A snapshot is one file, kSnapshotFile, in the format of
// state/state_file.hpp: the descriptors and every live entry.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "meterstream/state/state_backend.hpp"
#include "state/state_file.hpp"
#include "state/store_common.hpp"
#include "state/ttl_format.hpp"

namespace meterstream {
namespace {

using EntryMap = absl::btree_map<std::string, std::string, std::less<>>;

constexpr const char* kSnapshotFile = "state.bin";

using detail::OpenStores;
using detail::starts_with;

// A registered state of a memory store.
struct MemoryState {
  StateDescriptor descriptor;
  std::vector<EntryMap> groups;  // indexed by key group - range_.first
};

class MemoryKeyedStateStore final : public detail::KeyedStoreBase<MemoryState> {
 public:
  using KeyedStoreBase::KeyedStoreBase;

  const char* name() const override { return "memory"; }

  StatusOr<bool> get(int state, int key_group, std::string_view key,
                     std::string* value) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    auto it = map->find(key);
    if (it == map->end()) return false;
    const std::optional<StateTtl>& ttl = ttl_of(state);
    if (!ttl) {
      value->assign(it->second);
      return true;
    }
    Timestamp expiry = 0;
    if (!detail::get_expiry(it->second, &expiry)) {
      return short_value_error(state, key_group, it->second.size());
    }
    const Timestamp now = clock().now(ttl->domain);
    if (detail::is_expired(expiry, now)) {
      map->erase(it);
      return false;
    }
    if (ttl->refresh_on_read) restamp(&it->second, detail::expiry_for(now, *ttl));
    value->assign(it->second, detail::kExpiryBytes, std::string::npos);
    return true;
  }

  Status put(int state, int key_group, std::string_view key,
             std::string_view value) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    const std::optional<StateTtl>& ttl = ttl_of(state);
    if (!ttl) {
      assign(map, key, value);
      return Status();
    }
    std::string stored;
    stored.reserve(detail::kExpiryBytes + value.size());
    detail::put_expiry(detail::expiry_for(clock().now(ttl->domain), *ttl), &stored);
    stored.append(value.data(), value.size());
    assign(map, key, stored);
    return Status();
  }

  Status append(int state, int key_group, std::string_view key,
                std::string_view bytes) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    auto it = map->find(key);
    const std::optional<StateTtl>& ttl = ttl_of(state);
    if (!ttl) {
      if (it != map->end()) {
        it->second.append(bytes.data(), bytes.size());
      } else {
        map->emplace(std::string(key), std::string(bytes));
      }
      return Status();
    }
    // The whole value's TTL restarts; an expired value is replaced, not
    // extended.
    const Timestamp now = clock().now(ttl->domain);
    const Timestamp expiry = detail::expiry_for(now, *ttl);
    if (it != map->end()) {
      Timestamp old_expiry = 0;
      if (!detail::get_expiry(it->second, &old_expiry)) {
        return short_value_error(state, key_group, it->second.size());
      }
      if (!detail::is_expired(old_expiry, now)) {
        restamp(&it->second, expiry);
        it->second.append(bytes.data(), bytes.size());
        return Status();
      }
    }
    std::string stored;
    detail::put_expiry(expiry, &stored);
    stored.append(bytes.data(), bytes.size());
    assign(map, key, stored);
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
    const std::optional<StateTtl>& ttl = ttl_of(state);
    if (!ttl) {
      for (auto it = map->lower_bound(prefix);
           it != map->end() && starts_with(it->first, prefix); ++it) {
        if (!fn(it->first, it->second)) break;
      }
      return Status();
    }
    const Timestamp now = clock().now(ttl->domain);
    const Timestamp refreshed = detail::expiry_for(now, *ttl);
    std::vector<std::string> expired;
    Status status;
    for (auto it = map->lower_bound(prefix);
         it != map->end() && starts_with(it->first, prefix); ++it) {
      Timestamp expiry = 0;
      if (!detail::get_expiry(it->second, &expiry)) {
        status = short_value_error(state, key_group, it->second.size());
        break;
      }
      if (detail::is_expired(expiry, now)) {
        expired.push_back(it->first);
        continue;
      }
      // Changing the bytes of a value in place leaves the map's structure
      // (and the iterator) alone.
      if (ttl->refresh_on_read) restamp(&it->second, refreshed);
      if (!fn(it->first, std::string_view(it->second).substr(detail::kExpiryBytes))) break;
    }
    for (const std::string& key : expired) map->erase(key);
    return status;
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
      const std::optional<StateTtl>& ttl = states_[s].descriptor.ttl;
      const Timestamp now = ttl ? clock().now(ttl->domain) : 0;
      for (const auto& [key, value] : states_[s].groups[index]) {
        if (ttl) {
          Timestamp expiry = 0;
          if (!detail::get_expiry(value, &expiry)) {
            return short_value_error(static_cast<int>(s), key_group, value.size());
          }
          if (detail::is_expired(expiry, now)) continue;
        }
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

  Status put_stored(int state, int key_group, std::string_view key,
                    std::string_view stored) override {
    EntryMap* map = find(state, key_group);
    if (map == nullptr) return locate_error(state, key_group);
    MS_RETURN_IF_ERROR(check_stored(state, key_group, stored));
    assign(map, key, stored);
    return Status();
  }

  Status purge_expired() override {
    for (std::size_t s = 0; s < states_.size(); ++s) {
      const std::optional<StateTtl>& ttl = states_[s].descriptor.ttl;
      if (!ttl) continue;
      const Timestamp now = clock().now(ttl->domain);
      for (EntryMap& map : states_[s].groups) {
        for (auto it = map.begin(); it != map.end();) {
          Timestamp expiry = 0;
          // Values too short to hold an expiry are left for reads to report.
          if (detail::get_expiry(it->second, &expiry) && detail::is_expired(expiry, now)) {
            it = map.erase(it);
          } else {
            ++it;
          }
        }
      }
    }
    return Status();
  }

  StatusOr<std::uint64_t> approximate_size_bytes() override {
    std::uint64_t bytes = 0;
    for (const State& state : states_) {
      for (const EntryMap& map : state.groups) {
        for (const auto& [key, value] : map) bytes += key.size() + value.size();
      }
    }
    return bytes;
  }

  StatusOr<StoreManifest> snapshot(const std::string& dir) override {
    MS_RETURN_IF_ERROR(detail::prepare_snapshot_dir(dir));
    detail::StateFileHeader header{operator_id_, max_parallelism_, range_, {}};
    for (const State& state : states_) header.states.push_back(state.descriptor);
    detail::StateFileBuilder file(header);
    for (int kg = range_.first; kg <= range_.last; ++kg) {
      MS_RETURN_IF_ERROR(for_each_in_key_group(
          kg, [&](int state, std::string_view key, std::string_view stored) {
            file.add(state, kg, key, stored);
            return true;
          }));
    }
    std::error_code ec;
    std::filesystem::create_directory(dir, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("operator '", operator_id_,
                                              "': cannot create snapshot folder '", dir,
                                              "': ", ec.message()));
    }
    MS_RETURN_IF_ERROR(file.write((std::filesystem::path(dir) / kSnapshotFile).string()));
    return StoreManifest{name(), range_, {{kSnapshotFile, false}}};
  }

  Status restore(const std::string& dir, const StoreManifest& snapshot) override {
    detail::StateFileReader file;
    std::vector<int> ids;
    KeyGroupRange groups;
    MS_RETURN_IF_ERROR(
        detail::begin_restore(*this, dir, snapshot, kSnapshotFile, &file, &ids, &groups));
    detail::StateFileEntry e;
    while (true) {
      MS_ASSIGN_OR_RETURN(const bool more, file.next(&e));
      if (!more) return Status();
      if (!groups.contains(e.key_group)) continue;
      MS_RETURN_IF_ERROR(
          put_stored(ids[static_cast<std::size_t>(e.state)], e.key_group, e.key, e.stored));
    }
  }

 private:
  using State = MemoryState;

  StatusOr<State> new_state(const StateDescriptor& descriptor) override {
    return State{descriptor, std::vector<EntryMap>(static_cast<std::size_t>(range_.size()))};
  }

  static void assign(EntryMap* map, std::string_view key, std::string_view value) {
    auto it = map->find(key);
    if (it != map->end()) {
      it->second.assign(value.data(), value.size());
    } else {
      map->emplace(std::string(key), std::string(value));
    }
  }

  // Overwrites the expiry in front of a stored TTL value.
  static void restamp(std::string* stored, Timestamp expiry) {
    std::string prefix;
    detail::put_expiry(expiry, &prefix);
    stored->replace(0, detail::kExpiryBytes, prefix);
  }

  // The TTL of a valid state id.
  const std::optional<StateTtl>& ttl_of(int state) const {
    return states_[static_cast<std::size_t>(state)].descriptor.ttl;
  }

  std::size_t group_index(int key_group) const {
    return static_cast<std::size_t>(key_group - range_.first);
  }

  // The map of (state, key group), or nullptr when either is invalid (then
  // locate_error says why). The hot path, so it builds no Status.
  EntryMap* find(int state, int key_group) {
    if (!valid(state, key_group)) return nullptr;
    return &states_[static_cast<std::size_t>(state)].groups[group_index(key_group)];
  }

};

class MemoryStateBackend final : public StateBackend {
 public:
  const char* name() const override { return "memory"; }

  StatusOr<std::unique_ptr<KeyedStateStore>> open_keyed_store(
      std::string_view operator_id, KeyGroupRange range, int max_parallelism) override {
    // A std::string: absl::StrCat takes absl::string_view, which Debian's
    // Abseil does not alias to std::string_view.
    return detail::open_store<MemoryKeyedStateStore>(open_stores_, std::string(operator_id),
                                                      range, max_parallelism);
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
