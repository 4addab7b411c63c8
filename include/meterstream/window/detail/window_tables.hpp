// The tables of the time-window operator (tumbling and sliding) and their
// spilling. Not API.
//
// One hash table per open window, key -> accumulator, in an ordered map by
// window start: a record costs one hash lookup and one add; firing a window
// walks its table once and frees it.
//
// With an on-disk state backend (StateBackend::operator_memory_bytes() > 0)
// the tables stay within the operator instance's share of that budget: when
// they outgrow it, the oldest unfired windows are spilled to the store as
// chunks of encoded entries (one put per 256 KiB, so RocksDB sees few large
// writes), and records that still arrive for them start a fresh in-memory
// table. When a spilled window fires, its chunks and its in-memory entries are
// merged (AggregateFunction::merge) back into one table, emitted and removed:
// the instance holds at most its budget plus the one window being fired.
// Spilling needs a Codec for the key and the accumulator; without them the
// windows stay in memory.
//
// Thread-safety: one instance per operator instance (worker thread).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "meterstream/core/codec.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/metrics/metrics.hpp"
#include "meterstream/state/state_backend.hpp"
#include "meterstream/window/assigners.hpp"
#include "meterstream/window/detail/window_snapshot.hpp"

namespace meterstream::detail {

// The windows of one time-window operator instance, with aggregate A.
template <typename K, typename A>
class TimeWindowTables {
 public:
  using Acc = typename A::accumulator_type;
  using Table = absl::flat_hash_map<K, Acc>;
  using Format = TimeWindowsFormat<K, Acc>;
  static constexpr bool kSpillable = HasCodec<K>::value && HasCodec<Acc>::value;

  struct Window {
    Timestamp start = 0;
    Timestamp end = 0;
    bool fired = false;
    bool spilled = false;  // part of its entries are chunks in the store
    Table table;
  };
  // By start; all windows of an operator have one size, so ends are ordered too.
  using Windows = std::map<Timestamp, std::unique_ptr<Window>>;

  // `agg` and `op` (the operator's name, for errors) outlive the tables.
  TimeWindowTables(const A* agg, const std::string* op) : agg_(agg), op_(op) {}

  // The instance's key groups, for spilling and restoring.
  void set_key_groups(KeyGroupRange range, int max_parallelism) {
    range_ = range;
    max_parallelism_ = max_parallelism;
  }

  // Spills to `store` (opened for the operator's uid) when the tables
  // outgrow `budget` bytes; `spilled_bytes` counts what is written.
  void enable_spilling(std::unique_ptr<KeyedStateStore> store, std::size_t budget,
                       Counter* spilled_bytes) {
    store_ = std::move(store);
    auto id = store_->register_state({"window-chunks", StateDescriptor::Kind::kValue});
    if (!id.ok()) throw StatusError{id.status()};
    chunk_state_ = *id;
    budget_ = budget;
    spilled_bytes_ = spilled_bytes;
  }

  KeyedStateStore* store() const { return store_.get(); }
  Windows& windows() { return windows_; }

  // A window left: later windows are sized like it.
  void remember_keys(std::size_t keys) { expected_keys_ = keys; }

  // The open window `span`, created if needed; nullptr when it does not exist
  // and `late` (called with its end) says it is late.
  template <typename IsLate>
  Window* find_or_create(TimeWindow span, const IsLate& late) {
    auto it = windows_.find(span.start);
    if (it != windows_.end()) return it->second.get();
    if (late(span.end)) return nullptr;
    auto w = std::make_unique<Window>();
    w->start = span.start;
    w->end = span.end;
    // Windows of a stream hold about as many keys as the last one fired or
    // the largest one open: sizing the table up front saves its rehashes
    // (each a pass of cache misses over the whole table) while it fills.
    std::size_t expected = expected_keys_;
    for (const auto& [s, open] : windows_) expected = std::max(expected, open->table.size());
    if (store_) {
      // Within the budget: half of what is left at most, for a table sized
      // ahead (an empty table cannot be spilled to make room).
      const std::size_t used = std::min(budget_, tables_bytes());
      expected = std::min(expected, (budget_ - used) / 2 / kSlotBytes);
    }
    w->table.reserve(expected);
    return windows_.emplace(span.start, std::move(w)).first->second.get();
  }

  // Adds `value` to key's accumulator in `w`; returns the entry.
  template <typename T>
  std::pair<const K, Acc>& add(Window& w, const K& key, const T& value) {
    if (store_ && !w.fired && at_growth(w.table)) make_room(w, key);
    auto [it, inserted] = w.table.try_emplace(key);
    if (inserted) it->second = agg_->create();
    agg_->add(it->second, value);
    return *it;
  }

  // Spills the oldest unfired windows while the tables exceed the budget.
  void spill_if_over_budget() {
    if (!store_) return;
    std::size_t total = tables_bytes();
    for (auto it = windows_.begin(); total > budget_ && it != windows_.end(); ++it) {
      Window& w = *it->second;
      // A fired window (kept for allowed lateness) re-emits full results for
      // late records, so it stays whole in memory.
      if (w.fired || w.table.empty()) continue;
      total -= table_bytes(w.table);
      spill(w);
    }
  }

  // Merges all of the window's chunks back into its in-memory table (a fired
  // window kept for allowed lateness needs every key's whole accumulator).
  void unspill(Window& w) {
    // Older (spilled) accumulators first, then the newer in-memory ones, in
    // the order records arrived, as fire_spilled() merges them too.
    Table all;
    for (int kg = range_.first; kg <= range_.last; ++kg) take_chunks(w, kg, all);
    for (const auto& [key, acc] : w.table) {
      auto [it, inserted] = all.try_emplace(key, acc);
      if (!inserted) agg_->merge(it->second, acc);
    }
    w.table.swap(all);
    w.spilled = false;
  }

  // Fires a spilled window one key group at a time, emit(key, acc) per key:
  // the key group's chunks, merged with the keys that the in-memory table
  // holds too, then the keys that are only in memory. Holds one key group's
  // share of the window.
  template <typename Emit>
  void fire_spilled(Window& w, const Emit& emit) {
    Table group;
    for (int kg = range_.first; kg <= range_.last; ++kg) {
      take_chunks(w, kg, group);
      for (auto& [key, acc] : group) {
        auto it = w.table.find(key);
        if (it != w.table.end()) {
          agg_->merge(acc, it->second);
          w.table.erase(it);
        }
        emit(key, acc);
      }
      Table().swap(group);
    }
    for (const auto& [key, acc] : w.table) emit(key, acc);
    w.spilled = false;
  }

  // Checkpoint: the tables' own operator-wide fields (next chunk number, keys
  // of the last window) and the windows as one blob, in a single sequential
  // pass over the tables (this is the pause of a checkpoint).
  void snapshot(std::string* operator_state, std::string* blob) const {
    put_u64(operator_state, next_chunk_);
    put_u64(operator_state, expected_keys_);
    std::size_t entries = 0;
    for (const auto& [start, w] : windows_) entries += w->table.size();
    blob->reserve(24 + windows_.size() * 17 + entries * Format::kEntryBytes);
    Format::put_header(blob);
    for (const auto& [start, w] : windows_) {
      Format::put_window(blob, start, w->fired, w->spilled, w->table.size());
      Format::put_entries(blob, w->table);
    }
  }

  // Restore: an old instance's operator-wide fields (window_fields()).
  void restore_fields(std::string_view in) {
    std::uint64_t chunk = 0, expected = 0;
    if (!get_u64(&in, &chunk) || !get_u64(&in, &expected)) {
      throw_corrupt(*op_, "its operator state");
    }
    next_chunk_ = std::max(next_chunk_, static_cast<std::uint32_t>(chunk));
    expected_keys_ = std::max<std::size_t>(expected_keys_, expected);
  }

  // Restore: a blob of snapshot(), keeping the entries of this instance's key
  // groups; `window_at(start)` gives a window's span.
  template <typename WindowAt>
  void restore_blob(std::string_view in, const WindowAt& window_at) {
    Format::get_header(&in, *op_);
    while (!in.empty()) {
      Timestamp start = 0;
      bool fired = false, spilled = false;
      std::uint64_t n = 0;
      if (!Format::get_window(&in, &start, &fired, &spilled, &n)) {
        throw_corrupt(*op_, "a window");
      }
      auto& slot = windows_[start];
      if (!slot) {
        slot = std::make_unique<Window>();
        const TimeWindow span = window_at(start);
        slot->start = span.start;
        slot->end = span.end;
      }
      slot->fired |= fired;
      slot->spilled |= spilled;
      for (std::uint64_t i = 0; i < n; ++i) {
        K key{};
        Acc acc{};
        if (!Format::get_entry(&in, &key, &acc)) {
          throw_corrupt(*op_, "an entry of window " + std::to_string(start));
        }
        const int kg = key_group_of(key, max_parallelism_);
        if (kg < range_.first || kg > range_.last) continue;
        slot->table.insert_or_assign(std::move(key), std::move(acc));
      }
    }
  }

 private:
  static constexpr std::size_t kSlotBytes = sizeof(typename Table::value_type) + 1;

  static std::size_t table_bytes(const Table& t) { return t.capacity() * kSlotBytes; }

  std::size_t tables_bytes() const {
    std::size_t total = 0;
    for (const auto& [start, w] : windows_) total += table_bytes(w->table);
    return total;
  }

  // absl grows a table that is 7/8 full to twice its capacity.
  static bool at_growth(const Table& t) {
    const std::size_t c = t.capacity();
    return t.size() + 1 > c - c / 8;
  }

  // Called before a new key makes w's table grow. Growing allocates the new
  // array while the old one is still alive; when that would exceed the
  // budget, the oldest windows are spilled first, w itself last. So the
  // tables never hold more than the budget, however many keys there are.
  void make_room(Window& w, const K& key) {
    if (w.table.contains(key)) return;
    const std::size_t grown = (w.table.capacity() * 2 + 1) * kSlotBytes;
    std::size_t total = tables_bytes();
    for (auto it = windows_.begin(); total + grown > budget_ && it != windows_.end(); ++it) {
      Window& v = *it->second;
      if (&v == &w || v.fired || v.table.empty()) continue;
      total -= table_bytes(v.table);
      spill(v);
    }
    if (total + grown > budget_ && !w.table.empty()) spill(w);
  }

  // The store key of a chunk: the window's start, then a chunk number.
  static std::string chunk_key(Timestamp start, std::uint32_t chunk) {
    std::string key;
    const auto s = static_cast<std::uint64_t>(start);
    for (int i = 7; i >= 0; --i) key.push_back(static_cast<char>(s >> (8 * i)));
    for (int i = 3; i >= 0; --i) key.push_back(static_cast<char>(chunk >> (8 * i)));
    return key;
  }

  // Writes the window's in-memory entries to the store as chunks, grouped by
  // key group, and frees its table.
  void spill(Window& w) {
    if constexpr (kSpillable) {
      constexpr std::size_t kChunkBytes = 256 << 10;
      std::vector<std::string> chunks(static_cast<std::size_t>(range_.size()));
      auto write = [&](int kg, std::string& chunk) {
        spilled_bytes_->add(static_cast<std::int64_t>(chunk.size()));
        Status s = store_->put(chunk_state_, kg, chunk_key(w.start, next_chunk_++), chunk);
        if (!s.ok()) throw StatusError{s};
        chunk.clear();
      };
      for (const auto& [key, acc] : w.table) {
        const int kg = key_group_of(key, max_parallelism_);
        std::string& chunk = chunks[static_cast<std::size_t>(kg - range_.first)];
        encode_field<K, KeyCodec<K>>(key, &chunk);
        encode_field<Acc>(acc, &chunk);
        if (chunk.size() >= kChunkBytes) write(kg, chunk);
      }
      for (int kg = range_.first; kg <= range_.last; ++kg) {
        std::string& chunk = chunks[static_cast<std::size_t>(kg - range_.first)];
        if (!chunk.empty()) write(kg, chunk);
      }
      Table().swap(w.table);
      w.spilled = true;
    }
  }

  // Merges the chunks of key group `kg` of window `w` into `into` and deletes
  // them from the store.
  void take_chunks(const Window& w, int kg, Table& into) {
    if constexpr (kSpillable) {
      const std::string prefix = chunk_key(w.start, 0).substr(0, 8);
      bool corrupt = false;
      Status s = store_->for_each(chunk_state_, kg, prefix, [&](std::string_view, std::string_view v) {
        while (!v.empty()) {
          K key{};
          Acc acc{};
          if (!decode_field<K, KeyCodec<K>>(&v, &key) || !decode_field<Acc>(&v, &acc)) {
            corrupt = true;
            return false;
          }
          auto [it, inserted] = into.try_emplace(key, acc);
          if (!inserted) agg_->merge(it->second, acc);
        }
        return true;
      });
      if (s.ok() && corrupt) {
        s = absl::DataLossError(*op_ + ": a spilled chunk of window " + std::to_string(w.start) +
                                ", key group " + std::to_string(kg) + " does not decode");
      }
      if (s.ok()) s = store_->remove_prefix(chunk_state_, kg, prefix);
      if (!s.ok()) throw StatusError{s};
    }
  }

  const A* agg_;
  const std::string* op_;
  KeyGroupRange range_;
  int max_parallelism_ = 1;
  Windows windows_;
  // Spilling (on-disk backends only).
  std::unique_ptr<KeyedStateStore> store_;
  int chunk_state_ = 0;
  std::size_t budget_ = 0;
  std::uint32_t next_chunk_ = 0;
  Counter* spilled_bytes_ = nullptr;
  std::size_t expected_keys_ = 0;
};

}  // namespace meterstream::detail
