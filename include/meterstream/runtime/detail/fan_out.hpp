// Fan-out: one output port feeding several consumers on the same worker. Not
// API.
//
// A stream handle may be used by several steps (`readings.window(...)` and
// `readings.filter(...)`); each worker then gets one FanOut per such port,
// which hands every batch and every signal (watermark, idleness, end,
// checkpoint barrier) to each consumer in turn, by direct calls. Since the
// calls are synchronous and in order, every consumer sees exactly the
// sequence the producer emitted: each signal once, and a barrier after the
// records before it. A consumer that is an exchange sender may block on a
// full ring; it then works off later stages only (Worker::wait_for_space), so
// the fan-out, which is of the producer's stage, is never re-entered.
//
// Records are shared where possible. Collector::push() lets the callee modify
// the batch, so each consumer that may (filter, map, ...) needs its own copy,
// except the last one, which gets the producer's batch. Consumers that only
// read their input (OperatorInstance::reads_input_only(): window, keyed
// process, sinks, key_by senders of trivially copyable records) go first and
// all get the producer's batch. A fan-out to a window and a filter copies
// nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "meterstream/core/record_batch.hpp"
#include "meterstream/runtime/detail/graph.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream::detail {

template <typename T>
class FanOut final : public Collector<T>, public OperatorInstance {
 public:
  // `consumers` (at least two) in the order their steps were added.
  explicit FanOut(const std::vector<Collector<T>*>& consumers) {
    for (Collector<T>* c : consumers) {
      const auto* op = dynamic_cast<const OperatorInstance*>(c);
      (op != nullptr && op->reads_input_only() ? readers_ : writers_)
          .push_back(c);
    }
    // Signals keep the order the steps were added in.
    all_ = consumers;
  }

  bool reads_input_only() const override { return writers_.empty(); }

  void push(RecordBatch<T>& batch) override {
    for (Collector<T>* c : readers_) c->push(batch);
    if (writers_.empty()) return;
    for (std::size_t i = 0; i + 1 < writers_.size(); ++i) {
      // assign() keeps the copy's capacity: no allocation once warm.
      copy_.values.assign(batch.values.begin(), batch.values.end());
      copy_.timestamps.assign(batch.timestamps.begin(), batch.timestamps.end());
      writers_[i]->push(copy_);
    }
    writers_.back()->push(batch);
  }

  void watermark(Timestamp wm) override {
    for (Collector<T>* c : all_) c->watermark(wm);
  }
  void watermark_status(bool idle) override {
    for (Collector<T>* c : all_) c->watermark_status(idle);
  }
  void end() override {
    for (Collector<T>* c : all_) c->end();
  }
  void barrier(std::int64_t id) override {
    for (Collector<T>* c : all_) c->barrier(id);
  }

 private:
  std::vector<Collector<T>*> all_;
  std::vector<Collector<T>*> readers_;  // get the producer's batch
  std::vector<Collector<T>*>
      writers_;  // may modify it: copies, the last gets the original
  RecordBatch<T> copy_;
};

// Node::make_fan_out for records of type T: each of `consumers` takes T
// (checked by the runtime with check_wiring()).
template <typename T>
Port make_fan_out(Worker& worker, const std::vector<Port>& consumers) {
  std::vector<Collector<T>*> typed;
  typed.reserve(consumers.size());
  for (const Port& c : consumers) typed.push_back(c.get<T>());
  return Port(static_cast<Collector<T>*>(worker.add_operator(std::make_unique<FanOut<T>>(typed))));
}

}  // namespace meterstream::detail
