// The deduplication operators behind Stream::dedup_by() and
// KeyedStream::dedup_by_sequence(). Not API.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/state/detail/state_cache.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream {

namespace detail {

// The sequence numbers seen recently for one key: bit d of the bitmap is set
// when sequence number top - 1 - d was seen. The bitmap grows one 64-bit word
// at a time, only as far back as this key's records actually reach, up to the
// horizon: a meter whose retries come back within 64 reports keeps 16 bytes.
struct SeqWindow {
  std::uint64_t top = 0;  // highest sequence number seen + 1; 0: none yet
  absl::InlinedVector<std::uint64_t, 1> bits;
};

}  // namespace detail

template <>
struct Codec<detail::SeqWindow> {
  static void encode(const detail::SeqWindow& w, std::string* out) {
    Codec<std::pair<std::uint64_t, std::vector<std::uint64_t>>>::encode(
        {w.top, std::vector<std::uint64_t>(w.bits.begin(), w.bits.end())}, out);
  }
  static bool decode(std::string_view in, detail::SeqWindow* w) {
    std::pair<std::uint64_t, std::vector<std::uint64_t>> p;
    if (!Codec<decltype(p)>::decode(in, &p)) return false;
    w->top = p.first;
    w->bits.assign(p.second.begin(), p.second.end());
    return true;
  }
};

namespace detail {

// Common parts: state store, cache sizing, counting dropped duplicates.
template <typename T>
class DedupOperatorBase : public Collector<T>, public OperatorInstance {
 public:
  DedupOperatorBase(const OperatorIds& ids, Collector<T>* out)
      : uid_(ids.uid), name_(ids.name), out_(out) {}

  void open(OperatorContext& context) override {
    context_ = &context;
    max_parallelism_ = context.max_parallelism();
    dropped_ = context.metrics().counter("dedup_dropped");
    op_dropped_ = context.metrics().counter(operator_metric("dedup_dropped", name_));
    StatusOr<std::unique_ptr<KeyedStateStore>> store =
        context.state_backend()->open_keyed_store(uid_, context.key_groups(), max_parallelism_);
    if (!store.ok()) throw StatusError{store.status()};
    store_ = *std::move(store);
    StatusOr<int> id = store_->register_state({"seen", StateDescriptor::Kind::kValue});
    if (!id.ok()) throw StatusError{id.status()};
    state_id_ = *id;
    // A backend that keeps state in memory anyway needs no copy of it: the
    // cache is the state. An on-disk one gets a cache bounded by this
    // instance's share of the operator memory (about 64 bytes an entry).
    const std::size_t share = context.operator_memory_share();
    in_memory_ = share == 0;
    cache_entries_ = std::max<std::size_t>(share / 64, 1024);
  }

  void watermark(Timestamp wm) override { out_->watermark(wm); }
  void watermark_status(bool idle) override { out_->watermark_status(idle); }
  void end() override { out_->end(); }

  void barrier(std::int64_t id) override {
    OperatorInstanceState& snap = context_->snapshot_of(id);
    context_->snapshot_step(id, [&] { call_user(name_, [&] { snapshot_state(id, snap); }); });
    out_->barrier(id);
  }

 protected:
  virtual void snapshot_state(std::int64_t id, OperatorInstanceState& snap) = 0;

  // This operator's part of the checkpoint being restored, or null; its
  // store snapshots are restored here.
  const RestoredCheckpoint::Operator* restore_stores() {
    const RestoredCheckpoint::Operator* mine = context_->restored_part();
    if (mine != nullptr) detail::restore_stores(*store_, *mine);
    return mine;
  }

  [[noreturn]] void corrupt() const { throw_corrupt(name_, "its state"); }

  OperatorContext* context_ = nullptr;
  // Keeps the records for which keep(i) is true, counts the others.
  template <typename Keep>
  void filter(RecordBatch<T>& batch, Keep&& keep) {
    std::size_t kept = 0;
    call_user(name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (!keep(i)) continue;
        if (kept != i) {
          batch.values[kept] = std::move(batch.values[i]);
          batch.timestamps[kept] = batch.timestamps[i];
        }
        ++kept;
      }
    });
    dropped_->add(static_cast<std::int64_t>(batch.size() - kept));
    op_dropped_->add(static_cast<std::int64_t>(batch.size() - kept));
    batch.values.resize(kept);
    batch.timestamps.resize(kept);
    if (kept > 0) out_->push(batch);
  }

  std::size_t cache_entries_ = 0;

  std::string uid_;   // keys its state
  std::string name_;  // for errors
  Collector<T>* out_;
  int max_parallelism_ = kDefaultMaxParallelism;
  std::unique_ptr<KeyedStateStore> store_;
  int state_id_ = 0;
  bool in_memory_ = true;
  Counter* dropped_ = nullptr;
  Counter* op_dropped_ = nullptr;  // labelled with the operator's name
};

// dedup_by_sequence: per key, a sliding bitmap of recent sequence numbers.
template <typename K, typename T, typename KeyFn, typename SeqFn>
class SequenceDedupOp final : public DedupOperatorBase<T> {
 public:
  SequenceDedupOp(const OperatorIds& ids, Collector<T>* out, KeyFn key_fn, SeqFn seq_fn,
                  std::uint64_t horizon)
      : DedupOperatorBase<T>(ids, out), key_fn_(std::move(key_fn)),
        seq_fn_(std::move(seq_fn)), horizon_(horizon),
        max_words_(static_cast<std::size_t>((horizon + 63) / 64)) {}

  void open(OperatorContext& context) override {
    DedupOperatorBase<T>::open(context);
    beyond_ = context.metrics().counter("dedup_beyond_horizon");
    cache_ = std::make_unique<StateCache<K, SeqWindow>>(
        this->in_memory_ ? nullptr : this->store_.get(), this->state_id_,
        this->cache_entries_, this->max_parallelism_);
    if (context.checkpointing()) require_codecs<K>(this->name_);
    if constexpr (HasCodec<K>::value) {
      if (const auto* mine = this->restore_stores()) {
        for_each_restored(*mine, context.key_groups(), [&](std::string_view in) {
          while (!in.empty()) {
            K key{};
            SeqWindow w;
            if (!decode_field<K, KeyCodec<K>>(&in, &key) || !decode_field<SeqWindow>(&in, &w)) {
              this->corrupt();
            }
            cache_->put(key, std::move(w));
          }
        });
      }
    }
  }

  void push(RecordBatch<T>& batch) override {
    this->filter(batch, [&](std::size_t i) {
      const T& v = batch.values[i];
      const K key = std::invoke(key_fn_, v);
      const auto seq = static_cast<std::uint64_t>(std::invoke(seq_fn_, v));
      SeqWindow* w = cache_->find(key);
      if (w == nullptr) w = &cache_->put(key, SeqWindow{});
      const bool keep = first_time(*w, seq);
      cache_->mark_dirty(key);
      return keep;
    });
  }

  void end() override {
    cache_->flush();
    DedupOperatorBase<T>::end();
  }

 protected:
  // In memory the cache is the state; on disk it is written back, and the
  // store's snapshot holds it.
  void snapshot_state(std::int64_t id, OperatorInstanceState& snap) override {
    if constexpr (HasCodec<K>::value) {
      if (!this->in_memory_) {
        cache_->flush();
        snapshot_store(*this->context_, id, *this->store_, snap);
        return;
      }
      KeyGroupBytes bytes(this->context_->key_groups());
      cache_->for_each([&](const K& key, const SeqWindow& w) {
        std::string& out = bytes[key_group_of(key, this->max_parallelism_)];
        encode_field<K, KeyCodec<K>>(key, &out);
        encode_field<SeqWindow>(w, &out);
      });
      bytes.move_into(snap);
    }
  }

 private:
  // Records `seq` in `w`; false when it was there already.
  bool first_time(SeqWindow& w, std::uint64_t seq) {
    if (w.top == 0 || seq >= w.top) {
      shift(w, w.top == 0 ? 0 : seq + 1 - w.top);
      if (w.bits.empty()) w.bits.push_back(0);
      w.top = seq + 1;
      w.bits[0] |= 1;
      return true;
    }
    const std::uint64_t d = w.top - 1 - seq;
    if (d >= horizon_) {
      // Older than the horizon: it cannot be told apart, and is kept.
      beyond_->add();
      return true;
    }
    const auto word = static_cast<std::size_t>(d / 64);
    const std::uint64_t bit = std::uint64_t{1} << (d % 64);
    if (word >= w.bits.size()) w.bits.resize(word + 1, 0);
    if ((w.bits[word] & bit) != 0) return false;
    w.bits[word] |= bit;
    return true;
  }

  // Moves every bit `by` places further back (top grows by `by`).
  void shift(SeqWindow& w, std::uint64_t by) {
    if (by == 0 || w.bits.empty()) return;
    const std::uint64_t words = by / 64;
    const unsigned bits = static_cast<unsigned>(by % 64);
    const std::size_t n = std::min(max_words_, w.bits.size() + static_cast<std::size_t>(
                                                                   std::min<std::uint64_t>(words + 1, max_words_)));
    absl::InlinedVector<std::uint64_t, 1> out(n, 0);
    for (std::size_t i = 0; i < w.bits.size(); ++i) {
      const std::uint64_t to = i + words;
      if (to < n) out[to] |= w.bits[i] << bits;
      if (bits != 0 && to + 1 < n) out[to + 1] |= w.bits[i] >> (64 - bits);
    }
    while (out.size() > 1 && out.back() == 0) out.pop_back();
    w.bits = std::move(out);
  }

  KeyFn key_fn_;
  SeqFn seq_fn_;
  std::uint64_t horizon_;
  std::size_t max_words_;
  std::unique_ptr<StateCache<K, SeqWindow>> cache_;
  Counter* beyond_ = nullptr;
};

// dedup_by: per id, seen until `ttl` of event time after its first record.
template <typename Id, typename T, typename IdFn>
class IdDedupOp final : public DedupOperatorBase<T> {
 public:
  IdDedupOp(const OperatorIds& ids, Collector<T>* out, IdFn id_fn, std::int64_t ttl_ms)
      : DedupOperatorBase<T>(ids, out), id_fn_(std::move(id_fn)), ttl_ms_(ttl_ms) {}

  void open(OperatorContext& context) override {
    DedupOperatorBase<T>::open(context);
    cache_ = std::make_unique<StateCache<Id, Timestamp>>(
        this->in_memory_ ? nullptr : this->store_.get(), this->state_id_, this->cache_entries_,
        this->max_parallelism_);
    if (context.checkpointing()) require_codecs<Id>(this->name_);
    if constexpr (HasCodec<Id>::value) {
      if (const auto* mine = this->restore_stores()) {
        for_each_restored(*mine, context.key_groups(), [&](std::string_view in) {
          while (!in.empty()) {
            Id id{};
            std::int64_t until = 0;
            if (!decode_field<Id, KeyCodec<Id>>(&in, &id) || !get_i64(&in, &until)) {
              this->corrupt();
            }
            cache_->put(id, until);
            expiries_.emplace_back(until, std::move(id));
          }
        });
        std::stable_sort(expiries_.begin(), expiries_.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        if (auto wm = restored_watermark(*mine, this->name_)) watermark_ = *wm;
      }
    }
  }

  void push(RecordBatch<T>& batch) override {
    this->filter(batch, [&](std::size_t i) {
      const Id id = std::invoke(id_fn_, batch.values[i]);
      const Timestamp* expiry = cache_->find(id);
      if (expiry != nullptr && *expiry > watermark_) return false;  // seen, not expired
      const Timestamp until = batch.timestamps[i] + ttl_ms_;
      cache_->put(id, until);
      expiries_.emplace_back(until, id);
      return true;
    });
  }

  // Forgets ids whose time to live has passed in event time.
  void watermark(Timestamp wm) override {
    watermark_ = std::max(watermark_, wm);  // a restored one may be ahead
    while (!expiries_.empty() && expiries_.front().first <= wm) {
      const auto& [until, id] = expiries_.front();
      // Unless the id was seen again since (a later expiry).
      const std::optional<Timestamp> current = cache_->peek(id);
      if (current && *current == until) cache_->erase(id);
      expiries_.pop_front();
    }
    DedupOperatorBase<T>::watermark(wm);
  }

  void end() override {
    cache_->flush();
    DedupOperatorBase<T>::end();
  }

 protected:
  // Every id still remembered is in the expiry queue: that is the state.
  void snapshot_state(std::int64_t, OperatorInstanceState& snap) override {
    snap.operator_state.clear();
    put_i64(&snap.operator_state, watermark_);
    if constexpr (HasCodec<Id>::value) {
      KeyGroupBytes bytes(this->context_->key_groups());
      for (const auto& [until, id] : expiries_) {
        std::string& out = bytes[key_group_of(id, this->max_parallelism_)];
        encode_field<Id, KeyCodec<Id>>(id, &out);
        put_i64(&out, until);
      }
      bytes.move_into(snap);
    }
  }

 private:
  IdFn id_fn_;
  std::int64_t ttl_ms_;
  Timestamp watermark_ = kMinTimestamp;
  std::unique_ptr<StateCache<Id, Timestamp>> cache_;
  std::deque<std::pair<Timestamp, Id>> expiries_;  // in arrival order, about time order
};

}  // namespace detail
}  // namespace meterstream
