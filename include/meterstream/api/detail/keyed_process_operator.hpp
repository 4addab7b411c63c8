// The operator behind KeyedStream::process(). Not API.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "meterstream/api/process_function.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::detail {

template <typename F, typename K, typename Out, typename = void>
struct HasOnTimer : std::false_type {};
template <typename F, typename K, typename Out>
struct HasOnTimer<F, K, Out,
                  std::void_t<decltype(std::declval<F&>().on_timer(
                      Timestamp{}, TimeDomain::kEventTime, std::declval<ProcessContext<K, Out>&>()))>>
    : std::true_type {};

template <typename K, typename T, typename KeyFn, typename F, typename Out>
class KeyedProcessOp final : public Collector<T>, public OperatorInstance {
 public:
  KeyedProcessOp(const OperatorIds& ids, Collector<Out>* out, KeyFn key_fn, F fn)
      : uid_(ids.uid), name_(ids.name), out_(out), key_fn_(std::move(key_fn)), fn_(std::move(fn)) {}

  void open(OperatorContext& context) override {
    max_parallelism_ = context.max_parallelism();
    batch_size_ = context.options().batch_size;
    auto store = context.state_backend()->open_keyed_store(uid_, context.key_groups(),
                                                          max_parallelism_);
    if (!store.ok()) throw StatusError{store.status()};
    store_ = *std::move(store);
    ctx_.out_ = &out_batch_;
    ctx_.store_ = store_.get();
    ctx_.key_context_ = &key_context_;
    ctx_.event_timers_ = &event_timers_;
    ctx_.processing_timers_ = &processing_timers_;
    context_ = &context;
    if (const RestoredCheckpoint::Operator* mine = context.restored_part()) restore(*mine);
  }

  // Checkpoint: the store's snapshot, the timers per key group and the
  // watermark.
  void barrier(std::int64_t id) override {
    flush();
    OperatorInstanceState& snap = context_->snapshot_of(id);
    context_->snapshot_step(id, [&] { snapshot(id, snap); });
    out_->barrier(id);
  }

 private:
  void snapshot(std::int64_t id, OperatorInstanceState& snap) {
    snap.operator_state.clear();
    put_i64(&snap.operator_state, ctx_.watermark_);
    KeyGroupBytes blobs(context_->key_groups());
    for (TimerSet* timers : {&event_timers_, &processing_timers_}) {
      const char domain = timers == &event_timers_ ? 0 : 1;
      for (const auto& [time, key_bytes] : *timers) {
        K key{};
        if (!KeyCodec<K>::decode(key_bytes, &key)) {
          throw StatusError{absl::DataLossError(name_ + ": a timer's key does not decode")};
        }
        std::string& b = blobs[key_group_of(key, max_parallelism_)];
        b.push_back(domain);
        put_i64(&b, time);
        encode_field<std::string>(key_bytes, &b);
      }
    }
    blobs.move_into(snap);
    snapshot_store(*context_, id, *store_, snap);
  }

 public:
  // Records reach the process function as const references only.
  bool reads_input_only() const override { return true; }

  void push(RecordBatch<T>& batch) override {
    call_user(name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        key_ = std::invoke(key_fn_, static_cast<const T&>(batch.values[i]));
        set_current_key(key_context_, key_, max_parallelism_);
        ctx_.key_ = &key_;
        ctx_.timestamp_ = batch.timestamps[i];
        fn_.process_element(static_cast<const T&>(batch.values[i]), ctx_);
        check_state();
        if (out_batch_.size() >= batch_size_) flush();
      }
    });
    flush();
  }

  void watermark(Timestamp wm) override {
    if (wm <= ctx_.watermark_) return;  // e.g. from before a restored watermark
    ctx_.watermark_ = wm;
    store_->advance_event_time(wm);  // event-time TTL of the function's state
    // Expired state is never returned; removing it is a sweep, done at most
    // once every ten minutes of processing time (on RocksDB only a request:
    // its background threads flush and compact, never this one).
    const Timestamp now = processing_time_now();
    if (now - last_purge_ms_ >= kPurgeEveryMs) {
      last_purge_ms_ = now;
      Status s = store_->purge_expired();
      if (!s.ok()) throw StatusError{s};
    }
    fire(event_timers_, wm, TimeDomain::kEventTime);
    out_->watermark(wm);
  }
  void watermark_status(bool idle) override { out_->watermark_status(idle); }
  void end() override {
    flush();
    // Nothing fires after the end of input (its output could not be sent).
    processing_timers_.clear();
    out_->end();
  }

  Timestamp next_processing_time() const override {
    return processing_timers_.empty() ? kMaxTimestamp : processing_timers_.begin()->first;
  }
  void on_processing_time(Timestamp now) override {
    fire(processing_timers_, now, TimeDomain::kProcessingTime);
  }

 private:
  // State accessors record their errors instead of throwing through user
  // code (state/state.hpp): once the user function has returned, the first
  // one fails the job, naming this operator.
  void check_state() const {
    const Status& e = key_context_.error;
    if (!e.ok()) throw StatusError{Status(e.code(), name_ + ": " + std::string(e.message()))};
  }

  void fire(TimerSet& timers, Timestamp upto, TimeDomain domain) {
    call_user(name_, [&] {
      while (!timers.empty() && timers.begin()->first <= upto) {
        auto node = timers.extract(timers.begin());
        const Timestamp time = node.value().first;
        key_context_.key = std::move(node.value().second);
        if (!KeyCodec<K>::decode(key_context_.key, &key_)) {
          throw StatusError{absl::DataLossError(name_ + ": a timer's key does not decode")};
        }
        key_context_.key_group = key_group_of(key_, max_parallelism_);
        ctx_.key_ = &key_;
        ctx_.timestamp_ = time;
        if constexpr (HasOnTimer<F, K, Out>::value) fn_.on_timer(time, domain, ctx_);
        check_state();
        if (out_batch_.size() >= batch_size_) flush();
      }
    });
    flush();
  }

  void restore(const RestoredCheckpoint::Operator& mine) {
    restore_stores(*store_, mine);
    for_each_restored(mine, context_->key_groups(), [&](std::string_view in) {
      while (!in.empty()) {
        const char domain = in.front();
        in.remove_prefix(1);
        std::int64_t time = 0;
        std::string key;
        if (!get_i64(&in, &time) || !decode_field<std::string>(&in, &key)) {
          throw_corrupt(name_, "a timer");
        }
        (domain == 0 ? event_timers_ : processing_timers_).emplace(time, std::move(key));
      }
    });
    if (auto wm = restored_watermark(mine, name_)) {
      ctx_.watermark_ = *wm;
      store_->advance_event_time(*wm);
    }
  }

  void flush() {
    if (out_batch_.empty()) return;
    out_->push(out_batch_);
    out_batch_.clear();
  }

  std::string uid_;   // keys its state
  std::string name_;  // for errors
  Collector<Out>* out_;
  KeyFn key_fn_;
  F fn_;
  int max_parallelism_ = kDefaultMaxParallelism;
  std::size_t batch_size_ = 1024;
  static constexpr Timestamp kPurgeEveryMs = 600000;
  std::unique_ptr<KeyedStateStore> store_;
  OperatorContext* context_ = nullptr;
  Timestamp last_purge_ms_ = processing_time_now();
  KeyContext key_context_;
  K key_{};
  ProcessContext<K, Out> ctx_;
  RecordBatch<Out> out_batch_;
  TimerSet event_timers_;
  TimerSet processing_timers_;
};

}  // namespace meterstream::detail
