// StateCache: a typed write-back cache of one keyed state in front of a
// KeyedStateStore. Not API.
//
// Operators keep their hot per-key values here as plain C++ objects, so the
// common case is one hash lookup. With a store that keeps its state in memory
// anyway (the memory backend) the cache is the state: unbounded, never written
// out. With an on-disk store (RocksDB) it holds at most `max_entries`; when
// full, half of the entries are evicted and the dirty ones written back, so
// the store sees writes in bursts rather than one per record, and a miss
// reads the value back (decoded with Codec<V>).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "meterstream/core/codec.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/state/state.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::detail {

template <typename K, typename V>
class StateCache {
 public:
  // `store` null: the cache holds all state (nothing is written anywhere).
  StateCache(KeyedStateStore* store, int state_id, std::size_t max_entries, int max_parallelism)
      : store_(store), state_id_(state_id), max_entries_(max_entries),
        max_parallelism_(max_parallelism) {}

  // The value of `key`, read from the store on a miss; nullptr when absent.
  // Call mark_dirty() after changing it.
  V* find(const K& key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) return &it->second.value;
    std::optional<V> stored = load(key);
    if (!stored) return nullptr;
    return &insert_entry(key, *std::move(stored), /*dirty=*/false);
  }

  // The value of `key`, without bringing it into the cache (for a one-off
  // look, such as an expiry check, that should not evict hot entries).
  std::optional<V> peek(const K& key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) return it->second.value;
    return load(key);
  }

  // Inserts or replaces the value of `key` (dirty).
  V& put(const K& key, V value) { return insert_entry(key, std::move(value), true); }

  void mark_dirty(const K& key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) it->second.dirty = true;
  }

  void erase(const K& key) {
    entries_.erase(key);
    if (store_ == nullptr) return;
    encode_key(key);
    Status s = store_->remove(state_id_, key_group_, key_bytes_);
    if (!s.ok()) throw StateError(s);
  }

  // Writes every dirty entry to the store (before a snapshot, at the end).
  void flush() {
    if (store_ == nullptr) return;
    for (auto& [key, e] : entries_) write_back(key, e);
  }

  std::size_t size() const { return entries_.size(); }

  // Calls fn(key, value) for every cached entry (with a null store: all state).
  template <typename F>
  void for_each(F&& fn) const {
    for (const auto& [key, e] : entries_) fn(key, e.value);
  }

 private:
  struct Entry {
    V value;
    bool dirty;
  };

  // Reads `key` from the store (nothing when the cache is all the state).
  std::optional<V> load(const K& key) {
    if (store_ == nullptr) return std::nullopt;
    encode_key(key);
    std::string bytes;
    StatusOr<bool> found = store_->get(state_id_, key_group_, key_bytes_, &bytes);
    if (!found.ok()) throw StateError(found.status());
    if (!*found) return std::nullopt;
    V value{};
    if (!Codec<V>::decode(bytes, &value)) {
      throw StateError(absl::DataLossError("state '" + state_name() + "', key group " +
                                           std::to_string(key_group_) +
                                           ": a cached value does not decode"));
    }
    return value;
  }

  V& insert_entry(const K& key, V value, bool dirty) {
    if (store_ != nullptr && max_entries_ > 0 && entries_.size() >= max_entries_) evict_half();
    Entry& e = entries_.insert_or_assign(key, Entry{std::move(value), dirty}).first->second;
    return e.value;
  }

  // Evicts about half of the entries (hash order: no bookkeeping per access),
  // writing the dirty ones back in one burst.
  void evict_half() {
    std::size_t n = entries_.size() / 2;
    for (auto it = entries_.begin(); it != entries_.end() && n > 0; --n) {
      write_back(it->first, it->second);
      entries_.erase(it++);
    }
  }

  void write_back(const K& key, Entry& e) {
    if (!e.dirty) return;
    encode_key(key);
    value_bytes_.clear();
    Codec<V>::encode(e.value, &value_bytes_);
    Status s = store_->put(state_id_, key_group_, key_bytes_, value_bytes_);
    if (!s.ok()) throw StateError(s);
    e.dirty = false;
  }

  void encode_key(const K& key) {
    key_group_ = key_group_of(key, max_parallelism_);
    key_bytes_.clear();
    KeyCodec<K>::encode(key, &key_bytes_);
  }

  std::string state_name() const {
    const StateDescriptor* d = store_->descriptor(state_id_);
    return d != nullptr ? d->name : std::to_string(state_id_);
  }

  KeyedStateStore* store_;
  int state_id_;
  std::size_t max_entries_;
  int max_parallelism_;
  absl::flat_hash_map<K, Entry> entries_;
  int key_group_ = 0;
  std::string key_bytes_;
  std::string value_bytes_;
};

}  // namespace meterstream::detail
