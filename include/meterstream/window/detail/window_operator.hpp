// The window operators (key_by + window + aggregate fused). Not API.
//
// Time windows (tumbling, sliding) keep one hash table per open window, key ->
// accumulator, in an ordered map by window start: a record costs one hash
// lookup and one add; firing a window walks its table once and frees it.
// Session windows keep per key a short sorted list of sessions and a timer
// queue of their ends.
//
// Lateness (Flink's semantics): a window [start, end) is late when
// end - 1 + allowed_lateness <= current watermark; a record whose windows are
// all late goes to the late side output (counted, never silently lost). A
// window fires when the watermark reaches end - 1; with allowed lateness it is
// kept until end - 1 + lateness, and a late record re-fires its key's result.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/window/aggregate.hpp"
#include "meterstream/window/assigners.hpp"
#include "meterstream/window/detail/block_pool.hpp"

namespace meterstream::detail {

// Common parts: output batching, late side output, metrics.
template <typename K, typename T, typename A>
class WindowOperatorBase : public Collector<T>, public OperatorInstance {
 public:
  using Acc = typename A::accumulator_type;
  using R = aggregate_result_t<A>;
  using Out = WindowResult<K, R>;

  WindowOperatorBase(std::string name, A agg, std::int64_t lateness, Collector<Out>* out,
                     Collector<T>* late_out)
      : name_(std::move(name)), agg_(std::move(agg)), lateness_(lateness), out_(out),
        late_out_(late_out) {}

  void open(Worker& worker) override {
    batch_size_ = worker.options().batch_size;
    results_ = worker.metrics().counter("window_results");
    late_ = worker.metrics().counter("window_late_records");
    watermark_gauge_ = worker.metrics().gauge("window_watermark", GaugeMerge::kMin, kMinTimestamp);
  }

  void watermark_status(bool idle) override { out_->watermark_status(idle); }

  void end() override {
    flush();
    if (late_out_ != nullptr) late_out_->end();
    out_->end();
  }

 protected:
  void emit(const K& key, Timestamp start, Timestamp end, const Acc& acc) {
    out_batch_.push_back(Out{key, start, end, agg_.result(acc)}, end - 1);
    if (out_batch_.size() >= batch_size_) flush();
  }

  void flush() {
    if (out_batch_.empty()) return;
    results_->add(static_cast<std::int64_t>(out_batch_.size()));
    out_->push(out_batch_);
    out_batch_.clear();
  }

  void late_record(T& value, Timestamp ts) {
    late_->add();
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
    return window_end - 1 + lateness_ <= watermark_;
  }

  std::string name_;
  A agg_;
  std::int64_t lateness_;
  Collector<Out>* out_;
  Collector<T>* late_out_;
  Timestamp watermark_ = kMinTimestamp;
  std::size_t batch_size_ = 1024;
  RecordBatch<Out> out_batch_;
  RecordBatch<T> late_batch_;
  Counter* results_ = nullptr;
  Counter* late_ = nullptr;
  Gauge* watermark_gauge_ = nullptr;
};

// Tumbling and sliding windows.
template <typename K, typename T, typename KeyFn, typename A>
class TimeWindowOperator final : public WindowOperatorBase<K, T, A> {
  using Base = WindowOperatorBase<K, T, A>;
  using Acc = typename Base::Acc;

 public:
  TimeWindowOperator(std::string name, KeyFn key_fn, A agg, std::int64_t size, std::int64_t slide,
                     std::int64_t offset, std::int64_t lateness,
                     Collector<typename Base::Out>* out, Collector<T>* late_out)
      : Base(std::move(name), std::move(agg), lateness, out, late_out),
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
  }

  void watermark(Timestamp wm) override {
    this->watermark_ = wm;
    last_ = nullptr;  // a cached window may have become late
    call_user(this->name_, [&] {
      for (auto it = windows_.begin(); it != windows_.end();) {
        Window& w = *it->second;
        if (w.end - 1 > wm) break;  // windows are ordered by start, all of one size
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
  using Table = absl::flat_hash_map<K, Acc, absl::Hash<K>, std::equal_to<K>,
                                    PoolAllocator<std::pair<const K, Acc>>>;
  struct Window {
    explicit Window(const std::shared_ptr<BlockPool>& pool)
        : table(0, absl::Hash<K>(), std::equal_to<K>(),
                PoolAllocator<std::pair<const K, Acc>>(pool)) {}
    Timestamp start = 0;
    Timestamp end = 0;
    bool fired = false;
    Table table;
  };

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
    for (Timestamp start = last_start; start > ts - size_; start -= slide_) {
      Window* w = find_or_create(start);
      if (w == nullptr) continue;
      any = true;
      add(*w, std::invoke(key_fn_, static_cast<const T&>(value)), value);
    }
    if (!any) this->late_record(value, ts);
  }

  void add(Window& w, const K& key, const T& value) {
    auto [it, inserted] = w.table.try_emplace(key);
    if (inserted) it->second = this->agg_.create();
    this->agg_.add(it->second, value);
    if (w.fired) this->emit(it->first, w.start, w.end, it->second);  // late update
  }

  // The open window starting at `start`, created if needed; nullptr when late.
  Window* find_or_create(Timestamp start) {
    auto it = windows_.find(start);
    if (it != windows_.end()) return it->second.get();
    const Timestamp end = start + size_;
    if (this->is_late(end)) return nullptr;
    auto w = std::make_unique<Window>(pool_);
    w->start = start;
    w->end = end;
    // Windows of a stream hold about as many keys as the last one: sizing the
    // table up front saves its rehashes while it fills.
    w->table.reserve(expected_keys_);
    return windows_.emplace(start, std::move(w)).first->second.get();
  }

  KeyFn key_fn_;
  std::int64_t size_;
  std::int64_t slide_;
  std::int64_t offset_;
  std::shared_ptr<BlockPool> pool_ = std::make_shared<BlockPool>();  // before windows_
  std::map<Timestamp, std::unique_ptr<Window>> windows_;
  Window* last_ = nullptr;  // the window of the previous record
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
  SessionWindowOperator(std::string name, KeyFn key_fn, A agg, std::int64_t gap,
                        std::int64_t lateness, Collector<typename Base::Out>* out,
                        Collector<T>* late_out)
      : Base(std::move(name), std::move(agg), lateness, out, late_out),
        key_fn_(std::move(key_fn)), gap_(gap) {}

  void push(RecordBatch<T>& batch) override {
    call_user(this->name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) add(batch.values[i], batch.timestamps[i]);
    });
    this->flush();
    this->flush_late();
  }

  void watermark(Timestamp wm) override {
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
  struct Session {
    Timestamp start;
    Timestamp end;
    bool fired;
    Acc acc;
  };

  void add(T& value, Timestamp ts) {
    const K key = std::invoke(key_fn_, value);
    std::vector<Session>& sessions = sessions_[key];
    Timestamp start = ts;
    Timestamp end = ts + gap_;
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
    Session merged{start, end, fired, this->agg_.create()};
    for (auto it = first; it != last; ++it) this->agg_.merge(merged.acc, it->acc);
    this->agg_.add(merged.acc, value);
    auto pos = sessions.erase(first, last);
    pos = sessions.insert(pos, std::move(merged));
    if (pos->fired) {
      this->emit(key, pos->start, pos->end, pos->acc);  // late update of a fired session
    } else {
      timers_.emplace(pos->end - 1, std::make_pair(key, pos->end));
    }
  }

  void on_timer(const K& key, Timestamp end) {
    auto it = sessions_.find(key);
    if (it == sessions_.end()) return;
    std::vector<Session>& sessions = it->second;
    auto s = std::find_if(sessions.begin(), sessions.end(),
                          [&](const Session& x) { return x.end == end; });
    if (s == sessions.end()) return;  // merged away since
    if (!s->fired) {
      this->emit(key, s->start, s->end, s->acc);
      s->fired = true;
    }
    if (this->is_late(s->end)) {
      sessions.erase(s);
      if (sessions.empty()) sessions_.erase(it);
    } else {
      timers_.emplace(s->end - 1 + this->lateness_, std::make_pair(key, s->end));
    }
  }

  KeyFn key_fn_;
  std::int64_t gap_;
  absl::flat_hash_map<K, std::vector<Session>> sessions_;
  std::multimap<Timestamp, std::pair<K, Timestamp>> timers_;  // fire time -> (key, session end)
};

}  // namespace meterstream::detail
