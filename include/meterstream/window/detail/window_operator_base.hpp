// What the window operators (key_by + window + aggregate fused) share: output
// batching, the late side output, metrics, the checkpoint barrier and the
// check of a restored window definition. Not API.
//
// Lateness (Flink's semantics): a window [start, end) is late when
// end - 1 + allowed_lateness <= current watermark; a record whose windows are
// all late goes to the late side output (counted, never silently lost). A
// window fires when the watermark reaches end - 1; with allowed lateness it is
// kept until end - 1 + lateness, and a late record re-fires its key's result.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/window/aggregate.hpp"
#include "meterstream/window/detail/window_snapshot.hpp"

namespace meterstream::detail {

template <typename K, typename T, typename A>
class WindowOperatorBase : public Collector<T>, public OperatorInstance {
 public:
  using Acc = typename A::accumulator_type;
  using R = aggregate_result_t<A>;
  using Out = WindowResult<K, R>;

  WindowOperatorBase(const OperatorIds& ids, WindowDefinition definition, A agg,
                     std::int64_t lateness, Collector<Out>* out, Collector<T>* late_out)
      : uid_(ids.uid), name_(ids.name), definition_(std::move(definition)), agg_(std::move(agg)),
        lateness_(lateness), out_(out), late_out_(late_out) {}

  void open(OperatorContext& context) override {
    context_ = &context;
    batch_size_ = context.options().batch_size;
    results_ = context.metrics().counter("window_results");
    late_ = context.metrics().counter("window_late_records");
    op_results_ = context.metrics().counter(operator_metric("window_results", name_));
    op_late_ = context.metrics().counter(operator_metric("window_late_records", name_));
    watermark_gauge_ = context.metrics().gauge("window_watermark", GaugeMerge::kMin, kMinTimestamp);
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

  // Checkpoint: the watermark, the window definition and the windows' state
  // (window_snapshot.hpp), then the barrier goes on.
  void barrier(std::int64_t id) override {
    flush();
    flush_late();
    OperatorInstanceState& snap = context_->snapshot_of(id);
    snap.operator_state.clear();
    put_i64(&snap.operator_state, watermark_);
    put_window_definition(definition_, &snap.operator_state);
    context_->snapshot_step(id, [&] { call_user(name_, [&] { snapshot_windows(id, snap); }); });
    out_->barrier(id);
    if (late_out_ != nullptr) late_out_->barrier(id);
  }

 protected:
  // Writes the windows into `snap` (keyed bytes, operator_state after the
  // definition, store snapshots).
  virtual void snapshot_windows(std::int64_t id, OperatorInstanceState& snap) = 0;

  // The part of the restored checkpoint for this operator, or null; refuses
  // one written for another window definition and sets the restored
  // watermark.
  const RestoredCheckpoint::Operator* restored_part() {
    const RestoredCheckpoint::Operator* mine = context_->restored_part();
    if (mine == nullptr) return nullptr;
    check_window_definition(*mine, name_, definition_);
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
  WindowDefinition definition_;
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
  OperatorContext* context_ = nullptr;
};

}  // namespace meterstream::detail
