// Keyed process functions: per-key logic with state and timers (Flink's
// KeyedProcessFunction).
//
// A process function is any copyable class with
//
//   void process_element(const T& value, ms::ProcessContext<K, Out>& ctx);
//
// and, optionally,
//
//   void on_timer(ms::Timestamp time, ms::TimeDomain domain,
//                 ms::ProcessContext<K, Out>& ctx);
//
// used as keyed.process<Out>(MyFunction{}). Each worker has its own copy. State
// obtained from the context is scoped to the current key and lives in the
// job's state backend; timers are per key and time, deduplicated, and fire in
// time order: event-time timers when the watermark reaches them,
// processing-time timers when the wall clock does.
//
// Example: alert when a meter's voltage stays below 200 V for a minute.
//   struct SagAlert {
//     void process_element(const MeterReading& r, ms::ProcessContext<uint64_t, Alert>& ctx) {
//       auto since = ctx.value_state<int64_t>("sag-since");
//       if (r.voltage_dv >= 2000) { since.clear(); return; }
//       if (!since.value()) {
//         since.update(r.ts_ms);
//         ctx.register_event_time_timer(r.ts_ms + 60000);
//       }
//     }
//     void on_timer(ms::Timestamp t, ms::TimeDomain, ms::ProcessContext<uint64_t, Alert>& ctx) {
//       if (ctx.value_state<int64_t>("sag-since").value()) ctx.emit(Alert{ctx.key(), t});
//     }
//   };
//
// Thread-safety: called on one worker thread; never concurrently per instance.
#pragma once

#include <set>
#include <string>
#include <utility>

#include "meterstream/core/record_batch.hpp"
#include "meterstream/core/time.hpp"
#include "meterstream/state/state.hpp"

namespace meterstream {

namespace detail {
template <typename K, typename T, typename KeyFn, typename F, typename Out>
class KeyedProcessOp;

// Timers of one operator instance: (time, encoded key), ordered and unique.
using TimerSet = std::set<std::pair<Timestamp, std::string>>;
}  // namespace detail

template <typename K, typename Out>
class ProcessContext {
 public:
  // The key of the record or timer being processed.
  const K& key() const { return *key_; }
  // The record's timestamp, or the timer's time.
  Timestamp timestamp() const { return timestamp_; }
  Timestamp current_watermark() const { return watermark_; }
  Timestamp current_processing_time() const { return processing_time_now(); }

  // Emits `value` with timestamp() as its timestamp, or with `ts`.
  void emit(const Out& value) { out_->push_back(value, timestamp_); }
  void emit(const Out& value, Timestamp ts) { out_->push_back(value, ts); }

  // Calls on_timer(time, kEventTime) once the watermark reaches `time`.
  void register_event_time_timer(Timestamp time) { event_timers_->emplace(time, key_context_->key); }
  // Calls on_timer(time, kProcessingTime) once the wall clock reaches `time`.
  void register_processing_time_timer(Timestamp time) {
    processing_timers_->emplace(time, key_context_->key);
  }
  void delete_event_time_timer(Timestamp time) { event_timers_->erase({time, key_context_->key}); }
  void delete_processing_time_timer(Timestamp time) {
    processing_timers_->erase({time, key_context_->key});
  }

  // Keyed state of the current key, registered on first use under `name`.
  // Nothing throws: when the name is taken by a state of another kind, the
  // error is recorded (state/state.hpp, "Errors"), the handle returned does
  // nothing, and the job fails with the error, naming this operator, when
  // the call of user code returns.
  template <typename V>
  ValueState<V> value_state(std::string name) {
    return unwrap(make_value_state<V>(*store_, *key_context_, std::move(name)),
                  [&] { return ValueState<V>(store_, -1, key_context_); });
  }
  template <typename UK, typename UV>
  MapState<UK, UV> map_state(std::string name) {
    return unwrap(make_map_state<UK, UV>(*store_, *key_context_, std::move(name)),
                  [&] { return MapState<UK, UV>(store_, -1, key_context_); });
  }
  template <typename V>
  ListState<V> list_state(std::string name) {
    return unwrap(make_list_state<V>(*store_, *key_context_, std::move(name)),
                  [&] { return ListState<V>(store_, -1, key_context_); });
  }
  template <typename V, typename AggFn>
  AggregatingState<V, AggFn> aggregating_state(std::string name, AggFn fn = AggFn{}) {
    return unwrap(
        make_aggregating_state<V, AggFn>(*store_, *key_context_, std::move(name), fn),
        [&] { return AggregatingState<V, AggFn>(store_, -1, key_context_, std::move(fn)); });
  }

 private:
  template <typename, typename, typename, typename, typename>
  friend class detail::KeyedProcessOp;

  // The handle, or on error `unusable()`'s, with the error recorded in the
  // key context (so that every access through it does nothing).
  template <typename S, typename Unusable>
  S unwrap(StatusOr<S> s, Unusable&& unusable) {
    if (s.ok()) return *std::move(s);
    if (key_context_->error.ok()) key_context_->error = s.status();
    return unusable();
  }

  const K* key_ = nullptr;
  Timestamp timestamp_ = kMinTimestamp;
  Timestamp watermark_ = kMinTimestamp;
  RecordBatch<Out>* out_ = nullptr;
  KeyedStateStore* store_ = nullptr;
  const KeyContext* key_context_ = nullptr;
  detail::TimerSet* event_timers_ = nullptr;
  detail::TimerSet* processing_timers_ = nullptr;
};

}  // namespace meterstream
