// The window operators (key_by + window + aggregate fused). Not API.
//
// Time windows (tumbling, sliding) keep one hash table per open window, key ->
// accumulator, in an ordered map by window start: a record costs one hash
// lookup and one add; firing a window walks its table once and frees it.
// Session windows keep per key a short sorted list of sessions and a timer
// queue of their ends.
//
// With an on-disk state backend (StateBackend::operator_memory_bytes() > 0)
// the time-window tables stay within this instance's share of that budget:
// when they outgrow it, the oldest unfired windows are spilled to the store as
// chunks of encoded entries (one put per 256 KiB, so RocksDB sees few large
// writes), and records that still arrive for them start a fresh in-memory
// table. When a spilled window fires, its chunks and its in-memory entries are
// merged (AggregateFunction::merge) back into one table, emitted and removed:
// the instance holds at most its budget plus the one window being fired.
// Spilling needs a Codec for the key and the accumulator; without them the
// windows stay in memory.
//
// Lateness (Flink's semantics): a window [start, end) is late when
// end - 1 + allowed_lateness <= current watermark; a record whose windows are
// all late goes to the late side output (counted, never silently lost). A
// window fires when the watermark reaches end - 1; with allowed lateness it is
// kept until end - 1 + lateness, and a late record re-fires its key's result.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "meterstream/core/codec.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/state/state_backend.hpp"
#include "meterstream/window/aggregate.hpp"
#include "meterstream/window/assigners.hpp"

namespace meterstream::detail {


// Common parts: output batching, late side output, metrics.
template <typename K, typename T, typename A>
class WindowOperatorBase : public Collector<T>, public OperatorInstance {
 public:
  using Acc = typename A::accumulator_type;
  using R = aggregate_result_t<A>;
  using Out = WindowResult<K, R>;

  WindowOperatorBase(const OperatorIds& ids, A agg, std::int64_t lateness, Collector<Out>* out,
                     Collector<T>* late_out)
      : uid_(ids.uid), name_(ids.name), agg_(std::move(agg)), lateness_(lateness), out_(out),
        late_out_(late_out) {}

  void open(Worker& worker) override {
    worker_ = &worker;
    batch_size_ = worker.options().batch_size;
    results_ = worker.metrics().counter("window_results");
    late_ = worker.metrics().counter("window_late_records");
    op_results_ = worker.metrics().counter(operator_metric("window_results", name_));
    op_late_ = worker.metrics().counter(operator_metric("window_late_records", name_));
    watermark_gauge_ = worker.metrics().gauge("window_watermark", GaugeMerge::kMin, kMinTimestamp);
  }

  // Records are only read, except that late ones are moved to the late
  // output, which leaves trivially copyable records as they were.
  bool reads_input_only() const override { return std::is_trivially_copyable_v<T>; }

  void watermark_status(bool idle) override { out_->watermark_status(idle); }

  void end() override {
    flush();
    if (late_out_ != nullptr) late_out_->end();
    out_->end();
  }

  // Checkpoint: the watermark and the windows' state, per key group, then
  // the barrier goes on.
  void barrier(std::int64_t id) override {
    flush();
    flush_late();
    OperatorInstanceState& snap = worker_->snapshot_of(id, uid_);
    snap.operator_state.clear();
    put_i64(&snap.operator_state, watermark_);
    worker_->snapshot_step(id, [&] { call_user(name_, [&] { snapshot_windows(id, snap); }); });
    out_->barrier(id);
    if (late_out_ != nullptr) late_out_->barrier(id);
  }

 protected:
  // Writes the windows into `snap` (keyed bytes, operator_state after the
  // watermark, store snapshots).
  virtual void snapshot_windows(std::int64_t id, OperatorInstanceState& snap) = 0;

  // The part of the restored checkpoint for this operator, or null; sets the
  // restored watermark.
  const RestoredCheckpoint::Operator* restored_part() {
    const RestoredCheckpoint::Operator* mine = detail::restored_part(*worker_, uid_);
    if (mine == nullptr) return nullptr;
    if (auto wm = restored_watermark(*mine, name_)) watermark_ = *wm;
    return mine;
  }

  [[noreturn]] void corrupt(const std::string& what) const { throw_corrupt(name_, what); }

  void emit(const K& key, Timestamp start, Timestamp end, const Acc& acc) {
    out_batch_.push_back(Out{key, start, end, agg_.result(acc)}, end - 1);
    if (out_batch_.size() >= batch_size_) flush();
  }

  void flush() {
    if (out_batch_.empty()) return;
    results_->add(static_cast<std::int64_t>(out_batch_.size()));
    op_results_->add(static_cast<std::int64_t>(out_batch_.size()));
    out_->push(out_batch_);
    out_batch_.clear();
  }

  void late_record(T& value, Timestamp ts) {
    late_->add();
    op_late_->add();
    if (late_out_ != nullptr) late_batch_.push_back(std::move(value), ts);
  }

  void flush_late() {
    if (late_batch_.empty()) return;
    late_out_->push(late_batch_);
    late_batch_.clear();
  }

  void forward_watermark(Timestamp wm) {
    flush();
    watermark_gauge_->set(wm);
    if (late_out_ != nullptr) late_out_->watermark(wm);
    out_->watermark(wm);
  }

  bool is_late(Timestamp window_end) const {
    return saturating_add(window_end - 1, lateness_) <= watermark_;
  }

  std::string uid_;   // keys its state
  std::string name_;  // for errors
  A agg_;
  std::int64_t lateness_;
  Collector<Out>* out_;
  Collector<T>* late_out_;
  Timestamp watermark_ = kMinTimestamp;
  std::size_t batch_size_ = 1024;
  RecordBatch<Out> out_batch_;
  RecordBatch<T> late_batch_;
  Counter* results_ = nullptr;
  Counter* op_results_ = nullptr;  // labelled with the operator's name
  Counter* op_late_ = nullptr;
  Counter* late_ = nullptr;
  Gauge* watermark_gauge_ = nullptr;
  Worker* worker_ = nullptr;
};

// Tumbling and sliding windows.
template <typename K, typename T, typename KeyFn, typename A>
class TimeWindowOperator final : public WindowOperatorBase<K, T, A> {
  using Base = WindowOperatorBase<K, T, A>;
  using Acc = typename Base::Acc;

 public:
  TimeWindowOperator(const OperatorIds& ids, KeyFn key_fn, A agg, std::int64_t size, std::int64_t slide,
                     std::int64_t offset, std::int64_t lateness,
                     Collector<typename Base::Out>* out, Collector<T>* late_out)
      : Base(ids, std::move(agg), lateness, out, late_out),
        key_fn_(std::move(key_fn)), size_(size), slide_(slide), offset_(offset) {}

  void push(RecordBatch<T>& batch) override {
    call_user(this->name_, [&] {
      if (slide_ == size_) {
        push_tumbling(batch);
      } else {
        for (std::size_t i = 0; i < batch.size(); ++i) {
          add_sliding(batch.values[i], batch.timestamps[i]);
        }
      }
    });
    this->flush();  // re-fired results of late records
    this->flush_late();
    call_user(this->name_, [&] { spill_if_over_budget(); });  // user codecs
  }

  void open(Worker& worker) override {
    Base::open(worker);
    if constexpr (HasCodec<K>::value && HasCodec<Acc>::value) {
      budget_ = worker.operator_memory_share();
    }
    // With a backend that keeps state in memory there is nothing to spill to.
    if (budget_ > 0) open_spill_store(worker);
    if (worker.checkpointing() && !kRawEntries) require_codecs<K, Acc>(this->name_);
    if (const auto* mine = this->restored_part()) call_user(this->name_, [&] { restore(*mine); });
  }

 private:
  void open_spill_store(Worker& worker) {
    {
      auto store = worker.state_backend()->open_keyed_store(this->uid_, worker.key_groups(),
                                                            worker.max_parallelism());
      if (!store.ok()) throw StatusError{store.status()};
      store_ = *std::move(store);
      auto id = store_->register_state({"window-chunks", StateDescriptor::Kind::kValue});
      if (!id.ok()) throw StatusError{id.status()};
      chunk_state_ = *id;
      spilled_bytes_ = worker.metrics().counter("window_spilled_bytes");
    }
  }

 public:

  void watermark(Timestamp wm) override {
    if (wm <= this->watermark_) return;  // e.g. from before a restored watermark
    this->watermark_ = wm;
    last_ = nullptr;  // a cached window may have become late
    call_user(this->name_, [&] {
      for (auto it = windows_.begin(); it != windows_.end();) {
        Window& w = *it->second;
        if (w.end - 1 > wm) break;  // windows are ordered by start, all of one size
        if (w.spilled && this->lateness_ == 0) {
          fire_spilled(w);  // one key group at a time: memory stays bounded
          w.fired = true;
        }
        if (w.spilled) unspill(w);
        if (!w.fired) {
          for (const auto& [key, acc] : w.table) this->emit(key, w.start, w.end, acc);
          w.fired = true;
        }
        if (this->is_late(w.end)) {
          expected_keys_ = w.table.size();
          it = windows_.erase(it);
        } else {
          ++it;
        }
      }
    });
    this->forward_watermark(wm);
  }

 private:
  using Table = absl::flat_hash_map<K, Acc>;
  struct Window {
    Timestamp start = 0;
    Timestamp end = 0;
    bool fired = false;
    bool spilled = false;  // part of its entries are chunks in the store
    Table table;
  };

  static std::size_t table_bytes(const Table& t) {
    return t.capacity() * (sizeof(typename Table::value_type) + 1);
  }

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
    const std::size_t grown = (w.table.capacity() * 2 + 1) * (sizeof(typename Table::value_type) + 1);
    std::size_t total = tables_bytes();
    for (auto it = windows_.begin(); total + grown > budget_ && it != windows_.end(); ++it) {
      Window& v = *it->second;
      if (&v == &w || v.fired || v.table.empty()) continue;
      total -= table_bytes(v.table);
      spill(v);
    }
    if (total + grown > budget_ && !w.table.empty()) spill(w);
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
    if constexpr (HasCodec<K>::value && HasCodec<Acc>::value) {
      constexpr std::size_t kChunkBytes = 256 << 10;
      const KeyGroupRange range = this->worker_->key_groups();
      std::vector<std::string> chunks(static_cast<std::size_t>(range.size()));
      auto write = [&](int kg, std::string& chunk) {
        spilled_bytes_->add(static_cast<std::int64_t>(chunk.size()));
        Status s = store_->put(chunk_state_, kg, chunk_key(w.start, next_chunk_++), chunk);
        if (!s.ok()) throw StatusError{s};
        chunk.clear();
      };
      for (const auto& [key, acc] : w.table) {
        const int kg = key_group_of(key, this->worker_->max_parallelism());
        std::string& chunk = chunks[static_cast<std::size_t>(kg - range.first)];
        encode_field<K, KeyCodec<K>>(key, &chunk);
        encode_field<Acc>(acc, &chunk);
        if (chunk.size() >= kChunkBytes) write(kg, chunk);
      }
      for (int kg = range.first; kg <= range.last; ++kg) {
        std::string& chunk = chunks[static_cast<std::size_t>(kg - range.first)];
        if (!chunk.empty()) write(kg, chunk);
      }
      Table().swap(w.table);
      w.spilled = true;
    }
  }

  // Merges the chunks of key group `kg` of window `w` into `into` and deletes
  // them from the store.
  void take_chunks(const Window& w, int kg, Table& into) {
    if constexpr (HasCodec<K>::value && HasCodec<Acc>::value) {
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
          if (!inserted) this->agg_.merge(it->second, acc);
        }
        return true;
      });
      if (s.ok() && corrupt) {
        s = absl::DataLossError(this->name_ + ": a spilled chunk of window " +
                                std::to_string(w.start) + ", key group " + std::to_string(kg) +
                                " does not decode");
      }
      if (s.ok()) s = store_->remove_prefix(chunk_state_, kg, prefix);
      if (!s.ok()) throw StatusError{s};
    }
  }

  // Merges all of the window's chunks back into its in-memory table (a fired
  // window kept for allowed lateness needs every key's whole accumulator).
  void unspill(Window& w) {
    const KeyGroupRange range = this->worker_->key_groups();
    // Older (spilled) accumulators first, then the newer in-memory ones, in
    // the order records arrived, as fire_spilled() merges them too.
    Table all;
    for (int kg = range.first; kg <= range.last; ++kg) take_chunks(w, kg, all);
    for (const auto& [key, acc] : w.table) {
      auto [it, inserted] = all.try_emplace(key, acc);
      if (!inserted) this->agg_.merge(it->second, acc);
    }
    w.table.swap(all);
    w.spilled = false;
  }

  // Fires a spilled window one key group at a time: the key group's chunks,
  // merged with the keys that the in-memory table holds too, then the keys
  // that are only in memory. Holds one key group's share of the window.
  void fire_spilled(Window& w) {
    const KeyGroupRange range = this->worker_->key_groups();
    Table group;
    for (int kg = range.first; kg <= range.last; ++kg) {
      take_chunks(w, kg, group);
      for (auto& [key, acc] : group) {
        auto it = w.table.find(key);
        if (it != w.table.end()) {
          this->agg_.merge(acc, it->second);
          w.table.erase(it);
        }
        this->emit(key, w.start, w.end, acc);
      }
      Table().swap(group);
    }
    for (const auto& [key, acc] : w.table) this->emit(key, w.start, w.end, acc);
    w.spilled = false;
  }

  // The windows as one blob, in a single sequential pass over the tables
  // (this is the pause of a checkpoint): a header (format, sizes), then per
  // window its start, flags (fired, spilled), entry count and entries.
  // Trivially copyable keys and accumulators are copied as raw bytes (a
  // checkpoint is read by the same build on the same architecture; the sizes
  // in the header catch a changed layout), others go through their Codec. A
  // restore keeps the entries of its own key groups. Spilled chunks are in
  // the store, whose snapshot goes along.
  static constexpr bool kRawEntries = std::is_trivially_copyable_v<K> &&
                                      std::is_trivially_copyable_v<Acc> &&
                                      std::is_default_constructible_v<K>;
  static constexpr std::uint64_t kRawFormat = 1;
  static constexpr std::uint64_t kCodecFormat = 2;

  void snapshot_windows(std::int64_t id, OperatorInstanceState& snap) override {
    if constexpr (kRawEntries || (HasCodec<K>::value && HasCodec<Acc>::value)) {
      put_u64(&snap.operator_state, next_chunk_);
      put_u64(&snap.operator_state, expected_keys_);
      std::string blob;
      std::size_t entries = 0;
      for (const auto& [start, w] : windows_) entries += w->table.size();
      blob.reserve(24 + windows_.size() * 17 +
                   entries * (kRawEntries ? sizeof(K) + sizeof(Acc) : 16));
      put_u64(&blob, kRawEntries ? kRawFormat : kCodecFormat);
      put_u64(&blob, sizeof(K));
      put_u64(&blob, sizeof(Acc));
      for (const auto& [start, w] : windows_) {
        put_i64(&blob, start);
        blob.push_back(static_cast<char>((w->fired ? 1 : 0) | (w->spilled ? 2 : 0)));
        put_u64(&blob, w->table.size());
        if constexpr (kRawEntries) {
          std::size_t at = blob.size();
          blob.resize(at + w->table.size() * (sizeof(K) + sizeof(Acc)));
          char* out = blob.data();
          for (const auto& [key, acc] : w->table) {
            std::memcpy(out + at, &key, sizeof(K));
            std::memcpy(out + at + sizeof(K), &acc, sizeof(Acc));
            at += sizeof(K) + sizeof(Acc);
          }
        } else {
          for (const auto& [key, acc] : w->table) {
            encode_field<K, KeyCodec<K>>(key, &blob);
            encode_field<Acc>(acc, &blob);
          }
        }
      }
      snap.keyed.emplace_back(kAllKeyGroups, std::move(blob));
      if (store_) {
        snapshot_store(*this->worker_, id, this->uid_, *store_, snap);
      }
    }
  }

  void restore(const RestoredCheckpoint::Operator& mine) {
    if constexpr (kRawEntries || (HasCodec<K>::value && HasCodec<Acc>::value)) {
      std::uint64_t next_chunk = 0;
      for (const auto& [w, bytes] : mine.operator_states) {
        std::string_view in = bytes;
        std::int64_t wm = 0;
        std::uint64_t chunk = 0, expected = 0;
        if (!get_i64(&in, &wm) || !get_u64(&in, &chunk) || !get_u64(&in, &expected)) {
          this->corrupt("its operator state");
        }
        next_chunk = std::max(next_chunk, chunk);
        expected_keys_ = std::max<std::size_t>(expected_keys_, expected);
      }
      next_chunk_ = static_cast<std::uint32_t>(next_chunk);
      const KeyGroupRange range = this->worker_->key_groups();
      const int max_parallelism = this->worker_->max_parallelism();
      auto it = mine.keyed.find(kAllKeyGroups);
      if (it != mine.keyed.end()) {
        for (const std::string& blob : it->second) {
          std::string_view in = blob;
          std::uint64_t format = 0, key_size = 0, acc_size = 0;
          if (!get_u64(&in, &format) || !get_u64(&in, &key_size) || !get_u64(&in, &acc_size)) {
            this->corrupt("the windows");
          }
          if (format != (kRawEntries ? kRawFormat : kCodecFormat) ||
              (kRawEntries && (key_size != sizeof(K) || acc_size != sizeof(Acc)))) {
            throw StatusError{absl::FailedPreconditionError(
                this->name_ + ": the checkpoint's windows were written with other key or "
                              "accumulator types (format " + std::to_string(format) + ", sizes " +
                std::to_string(key_size) + "/" + std::to_string(acc_size) + ")")};
          }
          while (!in.empty()) restore_window(&in, range, max_parallelism);
        }
      }
      if (!mine.stores.empty()) {
        if (!store_) {
          throw StatusError{absl::FailedPreconditionError(
              this->name_ + ": the checkpoint was taken with a state backend that spills "
                            "windows to disk (RocksDB); restore it with one")};
        }
        restore_stores(*store_, mine);
      }
    }
  }

  // Reads one window of a snapshot blob, keeping the entries of `range`.
  void restore_window(std::string_view* in, KeyGroupRange range, int max_parallelism) {
    std::int64_t start = 0;
    std::uint64_t n = 0;
    if (!get_i64(in, &start) || in->empty()) this->corrupt("a window");
    const auto flags = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    if (!get_u64(in, &n)) this->corrupt("a window");
    auto& slot = windows_[start];
    if (!slot) {
      slot = std::make_unique<Window>();
      slot->start = start;
      slot->end = window_end(start, size_);
    }
    slot->fired |= (flags & 1) != 0;
    slot->spilled |= (flags & 2) != 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      K key{};
      Acc acc{};
      if constexpr (kRawEntries) {
        if (in->size() < sizeof(K) + sizeof(Acc)) this->corrupt("window " + std::to_string(start));
        std::memcpy(&key, in->data(), sizeof(K));
        std::memcpy(&acc, in->data() + sizeof(K), sizeof(Acc));
        in->remove_prefix(sizeof(K) + sizeof(Acc));
      } else if (!decode_field<K, KeyCodec<K>>(in, &key) || !decode_field<Acc>(in, &acc)) {
        this->corrupt("an entry of window " + std::to_string(start));
      }
      const int kg = key_group_of(key, max_parallelism);
      if (kg < range.first || kg > range.last) continue;
      slot->table.insert_or_assign(std::move(key), std::move(acc));
    }
  }

  // Two passes: find each record's window and prefetch its hash slot, then
  // add. The tables are far larger than the caches (a slot per key and open
  // window), so overlapping the misses of a batch is most of the speed.
  void push_tumbling(RecordBatch<T>& batch) {
    constexpr std::size_t kAhead = 16;
    const std::size_t n = batch.size();
    targets_.resize(n);
    keys_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const Timestamp ts = batch.timestamps[i];
      Window* w = last_;
      if (w == nullptr || ts < w->start || ts >= w->end) {
        w = find_or_create(window_start(ts, size_, offset_));
        if (w != nullptr) last_ = w;
      }
      targets_[i] = w;
      keys_[i] = std::invoke(key_fn_, static_cast<const T&>(batch.values[i]));
    }
    for (std::size_t i = 0; i < std::min(kAhead, n); ++i) {
      if (targets_[i] != nullptr) targets_[i]->table.prefetch(keys_[i]);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (i + kAhead < n && targets_[i + kAhead] != nullptr) {
        targets_[i + kAhead]->table.prefetch(keys_[i + kAhead]);
      }
      if (targets_[i] == nullptr) {
        this->late_record(batch.values[i], batch.timestamps[i]);
      } else {
        add(*targets_[i], keys_[i], batch.values[i]);
      }
    }
  }

  void add_sliding(T& value, Timestamp ts) {
    bool any = false;
    const Timestamp last_start = window_start(ts, slide_, offset_);
    // Windows start after ts - size; saturating, and stopping where the next
    // start is not representable (timestamps near the ends of int64).
    const Timestamp first_excluded = saturating_sub(ts, size_);
    for (Timestamp start = last_start; start > first_excluded || start == last_start;) {
      Window* w = find_or_create(start);
      if (w != nullptr) {
        any = true;
        add(*w, std::invoke(key_fn_, static_cast<const T&>(value)), value);
      }
      if (start < kMinTimestamp + slide_) break;
      start -= slide_;
    }
    if (!any) this->late_record(value, ts);
  }

  void add(Window& w, const K& key, const T& value) {
    if (store_ && !w.fired && at_growth(w.table)) make_room(w, key);
    auto [it, inserted] = w.table.try_emplace(key);
    if (inserted) it->second = this->agg_.create();
    this->agg_.add(it->second, value);
    if (w.fired) this->emit(it->first, w.start, w.end, it->second);  // late update
  }

  // The open window starting at `start`, created if needed; nullptr when late.
  Window* find_or_create(Timestamp start) {
    auto it = windows_.find(start);
    if (it != windows_.end()) return it->second.get();
    const Timestamp end = window_end(start, size_);
    if (this->is_late(end)) return nullptr;
    auto w = std::make_unique<Window>();
    w->start = start;
    w->end = end;
    // Windows of a stream hold about as many keys as the last one fired or
    // the largest one open: sizing the table up front saves its rehashes
    // (each a pass of cache misses over the whole table) while it fills.
    std::size_t expected = expected_keys_;
    for (const auto& [s, open] : windows_) expected = std::max(expected, open->table.size());
    if (store_) {
      // Within the budget: half of what is left at most, for a table sized
      // ahead (an empty table cannot be spilled to make room).
      const std::size_t used = std::min(budget_, tables_bytes());
      expected = std::min(expected, (budget_ - used) / 2 / (sizeof(typename Table::value_type) + 1));
    }
    w->table.reserve(expected);
    return windows_.emplace(start, std::move(w)).first->second.get();
  }

  KeyFn key_fn_;
  std::int64_t size_;
  std::int64_t slide_;
  std::int64_t offset_;
  std::map<Timestamp, std::unique_ptr<Window>> windows_;
  Window* last_ = nullptr;  // the window of the previous record
  // Spilling (on-disk backends only).
  std::unique_ptr<KeyedStateStore> store_;
  int chunk_state_ = 0;
  std::size_t budget_ = 0;
  std::uint32_t next_chunk_ = 0;
  Counter* spilled_bytes_ = nullptr;
  std::size_t expected_keys_ = 0;
  std::vector<Window*> targets_;  // per record of a batch: its window, nullptr when late
  std::vector<K> keys_;
};

// Session windows: per key, merging windows of [ts, ts + gap).
template <typename K, typename T, typename KeyFn, typename A>
class SessionWindowOperator final : public WindowOperatorBase<K, T, A> {
  using Base = WindowOperatorBase<K, T, A>;
  using Acc = typename Base::Acc;

 public:
  SessionWindowOperator(const OperatorIds& ids, KeyFn key_fn, A agg, std::int64_t gap,
                        std::int64_t lateness, Collector<typename Base::Out>* out,
                        Collector<T>* late_out)
      : Base(ids, std::move(agg), lateness, out, late_out),
        key_fn_(std::move(key_fn)), gap_(gap) {}

  void push(RecordBatch<T>& batch) override {
    call_user(this->name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) add(batch.values[i], batch.timestamps[i]);
    });
    this->flush();
    this->flush_late();
  }

  void open(Worker& worker) override {
    Base::open(worker);
    if (worker.checkpointing()) require_codecs<K, Acc>(this->name_);
    if (const auto* mine = this->restored_part()) call_user(this->name_, [&] { restore(*mine); });
  }

  void watermark(Timestamp wm) override {
    if (wm <= this->watermark_) return;  // e.g. from before a restored watermark
    this->watermark_ = wm;
    call_user(this->name_, [&] {
      while (!timers_.empty() && timers_.begin()->first <= wm) {
        auto node = timers_.extract(timers_.begin());
        on_timer(node.mapped().first, node.mapped().second);
      }
    });
    this->forward_watermark(wm);
  }

 private:
  // fire time -> (key, session end); each session has exactly one timer.
  using Timers = std::multimap<Timestamp, std::pair<K, Timestamp>>;

  struct Session {
    Timestamp start;
    Timestamp end;
    bool fired;
    Acc acc;
    typename Timers::iterator timer;  // its timer in timers_
  };

  void add(T& value, Timestamp ts) {
    const K key = std::invoke(key_fn_, value);
    std::vector<Session>& sessions = sessions_[key];
    Timestamp start = ts;
    Timestamp end = saturating_add(ts, gap_);
    bool fired = false;
    // Sessions that touch [start, end) merge with it (Flink's TimeWindow.intersects).
    auto first = std::find_if(sessions.begin(), sessions.end(),
                              [&](const Session& s) { return s.end >= start; });
    auto last = first;
    while (last != sessions.end() && last->start <= end) {
      start = std::min(start, last->start);
      end = std::max(end, last->end);
      fired |= last->fired;
      ++last;
    }
    if (this->is_late(end)) {
      if (sessions.empty()) sessions_.erase(key);
      this->late_record(value, ts);
      return;
    }
    // A merged session that fired before and whose end the watermark has
    // passed is a late update: re-emitted now and kept for the lateness.
    // Otherwise it fires when the watermark reaches its (new) end.
    Session merged{start, end, fired && end - 1 <= this->watermark_, this->agg_.create(),
                   timers_.end()};
    for (auto it = first; it != last; ++it) {
      this->agg_.merge(merged.acc, it->acc);
      timers_.erase(it->timer);  // the merged-away sessions' timers
    }
    this->agg_.add(merged.acc, value);
    auto pos = sessions.erase(first, last);
    pos = sessions.insert(pos, std::move(merged));
    if (pos->fired) {
      this->emit(key, pos->start, pos->end, pos->acc);
      pos->timer = timers_.emplace(saturating_add(pos->end - 1, this->lateness_),
                                   std::make_pair(key, pos->end));
    } else {
      pos->timer = timers_.emplace(pos->end - 1, std::make_pair(key, pos->end));
    }
  }

  void on_timer(const K& key, Timestamp end) {
    auto it = sessions_.find(key);
    if (it == sessions_.end()) return;
    std::vector<Session>& sessions = it->second;
    auto s = std::find_if(sessions.begin(), sessions.end(),
                          [&](const Session& x) { return x.end == end; });
    if (s == sessions.end()) return;
    s->timer = timers_.end();  // the caller took it out of timers_
    if (!s->fired) {
      this->emit(key, s->start, s->end, s->acc);
      s->fired = true;
    }
    if (this->is_late(s->end)) {
      sessions.erase(s);
      if (sessions.empty()) sessions_.erase(it);
    } else {
      s->timer = timers_.emplace(saturating_add(s->end - 1, this->lateness_),
                                 std::make_pair(key, s->end));
    }
  }

  // Per key group: key, its sessions (start, end, fired, accumulator). The
  // timers follow from the sessions.
  void snapshot_windows(std::int64_t, OperatorInstanceState& snap) override {
    if constexpr (HasCodec<K>::value && HasCodec<Acc>::value) {
      KeyGroupBytes blobs(this->worker_->key_groups());
      for (const auto& [key, sessions] : sessions_) {
        std::string& b = blobs[key_group_of(key, this->worker_->max_parallelism())];
        encode_field<K, KeyCodec<K>>(key, &b);
        put_u64(&b, sessions.size());
        for (const Session& x : sessions) {
          put_i64(&b, x.start);
          put_i64(&b, x.end);
          b.push_back(x.fired ? 1 : 0);
          encode_field<Acc>(x.acc, &b);
        }
      }
      blobs.move_into(snap);
    }
  }

  void restore(const RestoredCheckpoint::Operator& mine) {
    if constexpr (HasCodec<K>::value && HasCodec<Acc>::value) {
      for_each_restored(mine, this->worker_->key_groups(), [&](std::string_view in) {
        while (!in.empty()) {
          K key{};
          std::uint64_t n = 0;
          if (!decode_field<K, KeyCodec<K>>(&in, &key) || !get_u64(&in, &n)) {
            this->corrupt("a session");
          }
          std::vector<Session>& sessions = sessions_[key];
          for (std::uint64_t i = 0; i < n; ++i) {
            Session x{0, 0, false, Acc{}, timers_.end()};
            if (!get_i64(&in, &x.start) || !get_i64(&in, &x.end) || in.empty()) {
              this->corrupt("a session");
            }
            x.fired = in.front() != 0;
            in.remove_prefix(1);
            if (!decode_field<Acc>(&in, &x.acc)) this->corrupt("a session");
            const Timestamp at =
                x.fired ? saturating_add(x.end - 1, this->lateness_) : x.end - 1;
            x.timer = timers_.emplace(at, std::make_pair(key, x.end));
            sessions.push_back(std::move(x));
          }
        }
      });
    }
  }

  KeyFn key_fn_;
  std::int64_t gap_;
  absl::flat_hash_map<K, std::vector<Session>> sessions_;
  Timers timers_;
};

}  // namespace meterstream::detail
