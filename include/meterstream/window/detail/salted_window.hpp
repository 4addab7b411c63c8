// Hot-key salting (KeyedStream::salted(n)): the pieces behind a salted
// window aggregation. Not API.
//
// A salted aggregation is three steps:
//   1. "salt": each record is wrapped with a salt, round-robin per worker, and
//      the key group its (key, salt) goes to: the salts of one key are spread
//      evenly over the key-group range, so with n >= workers they land on
//      different workers;
//   2. the ordinary time-window operator, keyed by (key, salt), aggregating
//      into the accumulator itself (AccAggregate): it fires partial
//      accumulators per (key, salt, window), and re-fires one on each late
//      record within the allowed lateness (an upsert of that salt's part);
//   3. SaltMergeOperator, keyed by the key: per (key, window) the latest
//      accumulator of each salt; when the watermark passes end - 1 it merges
//      them (A::merge, in salt order) and emits one result, and after that
//      one per update of a part (the unsalted operator's upserts). It keeps
//      a window until end - 1 + allowed lateness, as the first stage does.
// The merge stage's state is keyed bytes per key group and the watermark,
// like any keyed operator's: checkpoints restore exactly, and rescale.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "meterstream/core/codec.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/window/aggregate.hpp"

namespace meterstream {
namespace detail {

// A key with its salt and the key group it was sent to (computed once, by
// the salting step, which knows the number of key groups).
template <typename K>
struct SaltedKey {
  K key{};
  std::uint32_t salt = 0;
  std::uint32_t group = 0;
  bool operator==(const SaltedKey& o) const { return salt == o.salt && key == o.key; }
  template <typename H>
  friend H AbslHashValue(H h, const SaltedKey& k) {
    return H::combine(std::move(h), k.key, k.salt);
  }
};

// A record with its salt (the first stage's input).
template <typename T, typename K>
struct Salted {
  T value;
  SaltedKey<K> key;
};

// The first stage's aggregate: A's, with the accumulator as its result.
template <typename A>
struct AccAggregate {
  A agg;
  using accumulator_type = typename A::accumulator_type;
  accumulator_type create() const { return agg.create(); }
  template <typename T, typename K>
  void add(accumulator_type& acc, const Salted<T, K>& v) const { agg.add(acc, v.value); }
  void merge(accumulator_type& acc, const accumulator_type& other) const { agg.merge(acc, other); }
  const accumulator_type& result(const accumulator_type& acc) const { return acc; }
};

template <typename A, typename = void>
struct HasMerge : std::false_type {};
template <typename A>
struct HasMerge<A, std::void_t<decltype(std::declval<const A&>().merge(
                       std::declval<typename A::accumulator_type&>(),
                       std::declval<const typename A::accumulator_type&>()))>>
    : std::true_type {};

// The key group of salt `salt` of `n` for a key of key group `base`.
inline std::uint32_t salted_group(int base, std::uint32_t salt, std::uint32_t n,
                                  int max_parallelism) {
  const auto m = static_cast<std::uint64_t>(max_parallelism);
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(base) + salt * m / n) % m);
}

}  // namespace detail

// The salted key's hash is its key group: the salting step chose it.
template <typename K>
struct KeyHash<detail::SaltedKey<K>> {
  std::uint64_t operator()(const detail::SaltedKey<K>& k) const { return k.group; }
};

// Keys that are not trivially copyable (strings): through K's codec.
template <typename K>
struct Codec<detail::SaltedKey<K>,
             std::enable_if_t<!detail::kIsMemcpyCodec<detail::SaltedKey<K>> &&
                              detail::HasCodec<K>::value>> {
  static void encode(const detail::SaltedKey<K>& k, std::string* out) {
    encode_field<K, KeyCodec<K>>(k.key, out);
    detail::put_u64(out, k.salt);
    detail::put_u64(out, k.group);
  }
  static bool decode(std::string_view in, detail::SaltedKey<K>* k) {
    std::uint64_t salt = 0;
    std::uint64_t group = 0;
    if (!decode_field<K, KeyCodec<K>>(&in, &k->key) || !detail::get_u64(&in, &salt) ||
        !detail::get_u64(&in, &group) || !in.empty()) {
      return false;
    }
    k->salt = static_cast<std::uint32_t>(salt);
    k->group = static_cast<std::uint32_t>(group);
    return true;
  }
};

namespace detail {

// The bit of SaltedKey::salt that marks a partial result the first stage
// re-fired for a late record (an upsert), set by SaltUpsertMarker.
inline constexpr std::uint32_t kUpsertBit = 0x80000000u;

// Chained after the first stage: marks the partials of windows that fired
// before (their end - 1 <= the watermark the first stage forwarded), which
// the first stage emits only for late records. The second stage re-emits on
// those as the unsalted operator does, whatever its own watermark.
template <typename K, typename Acc>
class SaltUpsertMarker final : public Collector<WindowResult<SaltedKey<K>, Acc>>,
                               public OperatorInstance {
 public:
  using Partial = WindowResult<SaltedKey<K>, Acc>;
  SaltUpsertMarker(const OperatorIds&, Collector<Partial>* out) : out_(out) {}
  void push(RecordBatch<Partial>& batch) override {
    for (Partial& r : batch.values) {
      if (r.end - 1 <= watermark_) r.key.salt |= kUpsertBit;
    }
    out_->push(batch);
  }
  void watermark(Timestamp wm) override {
    watermark_ = std::max(watermark_, wm);
    out_->watermark(wm);
  }
  void watermark_status(bool idle) override { out_->watermark_status(idle); }
  void end() override { out_->end(); }
  void barrier(std::int64_t id) override { out_->barrier(id); }

 private:
  Collector<Partial>* out_;
  Timestamp watermark_ = kMinTimestamp;
};

// The second stage: merges the salts' partial accumulators per key and window.
template <typename K, typename A>
class SaltMergeOperator final
    : public Collector<WindowResult<SaltedKey<K>, typename A::accumulator_type>>,
      public OperatorInstance {
 public:
  using Acc = typename A::accumulator_type;
  using In = WindowResult<SaltedKey<K>, Acc>;
  using Out = WindowResult<K, aggregate_result_t<A>>;

  SaltMergeOperator(const OperatorIds& ids, A agg, std::int64_t lateness, Collector<Out>* out)
      : name_(ids.name), agg_(std::move(agg)), lateness_(lateness), out_(out) {}

  void open(OperatorContext& context) override {
    context_ = &context;
    batch_size_ = context.options().batch_size;
    results_ = context.metrics().counter(operator_metric("window_results", name_));
    if (context.checkpointing()) require_codecs<K, Acc>(name_);
    if (const RestoredCheckpoint::Operator* mine = context.restored_part()) {
      call_user(name_, [&] { restore(*mine); });
    }
  }

  void push(RecordBatch<In>& batch) override {
    call_user(name_, [&] {
      for (const In& r : batch.values) {
        Parts& parts = windows_[{r.end, r.start}][r.key.key];
        const bool upsert = (r.key.salt & kUpsertBit) != 0;
        set_part(parts, r.key.salt & ~kUpsertBit, r.value);
        // A late update: re-fired by the first stage, or of a window that
        // fired here already (after a restore the marker's watermark is new).
        if (upsert || r.end - 1 <= watermark_) emit(r.key.key, r.start, r.end, parts);
      }
    });
    flush();
  }

  void watermark(Timestamp wm) override {
    if (wm <= watermark_) return;
    const Timestamp before = watermark_;
    watermark_ = wm;
    call_user(name_, [&] {
      for (auto it = windows_.begin(); it != windows_.end();) {
        const auto [end, start] = it->first;
        if (end - 1 > wm) break;  // ordered by end
        if (end - 1 > before) {
          for (const auto& [key, parts] : it->second) emit(key, start, end, parts);
        }
        if (saturating_add(end - 1, lateness_) <= wm) {
          it = windows_.erase(it);
        } else {
          ++it;
        }
      }
    });
    flush();
    out_->watermark(wm);
  }

  void watermark_status(bool idle) override { out_->watermark_status(idle); }

  void end() override {
    flush();
    out_->end();
  }

  // Checkpoint: the watermark, then per key group the open windows' parts.
  void barrier(std::int64_t id) override {
    flush();
    OperatorInstanceState& snap = context_->snapshot_of(id);
    context_->snapshot_step(id, [&] { call_user(name_, [&] { snapshot(snap); }); });
    out_->barrier(id);
  }

 private:
  using Parts = std::vector<std::pair<std::uint32_t, Acc>>;  // by salt
  struct Hash {
    std::size_t operator()(const K& k) const { return static_cast<std::size_t>(KeyHash<K>{}(k)); }
  };

  void set_part(Parts& parts, std::uint32_t salt, const Acc& acc) {
    auto it = parts.begin();
    while (it != parts.end() && it->first < salt) ++it;
    if (it != parts.end() && it->first == salt) {
      it->second = acc;
    } else {
      parts.emplace(it, salt, acc);
    }
  }

  void emit(const K& key, Timestamp start, Timestamp end, const Parts& parts) {
    Acc acc = agg_.create();
    for (const auto& [salt, part] : parts) agg_.merge(acc, part);
    out_batch_.push_back(Out{key, start, end, agg_.result(acc)}, end - 1);
    if (out_batch_.size() >= batch_size_) flush();
  }

  void flush() {
    if (out_batch_.empty()) return;
    results_->add(static_cast<std::int64_t>(out_batch_.size()));
    out_->push(out_batch_);
    out_batch_.clear();
  }

  void snapshot(OperatorInstanceState& snap) {
    snap.operator_state.clear();
    put_i64(&snap.operator_state, watermark_);
    if constexpr (HasCodec<K>::value && HasCodec<Acc>::value) {
      const int m = context_->max_parallelism();
      KeyGroupBytes bytes(context_->key_groups());
      for (const auto& [span, keys] : windows_) {
        for (const auto& [key, parts] : keys) {
          std::string& out = bytes[key_group_of(key, m)];
          encode_field<K, KeyCodec<K>>(key, &out);
          put_i64(&out, span.second);
          put_i64(&out, span.first);
          put_u64(&out, parts.size());
          for (const auto& [salt, acc] : parts) {
            put_u64(&out, salt);
            encode_field<Acc>(acc, &out);
          }
        }
      }
      bytes.move_into(snap);
    }
  }

  void restore(const RestoredCheckpoint::Operator& mine) {
    if (auto wm = restored_watermark(mine, name_)) watermark_ = *wm;
    if constexpr (HasCodec<K>::value && HasCodec<Acc>::value) {
      for_each_restored(mine, context_->key_groups(), [&](std::string_view in) {
        while (!in.empty()) {
          K key{};
          std::int64_t start = 0;
          std::int64_t end = 0;
          std::uint64_t n = 0;
          if (!decode_field<K, KeyCodec<K>>(&in, &key) || !get_i64(&in, &start) ||
              !get_i64(&in, &end) || !get_u64(&in, &n)) {
            throw_corrupt(name_, "its salted partial results");
          }
          Parts& parts = windows_[{end, start}][key];
          for (std::uint64_t i = 0; i < n; ++i) {
            std::uint64_t salt = 0;
            Acc acc = agg_.create();
            if (!get_u64(&in, &salt) || !decode_field<Acc>(&in, &acc)) {
              throw_corrupt(name_, "its salted partial results");
            }
            set_part(parts, static_cast<std::uint32_t>(salt), acc);
          }
        }
      });
    }
  }

  std::string name_;
  A agg_;
  std::int64_t lateness_;
  Collector<Out>* out_;
  OperatorContext* context_ = nullptr;
  Timestamp watermark_ = kMinTimestamp;
  std::size_t batch_size_ = 1024;
  // (end, start) -> key -> the latest accumulator of each salt.
  std::map<std::pair<Timestamp, Timestamp>, std::unordered_map<K, Parts, Hash>> windows_;
  RecordBatch<Out> out_batch_;
  Counter* results_ = nullptr;
};

}  // namespace detail
}  // namespace meterstream
