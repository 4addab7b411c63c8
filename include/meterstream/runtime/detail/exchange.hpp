// Exchanges: repartitioning between workers over bounded SPSC rings. Not API.
//
// Every worker sends to every worker (itself included) over its own ring, so
// each ring has one producer and one consumer. A sender whose ring is full calls
// Worker::wait_for_space(), which works off later stages meanwhile: bounded
// rings give backpressure without deadlock. Watermarks, idleness and end of
// stream are broadcast in-band after the pending records, so every channel is
// FIFO; the receiver's watermark is the minimum over its live, active channels.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/core/record_batch.hpp"
#include "meterstream/runtime/detail/ring.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream::detail {

// The P x P rings of one exchange, shared by all workers. Each data ring has a
// twin flowing back that returns emptied batches to their sender, so that a
// running exchange allocates no memory.
template <typename T>
class ExchangeChannels {
 public:
  ExchangeChannels(int parallelism, std::size_t capacity) : parallelism_(parallelism) {
    rings_.reserve(static_cast<std::size_t>(parallelism) * parallelism);
    for (int i = 0; i < parallelism * parallelism; ++i) {
      rings_.push_back(std::make_unique<SpscRing>(capacity));
      free_.push_back(std::make_unique<SpscRing>(capacity));
    }
  }
  ExchangeChannels(const ExchangeChannels&) = delete;
  ExchangeChannels& operator=(const ExchangeChannels&) = delete;
  ~ExchangeChannels() {
    // Batches left in flight by a cancelled job.
    ChannelMessage m;
    for (auto* rings : {&rings_, &free_}) {
      for (auto& r : *rings) {
        while (r->try_pop(&m)) {
          if (m.kind == ChannelMessage::Kind::kBatch) delete static_cast<RecordBatch<T>*>(m.batch);
        }
      }
    }
  }

  int parallelism() const { return parallelism_; }
  SpscRing& ring(int from, int to) { return *rings_[index(from, to)]; }

  // An empty batch for the channel from -> to: a returned one, or a new one.
  std::unique_ptr<RecordBatch<T>> take_batch(int from, int to, std::size_t reserve) {
    ChannelMessage m;
    if (free_[index(from, to)]->try_pop(&m)) {
      return std::unique_ptr<RecordBatch<T>>(static_cast<RecordBatch<T>*>(m.batch));
    }
    auto batch = std::make_unique<RecordBatch<T>>();
    batch->reserve(reserve);
    return batch;
  }
  // Gives a consumed batch back to the sender of channel from -> to. Its
  // contents are left for the sender to overwrite.
  void return_batch(int from, int to, std::unique_ptr<RecordBatch<T>> batch) {
    if (free_[index(from, to)]->try_push(ChannelMessage{ChannelMessage::Kind::kBatch, 0, batch.get()})) {
      batch.release();
    }
  }

 private:
  std::size_t index(int from, int to) const {
    return static_cast<std::size_t>(from) * static_cast<std::size_t>(parallelism_) +
           static_cast<std::size_t>(to);
  }

  int parallelism_;
  std::vector<std::unique_ptr<SpscRing>> rings_;
  std::vector<std::unique_ptr<SpscRing>> free_;  // consumer -> sender, emptied batches
};

// The sending end on one worker. `Partition` maps a record to a worker index.
template <typename T, typename Partition>
class ExchangeSender final : public Collector<T>, public OperatorInstance {
 public:
  ExchangeSender(std::string name, std::shared_ptr<ExchangeChannels<T>> channels,
                 Partition partition, int stage)
      : name_(std::move(name)), channels_(std::move(channels)), partition_(std::move(partition)),
        stage_(stage) {}

  void open(OperatorContext& context) override {
    worker_ = &runtime_worker(context);
    batch_size_ = context.options().batch_size;
    pending_.resize(static_cast<std::size_t>(channels_->parallelism()));
  }

  // Trivially copyable records are copied into the outgoing batches; others
  // are moved out of the input.
  bool reads_input_only() const override { return kDirect; }

  void push(RecordBatch<T>& batch) override {
    // The partitioner calls the user's key function.
    call_user(name_, [&] { partition(batch); });
  }

  void partition(RecordBatch<T>& batch) {
    const std::size_t n = batch.size();
    for (std::size_t i = 0; i < n; ++i) {
      const int dest = partition_(batch.values[i]);
      Pending& p = pending_[static_cast<std::size_t>(dest)];
      if (!p.batch) start(dest);
      if constexpr (kDirect) {
        // Plain stores into a batch sized up front: this loop is the sending
        // worker's hottest after the window operator's (vector::push_back
        // was not inlined at -O2 and cost 5% of Q1).
        p.values[p.count] = batch.values[i];
        p.timestamps[p.count] = batch.timestamps[i];
      } else {
        p.batch->values.push_back(std::move(batch.values[i]));
        p.batch->timestamps.push_back(batch.timestamps[i]);
      }
      if (++p.count == batch_size_) flush(dest);
    }
  }

  void watermark(Timestamp wm) override {
    if (wm <= last_watermark_) return;
    last_watermark_ = wm;
    broadcast(ChannelMessage{ChannelMessage::Kind::kWatermark, wm, nullptr});
  }

  void watermark_status(bool idle) override {
    broadcast(ChannelMessage{ChannelMessage::Kind::kStatus, idle ? 1 : 0, nullptr});
  }

  void end() override { broadcast(ChannelMessage{ChannelMessage::Kind::kEnd, 0, nullptr}); }

  void barrier(std::int64_t id) override {
    broadcast(ChannelMessage{ChannelMessage::Kind::kBarrier, id, nullptr});
  }

 private:
  // Records that are trivially copyable are stored by index into a batch
  // sized up front; others are appended.
  static constexpr bool kDirect =
      std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>;

  struct Pending {
    std::unique_ptr<RecordBatch<T>> batch;
    T* values = nullptr;
    Timestamp* timestamps = nullptr;
    std::size_t count = 0;
  };

  void start(int dest) {
    Pending& p = pending_[static_cast<std::size_t>(dest)];
    p.batch = channels_->take_batch(worker_->index(), dest, batch_size_);
    p.count = 0;
    if constexpr (kDirect) {
      p.batch->values.resize(batch_size_);
      p.batch->timestamps.resize(batch_size_);
      p.values = p.batch->values.data();
      p.timestamps = p.batch->timestamps.data();
    } else {
      p.batch->clear();
    }
  }

  void flush(int dest) {
    Pending& p = pending_[static_cast<std::size_t>(dest)];
    if (!p.batch || p.count == 0) return;
    p.batch->values.resize(p.count);
    p.batch->timestamps.resize(p.count);
    send(dest, ChannelMessage{ChannelMessage::Kind::kBatch, 0, p.batch.get()});
    p.batch.release();  // now owned by the message
  }

  void broadcast(const ChannelMessage& m) {
    for (int d = 0; d < channels_->parallelism(); ++d) {
      flush(d);
      send(d, m);
    }
  }

  void send(int dest, const ChannelMessage& m) {
    SpscRing& ring = channels_->ring(worker_->index(), dest);
    while (!ring.try_push(m)) worker_->wait_for_space(stage_);
  }

  std::string name_;
  std::shared_ptr<ExchangeChannels<T>> channels_;
  Partition partition_;
  int stage_;
  Worker* worker_ = nullptr;
  std::size_t batch_size_ = 1024;
  std::vector<Pending> pending_;
  Timestamp last_watermark_ = kMinTimestamp;
};

// The receiving end on one worker: merges the channels from every worker.
//
// Checkpoint barriers are aligned: once barrier N has come on a channel, that
// channel is not read until N has come on every live channel (an ended
// channel counts as arrived); then N is forwarded downstream. The records
// behind the barrier wait in their ring, and a full ring makes its sender
// wait (backpressure) while the channels still owing N drain: no deadlock,
// since every record those need to pass is ahead of their barrier.
template <typename T>
class InputGate final : public StageHead {
 public:
  // `senders[c]` false: channel c can never carry records; it counts as ended
  // from the start (its own end-of-stream is then ignored).
  InputGate(std::shared_ptr<ExchangeChannels<T>> channels, int worker, Collector<T>* downstream,
            const std::vector<bool>& senders)
      : channels_(std::move(channels)),
        worker_(worker),
        downstream_(downstream),
        inputs_(static_cast<std::size_t>(channels_->parallelism())),
        live_(channels_->parallelism()) {
    for (std::size_t c = 0; c < inputs_.size(); ++c) {
      if (!senders[c]) {
        inputs_[c].ended = true;
        inputs_[c].silent = true;
        --live_;
      }
    }
  }

  bool finished() const override { return finished_; }

  void open(OperatorContext& context) override {
    context_ = &context;
    last_barrier = context.restored_id();
    aligning_ = last_barrier;
  }

  bool poll() override {
    bool progressed = false;
    const int p = channels_->parallelism();
    for (int c = 0; c < p && !finished_; ++c) {
      SpscRing& ring = channels_->ring(c, worker_);
      ChannelMessage m;
      // A bounded number per channel keeps the worker fair to other heads.
      for (int k = 0; k < 16 && !inputs_[static_cast<std::size_t>(c)].at_barrier &&
                      ring.try_pop(&m);
           ++k) {
        progressed = true;
        handle(c, m);
        if (finished_) break;
      }
    }
    return progressed;
  }

 private:
  struct Input {
    Timestamp watermark = kMinTimestamp;
    bool idle = false;
    bool ended = false;
    bool silent = false;  // never carries records: its signals are ignored
    bool at_barrier = false;  // barrier `aligning_` came: not read until aligned
  };

  void handle(int c, const ChannelMessage& m) {
    Input& in = inputs_[static_cast<std::size_t>(c)];
    if (in.silent) {
      if (m.kind == ChannelMessage::Kind::kEnd) silent_ended_ += 1;
      if (silent_ended_ == silent_count() && live_ == 0) finish();
      return;
    }
    switch (m.kind) {
      case ChannelMessage::Kind::kBatch: {
        std::unique_ptr<RecordBatch<T>> batch(static_cast<RecordBatch<T>*>(m.batch));
        if (idle_out_) set_idle(false);
        downstream_->push(*batch);
        channels_->return_batch(c, worker_, std::move(batch));
        break;
      }
      case ChannelMessage::Kind::kWatermark:
        in.watermark = std::max(in.watermark, m.value);
        update_watermark();
        break;
      case ChannelMessage::Kind::kStatus:
        in.idle = m.value != 0;
        update_watermark();
        break;
      case ChannelMessage::Kind::kEnd:
        in.ended = true;
        --live_;
        update_watermark();
        if (aligning_ > last_barrier) try_align();
        if (live_ == 0 && silent_ended_ == silent_count()) finish();
        break;
      case ChannelMessage::Kind::kBarrier:
        if (m.value <= last_barrier) break;  // (cannot happen: one checkpoint at a time)
        aligning_ = m.value;
        in.at_barrier = true;
        try_align();
        break;
    }
  }

  // Forwards barrier aligning_ once it came on every live channel.
  void try_align() {
    for (const Input& in : inputs_) {
      if (!in.ended && !in.at_barrier) return;
    }
    for (Input& in : inputs_) in.at_barrier = false;
    last_barrier = aligning_;
    const Timestamp t0 = steady_micros();
    downstream_->barrier(aligning_);
    context_->add_sync_time(aligning_, steady_micros() - t0);
  }

  int silent_count() const {
    return static_cast<int>(std::count_if(inputs_.begin(), inputs_.end(),
                                          [](const Input& in) { return in.silent; }));
  }

  // Every channel ended (silent ones included, so no message is left in a ring).
  void finish() {
    if (watermark_out_ < kMaxTimestamp) {
      watermark_out_ = kMaxTimestamp;
      downstream_->watermark(kMaxTimestamp);
    }
    downstream_->end();
    finished_ = true;
  }

  // The output watermark is the minimum over channels that are neither ended
  // nor idle; when every live channel is idle the output is idle.
  void update_watermark() {
    Timestamp min = kMaxTimestamp;
    bool any_active = false;
    for (const Input& in : inputs_) {
      if (in.ended || in.idle) continue;
      any_active = true;
      min = std::min(min, in.watermark);
    }
    if (!any_active) {
      if (live_ > 0 && !idle_out_) set_idle(true);
      return;
    }
    if (idle_out_) set_idle(false);
    if (min > watermark_out_) {
      watermark_out_ = min;
      downstream_->watermark(min);
    }
  }

  void set_idle(bool idle) {
    idle_out_ = idle;
    downstream_->watermark_status(idle);
  }

  std::shared_ptr<ExchangeChannels<T>> channels_;
  int worker_;
  Collector<T>* downstream_;
  std::vector<Input> inputs_;
  int live_;
  int silent_ended_ = 0;
  std::int64_t aligning_ = 0;
  OperatorContext* context_ = nullptr;
  Timestamp watermark_out_ = kMinTimestamp;
  bool idle_out_ = false;
  bool finished_ = false;
};

}  // namespace meterstream::detail
