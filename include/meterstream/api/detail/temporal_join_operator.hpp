// The operator behind temporal_join() (api/temporal_join.hpp). Not API.
//
// One instance per worker joins the readings of the keys that worker owns
// with the reference versions of the same keys: both inputs are partitioned
// by key (key_by on each side), so the reference stream is not broadcast but
// routed, and each worker holds the versions of its own keys only.
//
// The graph has one input per node, so the join is two nodes on the same
// worker thread: the join node takes the readings; a feed node on the
// reference stream hands its records, watermarks, barriers and end to the
// join instance of its worker (TemporalJoinLink). The join aligns the
// barriers of both inputs itself: after barrier N on one input, that input's
// events are buffered until barrier N arrives on the other (or it ends); the
// state is snapshot and the barrier forwarded then.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "meterstream/core/codec.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/state/detail/state_cache.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::detail {

// The reference-side interface of a join instance (what the feed calls).
template <typename R>
class TemporalJoinReferenceInput {
 public:
  virtual ~TemporalJoinReferenceInput() = default;
  virtual void reference_push(RecordBatch<R>& batch) = 0;
  virtual void reference_watermark(Timestamp wm) = 0;
  virtual void reference_end() = 0;
  virtual void reference_barrier(std::int64_t id) = 0;
};

// Per job run, the join instance of each worker, found by the feed of the
// same worker. Written when the job instantiates its nodes (one thread),
// read by the workers after that.
template <typename R>
class TemporalJoinLink {
 public:
  void set(const Worker* worker, TemporalJoinReferenceInput<R>* join) {
    std::lock_guard<std::mutex> lock(mu_);
    joins_[worker] = join;
  }
  TemporalJoinReferenceInput<R>* get(const Worker* worker) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = joins_.find(worker);
    return it == joins_.end() ? nullptr : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<const Worker*, TemporalJoinReferenceInput<R>*> joins_;
};

// The feed: the reference stream's input on a worker, forwarding to the join
// instance of that worker.
template <typename R>
class TemporalJoinFeed final : public Collector<R>, public OperatorInstance {
 public:
  TemporalJoinFeed(std::shared_ptr<TemporalJoinLink<R>> link, const Worker* worker,
                   std::string name)
      : link_(std::move(link)), worker_(worker), name_(std::move(name)) {}

  void open(OperatorContext&) override {
    join_ = link_->get(worker_);
    if (join_ == nullptr) {
      throw StatusError{absl::InternalError(name_ + ": the join of this worker is missing")};
    }
  }
  void push(RecordBatch<R>& batch) override { join_->reference_push(batch); }
  void watermark(Timestamp wm) override { join_->reference_watermark(wm); }
  void watermark_status(bool) override {}
  void end() override { join_->reference_end(); }
  void barrier(std::int64_t id) override { join_->reference_barrier(id); }

 private:
  std::shared_ptr<TemporalJoinLink<R>> link_;
  const Worker* worker_;
  std::string name_;
  TemporalJoinReferenceInput<R>* join_ = nullptr;
};

// One key's versions, ascending by validity time (few: the cleanup keeps
// about one behind the watermark).
template <typename R>
using VersionList = std::vector<std::pair<Timestamp, R>>;

// The versions of every key of an instance: keyed state. With codecs for K
// and R, a StateCache in front of the operator's KeyedStateStore (all in
// memory on the memory backend; on RocksDB a bounded cache written back to
// the store, which the checkpoint snapshots); without, a hash map (such a
// join cannot checkpoint, see require_codecs()).
template <typename K, typename R, bool kStored = HasCodec<K>::value && HasCodec<R>::value>
class VersionTable {
 public:
  void open(OperatorContext&, const std::string&) {}
  VersionList<R>* find(const K& key) {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second;
  }
  VersionList<R>& get_or_create(const K& key) { return map_[key]; }
  void mark_dirty(const K&) {}
  void erase(const K& key) { map_.erase(key); }
  void flush() {}
  bool on_disk() const { return false; }
  KeyedStateStore* store() { return nullptr; }
  template <typename F>
  void for_each(F&& fn) const {
    for (const auto& [k, v] : map_) fn(k, v);
  }

 private:
  std::unordered_map<K, VersionList<R>, KeyHash<K>> map_;
};

template <typename K, typename R>
class VersionTable<K, R, true> {
 public:
  void open(OperatorContext& context, const std::string& uid) {
    StatusOr<std::unique_ptr<KeyedStateStore>> store = context.state_backend()->open_keyed_store(
        uid, context.key_groups(), context.max_parallelism());
    if (!store.ok()) throw StatusError{store.status()};
    store_ = *std::move(store);
    StatusOr<int> id = store_->register_state({"versions", StateDescriptor::Kind::kValue});
    if (!id.ok()) throw StatusError{id.status()};
    // As the dedup operators: on the memory backend the cache is the state;
    // on disk it is bounded by this instance's share of the operator memory
    // (about 128 bytes an entry).
    const std::size_t share = context.operator_memory_share();
    on_disk_ = share != 0;
    cache_ = std::make_unique<StateCache<K, VersionList<R>>>(
        on_disk_ ? store_.get() : nullptr, *id, std::max<std::size_t>(share / 128, 1024),
        context.max_parallelism());
  }
  VersionList<R>* find(const K& key) { return cache_->find(key); }
  VersionList<R>& get_or_create(const K& key) {
    VersionList<R>* v = cache_->find(key);
    return v != nullptr ? *v : cache_->put(key, VersionList<R>{});
  }
  void mark_dirty(const K& key) { cache_->mark_dirty(key); }
  void erase(const K& key) { cache_->erase(key); }
  void flush() { cache_->flush(); }
  bool on_disk() const { return on_disk_; }
  KeyedStateStore* store() { return store_.get(); }
  // Every version in memory: all of them unless on disk.
  template <typename F>
  void for_each(F&& fn) const {
    cache_->for_each(fn);
  }

 private:
  std::unique_ptr<KeyedStateStore> store_;
  std::unique_ptr<StateCache<K, VersionList<R>>> cache_;
  bool on_disk_ = false;
};

// The join. K: the key; T: readings; R: reference records; Out: joined.
// The reference records' event timestamps are their validity times.
template <typename K, typename T, typename R, typename Out, typename KeyT, typename KeyR,
          typename Joiner>
class TemporalJoinOp final : public Collector<T>,
                             public OperatorInstance,
                             public TemporalJoinReferenceInput<R> {
 public:
  TemporalJoinOp(const OperatorIds& ids, Collector<Out>* out, Collector<T>* unmatched,
                 KeyT key_t, KeyR key_r, Joiner joiner)
      : uid_(ids.uid), name_(ids.name), out_(out), unmatched_(unmatched),
        key_t_(std::move(key_t)), key_r_(std::move(key_r)), joiner_(std::move(joiner)) {}

  void open(OperatorContext& context) override {
    context_ = &context;
    max_parallelism_ = context.max_parallelism();
    MetricRegistry& m = context.metrics();
    joined_ = m.counter("temporal_join_joined");
    unmatched_count_ = m.counter("temporal_join_unmatched");
    op_unmatched_ = m.counter(operator_metric("temporal_join_unmatched", name_));
    versions_count_ = m.counter("temporal_join_versions_dropped");
    late_reference_ = m.counter("temporal_join_late_reference");
    if (context.checkpointing()) require_codecs<K, T, R>(name_);
    versions_.open(context, uid_);
    if constexpr (HasCodec<K>::value && HasCodec<T>::value && HasCodec<R>::value) {
      if (const auto* mine = context.restored_part()) {
        if (versions_.on_disk()) restore_stores(*versions_.store(), *mine);
        restore(*mine);
      }
    }
  }

  // --- readings side ---
  void push(RecordBatch<T>& batch) override {
    if (reading_blocked_ != 0) {
      reading_queue_.push_back(Event<T>{Event<T>::kBatch, batch, 0});
      return;
    }
    on_readings(batch);
  }
  void watermark(Timestamp wm) override {
    if (reading_blocked_ != 0) {
      reading_queue_.push_back(Event<T>{Event<T>::kWatermark, {}, wm});
      return;
    }
    reading_wm_ = std::max(reading_wm_, wm);
    forward_watermark();
  }
  void watermark_status(bool idle) override {
    out_->watermark_status(idle);
    if (unmatched_ != nullptr) unmatched_->watermark_status(idle);
  }
  void end() override {
    if (reading_blocked_ != 0) {
      reading_queue_.push_back(Event<T>{Event<T>::kEnd, {}, 0});
      return;
    }
    readings_ended_ = true;
    if (ref_blocked_ != 0) align(ref_blocked_);  // this input will send no barrier
    maybe_finish();
  }
  void barrier(std::int64_t id) override {
    if (reading_blocked_ != 0) {
      reading_queue_.push_back(Event<T>{Event<T>::kBarrier, {}, id});
      return;
    }
    if (ref_blocked_ == id || reference_ended_) {
      align(id);
    } else {
      reading_blocked_ = id;
    }
  }

  // --- reference side ---
  void reference_push(RecordBatch<R>& batch) override {
    if (ref_blocked_ != 0) {
      ref_queue_.push_back(Event<R>{Event<R>::kBatch, batch, 0});
      return;
    }
    on_reference(batch);
  }
  void reference_watermark(Timestamp wm) override {
    if (ref_blocked_ != 0) {
      ref_queue_.push_back(Event<R>{Event<R>::kWatermark, {}, wm});
      return;
    }
    on_reference_watermark(wm);
  }
  void reference_end() override {
    if (ref_blocked_ != 0) {
      ref_queue_.push_back(Event<R>{Event<R>::kEnd, {}, 0});
      return;
    }
    on_reference_end();
  }
  void reference_barrier(std::int64_t id) override {
    if (ref_blocked_ != 0) {
      ref_queue_.push_back(Event<R>{Event<R>::kBarrier, {}, id});
      return;
    }
    if (reading_blocked_ == id || readings_ended_) {
      align(id);
    } else {
      ref_blocked_ = id;
    }
  }

 private:
  template <typename V>
  struct Event {
    enum Kind { kBatch, kWatermark, kEnd, kBarrier } kind;
    RecordBatch<V> batch;
    std::int64_t value;  // watermark or barrier id
  };
  using Versions = VersionList<R>;

  // Inserts or replaces the version of `ts` in `v` (ascending).
  static void upsert(Versions& v, Timestamp ts, R r) {
    auto it = std::lower_bound(v.begin(), v.end(), ts,
                               [](const auto& e, Timestamp t) { return e.first < t; });
    if (it != v.end() && it->first == ts) {
      it->second = std::move(r);
    } else {
      v.insert(it, {ts, std::move(r)});
    }
  }
  // The first version of `v` valid after `ts` (v.end() when none).
  static typename Versions::const_iterator after(const Versions& v, Timestamp ts) {
    return std::upper_bound(v.begin(), v.end(), ts,
                            [](Timestamp t, const auto& e) { return t < e.first; });
  }

  void on_readings(RecordBatch<T>& batch) {
    call_user(name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const Timestamp ts = batch.timestamps[i];
        if (ts <= ref_wm_) {
          emit(batch.values[i], ts);
        } else {
          pending_.emplace(ts, std::move(batch.values[i]));
        }
      }
    });
    flush_output();
  }

  void on_reference(RecordBatch<R>& batch) {
    call_user(name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const Timestamp ts = batch.timestamps[i];
        if (ts <= ref_wm_) late_reference_->add();
        const K key = std::invoke(key_r_, batch.values[i]);
        Versions& v = versions_.get_or_create(key);
        upsert(v, ts, std::move(batch.values[i]));
        prune(v);
        versions_.mark_dirty(key);
      }
    });
  }

  void on_reference_watermark(Timestamp wm) {
    if (wm <= ref_wm_) return;
    ref_wm_ = wm;
    call_user(name_, [&] {
      while (!pending_.empty() && pending_.begin()->first <= ref_wm_) {
        auto node = pending_.extract(pending_.begin());
        emit(node.mapped(), node.key());
      }
    });
    flush_output();
    forward_watermark();
  }

  void on_reference_end() {
    reference_ended_ = true;
    on_reference_watermark(kMaxTimestamp);
    if (reading_blocked_ != 0) align(reading_blocked_);  // this input will send no barrier
    maybe_finish();
  }

  // Joins one reading with the version valid at `ts`: the one with the
  // greatest validity time <= ts.
  void emit(const T& reading, Timestamp ts) {
    const K key = std::invoke(key_t_, reading);
    Versions* versions = versions_.find(key);
    const R* version = nullptr;
    if (versions != nullptr) {
      auto v = after(*versions, ts);
      if (v != versions->begin()) version = &std::prev(v)->second;
    }
    if (version == nullptr) {
      unmatched_count_->add();
      op_unmatched_->add();
      if (unmatched_ != nullptr) unmatched_batch_.push_back(reading, ts);
      return;
    }
    out_batch_.push_back(joiner_(reading, *version), ts);
    joined_->add();
    if (prune(*versions)) versions_.mark_dirty(key);
  }

  // The earliest timestamp a reading still to be joined can have: pending
  // ones, and those not yet arrived (after the readings' watermark).
  Timestamp horizon() const {
    Timestamp h = reading_wm_ == kMaxTimestamp ? kMaxTimestamp : reading_wm_ + 1;
    if (!pending_.empty()) h = std::min(h, pending_.begin()->first);
    return h;
  }

  // Drops the versions of one key that no reading can need any more: all
  // but the last one valid at the horizon, and the later ones.
  // Returns whether it dropped any.
  bool prune(Versions& v) {
    const Timestamp h = horizon();
    auto keep = after(v, h);
    if (keep == v.begin()) return false;
    --keep;  // the version valid at h
    const auto dropped = std::distance(v.cbegin(), keep);
    if (dropped == 0) return false;
    v.erase(v.cbegin(), keep);
    versions_count_->add(static_cast<std::int64_t>(dropped));
    return true;
  }

  void flush_output() {
    if (!out_batch_.empty()) {
      out_->push(out_batch_);
      out_batch_.clear();
    }
    if (!unmatched_batch_.empty()) {
      unmatched_->push(unmatched_batch_);
      unmatched_batch_.clear();
    }
  }

  // Output records keep their readings' timestamps; every reading still to
  // come is after both watermarks.
  void forward_watermark() {
    const Timestamp wm = std::min(reading_wm_, ref_wm_);
    if (wm <= out_wm_) return;
    out_wm_ = wm;
    out_->watermark(wm);
    if (unmatched_ != nullptr) unmatched_->watermark(wm);
  }

  void maybe_finish() {
    if (!readings_ended_ || !reference_ended_ || finished_) return;
    finished_ = true;
    call_user(name_, [&] {
      while (!pending_.empty()) {
        auto node = pending_.extract(pending_.begin());
        emit(node.mapped(), node.key());
      }
    });
    flush_output();
    versions_.flush();
    out_->end();
    if (unmatched_ != nullptr) unmatched_->end();
  }

  // Barrier `id` has arrived on both inputs (or one of them ended):
  // snapshot, forward, then replay what the blocked input buffered.
  void align(std::int64_t id) {
    reading_blocked_ = 0;
    ref_blocked_ = 0;
    OperatorInstanceState& snap = context_->snapshot_of(id);
    context_->snapshot_step(id, [&] { call_user(name_, [&] { snapshot(id, snap); }); });
    out_->barrier(id);
    if (unmatched_ != nullptr) unmatched_->barrier(id);
    replay();
  }

  void replay() {
    // Events of one input, in order, until it blocks again.
    while (reading_blocked_ == 0 && ref_blocked_ == 0 &&
           (!reading_queue_.empty() || !ref_queue_.empty())) {
      if (!reading_queue_.empty()) {
        Event<T> e = std::move(reading_queue_.front());
        reading_queue_.pop_front();
        dispatch_reading(e);
      } else {
        Event<R> e = std::move(ref_queue_.front());
        ref_queue_.pop_front();
        dispatch_reference(e);
      }
    }
    // One input blocked again: the other's buffered events are not blocked.
    while (reading_blocked_ == 0 && !reading_queue_.empty()) {
      Event<T> e = std::move(reading_queue_.front());
      reading_queue_.pop_front();
      dispatch_reading(e);
    }
    while (ref_blocked_ == 0 && !ref_queue_.empty()) {
      Event<R> e = std::move(ref_queue_.front());
      ref_queue_.pop_front();
      dispatch_reference(e);
    }
  }

  void dispatch_reading(Event<T>& e) {
    switch (e.kind) {
      case Event<T>::kBatch: push(e.batch); break;
      case Event<T>::kWatermark: watermark(e.value); break;
      case Event<T>::kEnd: end(); break;
      case Event<T>::kBarrier: barrier(e.value); break;
    }
  }
  void dispatch_reference(Event<R>& e) {
    switch (e.kind) {
      case Event<R>::kBatch: reference_push(e.batch); break;
      case Event<R>::kWatermark: reference_watermark(e.value); break;
      case Event<R>::kEnd: reference_end(); break;
      case Event<R>::kBarrier: reference_barrier(e.value); break;
    }
  }

  // Operator state: both watermarks. Per key group: tagged entries, 0 a
  // version (key, validity time, record), 1 a pending reading (timestamp,
  // reading).
  void snapshot(std::int64_t id, OperatorInstanceState& snap) {
    snap.operator_state.clear();
    put_i64(&snap.operator_state, reading_wm_);
    put_i64(&snap.operator_state, ref_wm_);
    if constexpr (HasCodec<K>::value && HasCodec<T>::value && HasCodec<R>::value) {
      KeyGroupBytes bytes(context_->key_groups());
      if (versions_.on_disk()) {
        // The versions are in the store: its snapshot holds them.
        versions_.flush();
        snapshot_store(*context_, id, *versions_.store(), snap);
      } else {
        versions_.for_each([&](const K& key, const Versions& versions) {
          std::string& out = bytes[key_group_of(key, max_parallelism_)];
          for (const auto& [ts, r] : versions) {
            out.push_back('\0');
            encode_field<K, KeyCodec<K>>(key, &out);
            put_i64(&out, ts);
            encode_field<R>(r, &out);
          }
        });
      }
      for (const auto& [ts, reading] : pending_) {
        const K key = std::invoke(key_t_, reading);
        std::string& out = bytes[key_group_of(key, max_parallelism_)];
        out.push_back('\1');
        put_i64(&out, ts);
        encode_field<T>(reading, &out);
      }
      bytes.move_into(snap);
    }
  }

  void restore(const RestoredCheckpoint::Operator& part) {
    // The smallest of the old instances' watermarks (each holds two).
    bool first = true;
    for (const auto& [worker, bytes] : part.operator_states) {
      std::string_view in = bytes;
      std::int64_t rw = 0;
      std::int64_t fw = 0;
      if (!get_i64(&in, &rw) || !get_i64(&in, &fw)) throw_corrupt(name_, "its operator state");
      reading_wm_ = first ? rw : std::min(reading_wm_, rw);
      ref_wm_ = first ? fw : std::min(ref_wm_, fw);
      first = false;
    }
    out_wm_ = kMinTimestamp;
    for_each_restored(part, context_->key_groups(), [&](std::string_view in) {
      while (!in.empty()) {
        const char tag = in.front();
        in.remove_prefix(1);
        if (tag == '\0') {
          K key{};
          std::int64_t ts = 0;
          R r{};
          if (!decode_field<K, KeyCodec<K>>(&in, &key) || !get_i64(&in, &ts) ||
              !decode_field<R>(&in, &r)) {
            throw_corrupt(name_, "its reference versions");
          }
          upsert(versions_.get_or_create(key), ts, std::move(r));
          versions_.mark_dirty(key);
        } else if (tag == '\1') {
          std::int64_t ts = 0;
          T t{};
          if (!get_i64(&in, &ts) || !decode_field<T>(&in, &t)) {
            throw_corrupt(name_, "its waiting readings");
          }
          pending_.emplace(ts, std::move(t));
        } else {
          throw_corrupt(name_, "its state");
        }
      }
    });
  }

  std::string uid_;
  std::string name_;
  Collector<Out>* out_;
  Collector<T>* unmatched_;  // null when the side output is unconsumed
  KeyT key_t_;
  KeyR key_r_;
  Joiner joiner_;
  OperatorContext* context_ = nullptr;
  int max_parallelism_ = kDefaultMaxParallelism;

  VersionTable<K, R> versions_;
  std::multimap<Timestamp, T> pending_;  // readings waiting for the reference watermark
  Timestamp reading_wm_ = kMinTimestamp;
  Timestamp ref_wm_ = kMinTimestamp;
  Timestamp out_wm_ = kMinTimestamp;
  bool readings_ended_ = false;
  bool reference_ended_ = false;
  bool finished_ = false;
  std::int64_t reading_blocked_ = 0;  // barrier id the readings wait at; 0: none
  std::int64_t ref_blocked_ = 0;
  std::deque<Event<T>> reading_queue_;
  std::deque<Event<R>> ref_queue_;
  RecordBatch<Out> out_batch_;
  RecordBatch<T> unmatched_batch_;

  Counter* joined_ = nullptr;
  Counter* unmatched_count_ = nullptr;
  Counter* op_unmatched_ = nullptr;
  Counter* versions_count_ = nullptr;
  Counter* late_reference_ = nullptr;
};

}  // namespace meterstream::detail
