// The time-window operator: tumbling and sliding windows (key_by + window +
// aggregate fused). Not API.
//
// The assigner says which windows a record falls in (assigners.hpp); the
// tables (window_tables.hpp) hold and spill them; a watermark fires the
// windows whose end - 1 it reached, oldest first.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/state/state_backend.hpp"
#include "meterstream/window/assigners.hpp"
#include "meterstream/window/detail/window_operator_base.hpp"
#include "meterstream/window/detail/window_snapshot.hpp"
#include "meterstream/window/detail/window_tables.hpp"

namespace meterstream::detail {

template <typename K, typename T, typename KeyFn, typename Assigner, typename A>
class TimeWindowOperator final : public WindowOperatorBase<K, T, A> {
  using Base = WindowOperatorBase<K, T, A>;
  using Acc = typename Base::Acc;
  using Tables = TimeWindowTables<K, A>;
  using Window = typename Tables::Window;
  using Format = typename Tables::Format;
  static_assert(!Assigner::kMerging, "TimeWindowOperator: use SessionWindowOperator");
  // The assigner gives each record exactly one window (tumbling).
  static constexpr bool kOneWindow =
      std::is_same_v<decltype(std::declval<const Assigner&>().assign(Timestamp{})), TimeWindow>;

 public:
  TimeWindowOperator(const OperatorIds& ids, KeyFn key_fn, A agg, Assigner assigner,
                     std::int64_t lateness, Collector<typename Base::Out>* out,
                     Collector<T>* late_out)
      : Base(ids, window_definition<A>(assigner), std::move(agg), lateness, out, late_out),
        key_fn_(std::move(key_fn)), assigner_(std::move(assigner)),
        tables_(&this->agg_, &this->name_) {}

  void push(RecordBatch<T>& batch) override {
    call_user(this->name_, [&] {
      if constexpr (kOneWindow) {
        push_one_window(batch);
      } else {
        for (std::size_t i = 0; i < batch.size(); ++i) {
          add_to_windows(batch.values[i], batch.timestamps[i]);
        }
      }
    });
    this->flush();  // re-fired results of late records
    this->flush_late();
    call_user(this->name_, [&] { tables_.spill_if_over_budget(); });  // user codecs
  }

  void open(OperatorContext& context) override {
    Base::open(context);
    tables_.set_key_groups(context.key_groups(), context.max_parallelism());
    std::size_t budget = 0;
    if constexpr (Tables::kSpillable) budget = context.operator_memory_share();
    // With a backend that keeps state in memory there is nothing to spill to.
    if (budget > 0) {
      auto store = context.state_backend()->open_keyed_store(this->uid_, context.key_groups(),
                                                            context.max_parallelism());
      if (!store.ok()) throw StatusError{store.status()};
      tables_.enable_spilling(*std::move(store), budget,
                              context.metrics().counter("window_spilled_bytes"));
    }
    if (context.checkpointing() && !Format::kRaw) require_codecs<K, Acc>(this->name_);
    if (const auto* mine = this->restored_part()) call_user(this->name_, [&] { restore(*mine); });
  }

  void watermark(Timestamp wm) override {
    if (wm <= this->watermark_) return;  // e.g. from before a restored watermark
    this->watermark_ = wm;
    last_ = nullptr;  // a cached window may have become late
    call_user(this->name_, [&] {
      auto& windows = tables_.windows();
      for (auto it = windows.begin(); it != windows.end();) {
        Window& w = *it->second;
        if (w.end - 1 > wm) break;  // windows are ordered by start, all of one size
        if (w.spilled && this->lateness_ == 0) {
          // One key group at a time: memory stays bounded.
          tables_.fire_spilled(w, [&](const K& key, const Acc& acc) {
            this->emit(key, w.start, w.end, acc);
          });
          w.fired = true;
        }
        if (w.spilled) tables_.unspill(w);
        if (!w.fired) {
          for (const auto& [key, acc] : w.table) this->emit(key, w.start, w.end, acc);
          w.fired = true;
        }
        if (this->is_late(w.end)) {
          tables_.remember_keys(w.table.size());
          it = windows.erase(it);
        } else {
          ++it;
        }
      }
    });
    this->forward_watermark(wm);
  }

 private:
  void snapshot_windows(std::int64_t id, OperatorInstanceState& snap) override {
    if constexpr (Format::kWritable) {
      std::string blob;
      tables_.snapshot(&snap.operator_state, &blob);
      snap.keyed.emplace_back(kAllKeyGroups, std::move(blob));
      if (KeyedStateStore* store = tables_.store()) {
        snapshot_store(*this->context_, id, *store, snap);
      }
    }
  }

  void restore(const RestoredCheckpoint::Operator& mine) {
    if constexpr (Format::kWritable) {
      for (const auto& [w, bytes] : mine.operator_states) {
        tables_.restore_fields(window_fields(bytes, this->name_));
      }
      auto it = mine.keyed.find(kAllKeyGroups);
      if (it != mine.keyed.end()) {
        for (const std::string& blob : it->second) {
          tables_.restore_blob(blob, [&](Timestamp start) { return assigner_.window_at(start); });
        }
      }
      if (!mine.stores.empty()) {
        if (tables_.store() == nullptr) {
          throw StatusError{absl::FailedPreconditionError(
              this->name_ + ": the checkpoint was taken with a state backend that spills "
                            "windows to disk (RocksDB); restore it with one")};
        }
        restore_stores(*tables_.store(), mine);
      }
    }
  }

  // Records of one window each, in two passes: find each record's window and
  // prefetch its hash slot, then add. The tables are far larger than the
  // caches (a slot per key and open window), so overlapping the misses of a
  // batch is most of the speed.
  void push_one_window(RecordBatch<T>& batch) {
    constexpr std::size_t kAhead = 16;
    const std::size_t n = batch.size();
    targets_.resize(n);
    keys_.resize(n);
    const auto late = [this](Timestamp end) { return this->is_late(end); };
    for (std::size_t i = 0; i < n; ++i) {
      const Timestamp ts = batch.timestamps[i];
      Window* w = last_;
      if (w == nullptr || ts < w->start || ts >= w->end) {
        w = tables_.find_or_create(assigner_.assign(ts), late);
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

  // A record of several windows (sliding): added to each that is not late.
  void add_to_windows(T& value, Timestamp ts) {
    bool any = false;
    const auto late = [this](Timestamp end) { return this->is_late(end); };
    for (const TimeWindow span : assigner_.assign(ts)) {
      Window* w = tables_.find_or_create(span, late);
      if (w != nullptr) {
        any = true;
        add(*w, std::invoke(key_fn_, static_cast<const T&>(value)), value);
      }
    }
    if (!any) this->late_record(value, ts);
  }

  void add(Window& w, const K& key, const T& value) {
    auto& entry = tables_.add(w, key, value);
    if (w.fired) this->emit(entry.first, w.start, w.end, entry.second);  // late update
  }

  KeyFn key_fn_;
  Assigner assigner_;
  Tables tables_;
  Window* last_ = nullptr;        // the window of the previous record
  std::vector<Window*> targets_;  // per record of a batch: its window, nullptr when late
  std::vector<K> keys_;
};

}  // namespace meterstream::detail
