// Stateless operators of the DSL, chained by direct calls. Not API.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/source_head.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream {

namespace detail {
template <typename In, typename Out, typename F>
class FlatMapOp;
}  // namespace detail

// What flat_map's function emits into.
template <typename T>
class Emitter {
 public:
  explicit Emitter(RecordBatch<T>* out) : out_(out) {}
  // Emits `value` with the timestamp of the record being processed.
  void emit(const T& value) { out_->push_back(value, ts_); }
  void emit(T&& value) { out_->push_back(std::move(value), ts_); }

 private:
  template <typename, typename, typename>
  friend class detail::FlatMapOp;
  RecordBatch<T>* out_;
  Timestamp ts_ = kMinTimestamp;
};

namespace detail {

// Forwards event-time signals unchanged; operators that only transform records
// derive from it.
template <typename In, typename Out>
class ForwardingOp : public Collector<In>, public OperatorInstance {
 public:
  ForwardingOp(const OperatorIds& ids, Collector<Out>* out) : name_(ids.name), out_(out) {}
  void watermark(Timestamp wm) override { out_->watermark(wm); }
  void watermark_status(bool idle) override { out_->watermark_status(idle); }
  void end() override { out_->end(); }
  void barrier(std::int64_t id) override { out_->barrier(id); }

 protected:
  std::string name_;
  Collector<Out>* out_;
};

template <typename In, typename Out, typename F>
class MapOp final : public ForwardingOp<In, Out> {
 public:
  MapOp(const OperatorIds& ids, Collector<Out>* out, F f)
      : ForwardingOp<In, Out>(ids, out), f_(std::move(f)) {}

  void push(RecordBatch<In>& batch) override {
    out_batch_.clear();
    out_batch_.values.reserve(batch.size());
    call_user(this->name_, [&] {
      for (const In& v : batch.values) out_batch_.values.push_back(std::invoke(f_, v));
    });
    out_batch_.timestamps.swap(batch.timestamps);
    this->out_->push(out_batch_);
  }

 private:
  F f_;
  RecordBatch<Out> out_batch_;
};

template <typename T, typename F>
class FilterOp final : public ForwardingOp<T, T> {
 public:
  FilterOp(const OperatorIds& ids, Collector<T>* out, F f)
      : ForwardingOp<T, T>(ids, out), f_(std::move(f)) {}

  void push(RecordBatch<T>& batch) override {
    std::size_t kept = 0;
    call_user(this->name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (std::invoke(f_, static_cast<const T&>(batch.values[i]))) {
          if (kept != i) {
            batch.values[kept] = std::move(batch.values[i]);
            batch.timestamps[kept] = batch.timestamps[i];
          }
          ++kept;
        }
      }
    });
    batch.values.resize(kept);
    batch.timestamps.resize(kept);
    if (kept > 0) this->out_->push(batch);
  }

 private:
  F f_;
};

template <typename In, typename Out, typename F>
class FlatMapOp final : public ForwardingOp<In, Out> {
 public:
  FlatMapOp(const OperatorIds& ids, Collector<Out>* out, F f)
      : ForwardingOp<In, Out>(ids, out), f_(std::move(f)) {}

  void push(RecordBatch<In>& batch) override {
    out_batch_.clear();
    Emitter<Out> emitter(&out_batch_);
    call_user(this->name_, [&] {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        emitter.ts_ = batch.timestamps[i];
        std::invoke(f_, static_cast<const In&>(batch.values[i]), emitter);
      }
    });
    if (!out_batch_.empty()) this->out_->push(out_batch_);
  }

 private:
  F f_;
  RecordBatch<Out> out_batch_;
};

// with_watermarks() on a stream that is not a source: assigns timestamps and
// generates watermarks per operator instance. Upstream watermarks are replaced,
// except the final one (end of input), as in Flink.
template <typename T>
class WatermarkAssignerOp final : public Collector<T>, public OperatorInstance {
 public:
  WatermarkAssignerOp(const OperatorIds& ids, Collector<T>* out, EventTimeSpec<T> spec)
      : uid_(ids.uid), name_(ids.name), out_(out), spec_(std::move(spec)),
        generator_(spec_.strategy.bound_ms()) {}

  void push(RecordBatch<T>& batch) override {
    call_user(name_, [&] { spec_.assigner->assign(batch.values, batch.timestamps); });
    const auto every = static_cast<std::size_t>(spec_.strategy.emit_every());
    if (every == 0 || since_ + batch.size() < every) {
      for (Timestamp ts : batch.timestamps) generator_.on_event(ts);
      since_ += batch.size();
      out_->push(batch);
      return;
    }
    // Cut the batch where a watermark is due, so each record sees exactly the
    // watermarks emitted before it.
    std::size_t i = 0;
    while (i < batch.size()) {
      const std::size_t n = std::min(batch.size() - i, every - since_);
      part_.clear();
      for (std::size_t j = i; j < i + n; ++j) {
        generator_.on_event(batch.timestamps[j]);
        part_.push_back(std::move(batch.values[j]), batch.timestamps[j]);
      }
      out_->push(part_);
      since_ += n;
      i += n;
      if (since_ == every) {
        since_ = 0;
        emit(generator_.advance());
      }
    }
  }

  void open(OperatorContext& context) override {
    context_ = &context;
    const RestoredCheckpoint::Operator* mine = context.restored_part();
    if (mine == nullptr) return;
    // Per instance: restored when the same worker index existed before.
    auto it = mine->operator_states.find(context.worker_index());
    if (it == mine->operator_states.end()) return;
    std::string_view in = it->second;
    std::int64_t current = 0, max_ts = 0, since = 0, last = 0;
    if (!get_i64(&in, &current) || !get_i64(&in, &max_ts) || !get_i64(&in, &since) ||
        !get_i64(&in, &last)) {
      throw_corrupt(name_, "its generator");
    }
    generator_.reset(current, max_ts);
    since_ = static_cast<std::size_t>(since);
    last_ = last;
  }

  void watermark(Timestamp wm) override {
    if (wm == kMaxTimestamp) emit(wm);
  }
  void watermark_status(bool idle) override { out_->watermark_status(idle); }
  void end() override { out_->end(); }
  void barrier(std::int64_t id) override {
    std::string& state = context_->snapshot_of(id).operator_state;
    state.clear();
    put_i64(&state, generator_.current());
    put_i64(&state, generator_.max_timestamp());
    put_i64(&state, static_cast<std::int64_t>(since_));
    put_i64(&state, last_);
    out_->barrier(id);
  }

 private:
  void emit(Timestamp wm) {
    if (wm <= last_) return;
    last_ = wm;
    out_->watermark(wm);
  }

  std::string uid_;   // keys its state
  std::string name_;  // for errors
  Collector<T>* out_;
  OperatorContext* context_ = nullptr;
  EventTimeSpec<T> spec_;
  WatermarkGenerator generator_;
  RecordBatch<T> part_;
  std::size_t since_ = 0;
  Timestamp last_ = kMinTimestamp;
};

// The end of a chain: hands batches to a SinkWriter. At a checkpoint barrier
// the writer stages what it wrote (SinkWriter::prepare_commit()); the
// coordinator commits it once the checkpoint is durable. Without
// checkpoints, what a writer staged is committed at the end of input.
template <typename T>
class SinkOp final : public Collector<T>, public OperatorInstance {
 public:
  SinkOp(const OperatorIds& ids, std::unique_ptr<SinkWriter<T>> writer,
         std::shared_ptr<SinkBase> sink)
      : uid_(ids.uid), name_(ids.name), writer_(std::move(writer)), sink_(std::move(sink)) {}

  void open(OperatorContext& context) override {
    context_ = &context;
    last_barrier_ = context.restored_id();
    records_ = context.metrics().counter("sink_records");
    op_records_ = context.metrics().counter(operator_metric("sink_records", name_));
  }

  // SinkWriter::write() takes the batch const.
  bool reads_input_only() const override { return true; }

  void push(RecordBatch<T>& batch) override {
    Status s = call_user(name_, [&] { return writer_->write(batch); });
    if (!s.ok()) fail(s);
    records_->add(static_cast<std::int64_t>(batch.size()));
    op_records_->add(static_cast<std::int64_t>(batch.size()));
  }
  void watermark(Timestamp) override {}
  void watermark_status(bool) override {}
  void barrier(std::int64_t id) override {
    last_barrier_ = id;
    stage(id);
  }
  void end() override {
    if (closed_) return;
    closed_ = true;
    // The rest is staged for the checkpoint after the last barrier seen
    // (the job's final checkpoint, or one that other workers still take).
    const std::string prepared = stage(last_barrier_ + 1);
    if (!context_->checkpointing() && !prepared.empty()) {
      Status s = call_user(name_, [&] {
        Status p = sink_->persist({prepared});
        return p.ok() ? sink_->commit(CheckpointCommit(), {prepared}) : p;
      });
      if (!s.ok()) fail(s);
    }
    Status s = call_user(name_, [&] { return writer_->close(); });
    if (!s.ok()) fail(s);
  }

 private:
  std::string stage(std::int64_t epoch) {
    StatusOr<std::string> prepared =
        call_user(name_, [&] { return writer_->prepare_commit(epoch); });
    if (!prepared.ok()) fail(prepared.status());
    if (!prepared->empty() && context_->checkpointing()) {
      context_->add_prepared(epoch, SinkPrepared{uid_, *prepared});
    }
    return *std::move(prepared);
  }

  [[noreturn]] void fail(const Status& s) {
    throw StatusError{Status(s.code(), name_ + ": " + std::string(s.message()))};
  }

  std::string uid_;   // keys its staged output in checkpoints
  std::string name_;  // for errors
  std::unique_ptr<SinkWriter<T>> writer_;
  std::shared_ptr<SinkBase> sink_;
  OperatorContext* context_ = nullptr;
  Counter* records_ = nullptr;
  Counter* op_records_ = nullptr;  // labelled with the operator's name
  std::int64_t last_barrier_ = 0;
  bool closed_ = false;
};

}  // namespace detail
}  // namespace meterstream
