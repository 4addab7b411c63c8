// The session-window operator (key_by + window(session(gap)) + aggregate
// fused). Not API.
//
// Per key a short vector of sessions sorted by start; a record's window (the
// assigner's [ts, ts + gap)) merges with every session it touches
// (accumulators merged with AggregateFunction::merge), and a timer multimap
// end - 1 -> (key, end) fires them, one timer per session.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "meterstream/core/codec.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/window/assigners.hpp"
#include "meterstream/window/detail/window_operator_base.hpp"
#include "meterstream/window/detail/window_snapshot.hpp"

namespace meterstream::detail {

template <typename K, typename T, typename KeyFn, typename A>
class SessionWindowOperator final : public WindowOperatorBase<K, T, A> {
  using Base = WindowOperatorBase<K, T, A>;
  using Acc = typename Base::Acc;

 public:
  SessionWindowOperator(const OperatorIds& ids, KeyFn key_fn, A agg, SessionWindows assigner,
                        std::int64_t lateness, Collector<typename Base::Out>* out,
                        Collector<T>* late_out)
      : Base(ids, window_definition<A>(assigner), std::move(agg), lateness, out, late_out),
        key_fn_(std::move(key_fn)), assigner_(std::move(assigner)) {}

  void push(RecordBatch<T>& batch) override {
    call_user(this->name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) add(batch.values[i], batch.timestamps[i]);
    });
    this->flush();
    this->flush_late();
  }

  void open(OperatorContext& context) override {
    Base::open(context);
    if (context.checkpointing()) require_codecs<K, Acc>(this->name_);
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
    TimeWindow merged_span = assigner_.assign(ts);
    bool fired = false;
    // Sessions that touch the record's window merge with it (Flink's
    // TimeWindow.intersects); they are sorted and disjoint, so they are one
    // run, growing the merged window as it goes.
    auto first = std::find_if(sessions.begin(), sessions.end(),
                              [&](const Session& s) { return s.end >= merged_span.start; });
    auto last = first;
    while (last != sessions.end() && last->start <= merged_span.end) {
      merged_span = merged_span.cover(TimeWindow{last->start, last->end});
      fired |= last->fired;
      ++last;
    }
    if (this->is_late(merged_span.end)) {
      if (sessions.empty()) sessions_.erase(key);
      this->late_record(value, ts);
      return;
    }
    // A merged session that fired before and whose end the watermark has
    // passed is a late update: re-emitted now and kept for the lateness.
    // Otherwise it fires when the watermark reaches its (new) end.
    Session merged{merged_span.start, merged_span.end,
                   fired && merged_span.max_timestamp() <= this->watermark_, this->agg_.create(),
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

  using Format = SessionsFormat<K, Acc>;

  // Per key group: key, its sessions (window_snapshot.hpp). The timers follow
  // from the sessions.
  void snapshot_windows(std::int64_t, OperatorInstanceState& snap) override {
    if constexpr (Format::kWritable) {
      KeyGroupBytes blobs(this->context_->key_groups());
      for (const auto& [key, sessions] : sessions_) {
        std::string& b = blobs[key_group_of(key, this->context_->max_parallelism())];
        Format::put_key(&b, key, sessions.size());
        for (const Session& x : sessions) Format::put_session(&b, x.start, x.end, x.fired, x.acc);
      }
      blobs.move_into(snap);
    }
  }

  void restore(const RestoredCheckpoint::Operator& mine) {
    if constexpr (Format::kWritable) {
      for_each_restored(mine, this->context_->key_groups(), [&](std::string_view in) {
        while (!in.empty()) {
          K key{};
          std::uint64_t n = 0;
          if (!Format::get_key(&in, &key, &n)) this->corrupt("a session");
          std::vector<Session>& sessions = sessions_[key];
          for (std::uint64_t i = 0; i < n; ++i) {
            Session x{0, 0, false, Acc{}, timers_.end()};
            if (!Format::get_session(&in, &x.start, &x.end, &x.fired, &x.acc)) {
              this->corrupt("a session");
            }
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
  SessionWindows assigner_;
  absl::flat_hash_map<K, std::vector<Session>> sessions_;
  Timers timers_;
};

}  // namespace meterstream::detail
