// The instance of a source on one worker: reads its splits, assigns timestamps
// and generates watermarks per split. Not API.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/user_call.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/time/watermark_strategy.hpp"

namespace meterstream::detail {

// Extracts event timestamps from a batch of values (one virtual call per batch).
template <typename T>
class TimestampAssigner {
 public:
  virtual ~TimestampAssigner() = default;
  virtual void assign(const std::vector<T>& values, std::vector<Timestamp>& out) const = 0;
};

// Whether F (a pointer to member or a callable of const T&) gives a
// timestamp: an integral number of milliseconds (bool excluded).
template <typename F, typename T, typename = void>
struct IsTimestampFn : std::false_type {};
template <typename F, typename T>
struct IsTimestampFn<F, T, std::enable_if_t<std::is_invocable_v<const F&, const T&>>> {
  using R = std::decay_t<std::invoke_result_t<const F&, const T&>>;
  static constexpr bool value = std::is_integral_v<R> && !std::is_same_v<R, bool>;
};
template <typename F, typename T>
inline constexpr bool is_timestamp_fn_v = IsTimestampFn<F, T>::value;

template <typename T, typename F>
class FnTimestampAssigner final : public TimestampAssigner<T> {
 public:
  explicit FnTimestampAssigner(F f) : f_(std::move(f)) {}
  void assign(const std::vector<T>& values, std::vector<Timestamp>& out) const override {
    out.resize(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      out[i] = static_cast<Timestamp>(std::invoke(f_, values[i]));
    }
  }

 private:
  F f_;
};

// Event time of a stream: how timestamps are read and watermarks made.
template <typename T>
struct EventTimeSpec {
  WatermarkStrategy strategy;
  std::shared_ptr<const TimestampAssigner<T>> assigner;
};

// Whether `reader`, ended in checkpoint `r` at `snap`, reads on after the
// restore: only from a checkpoint that is not the final one (a job restored
// from its final checkpoint ends at once), and only when its position was
// recorded at its end.
template <typename T>
bool resumes(const RestoredCheckpoint& r, const SplitState& snap, const SplitReader<T>& reader) {
  return !r.final && snap.ended && !snap.position.empty() && reader.resumes_after_end();
}

template <typename T>
class SourceHead final : public StageHead {
 public:
  // `node` names the source in checkpoints; `split_ids[i]` is splits[i]'s
  // index among the source's splits.
  SourceHead(std::string name, std::string node,
             std::vector<std::unique_ptr<SplitReader<T>>> splits, std::vector<int> split_ids,
             std::optional<EventTimeSpec<T>> event_time, Collector<T>* downstream,
             Collector<std::string>* undecodable_out)
      : name_(std::move(name)),
        node_(std::move(node)),
        event_time_(std::move(event_time)),
        downstream_(downstream),
        undecodable_out_(undecodable_out) {
    const std::int64_t bound = event_time_ ? event_time_->strategy.bound_ms() : 0;
    for (std::size_t i = 0; i < splits.size(); ++i) {
      splits_.push_back(Split{std::move(splits[i]), WatermarkGenerator(bound)});
      splits_.back().id = split_ids[i];
    }
  }

  void open(OperatorContext& context) override {
    context_ = &context;
    last_barrier = context.restored_id();
    if (const RestoredCheckpoint* r = context.restored()) restore(*r);
    batch_size_ = context.options().batch_size;
    records_ = context.metrics().counter("source_records");
    op_records_ = context.metrics().counter(operator_metric("source_records", name_));
    undecodable_count_ = context.metrics().counter("source_undecodable");
    watermark_gauge_ = context.metrics().gauge("source_watermark", GaugeMerge::kMin, kMinTimestamp);
    const Timestamp now = processing_time_now();
    for (auto& s : splits_) s.last_data_ms = now;
  }

  bool finished() const override { return finished_; }

  bool poll() override {
    if (finished_) return false;
    bool progressed = false;
    if (!started_) {
      started_ = true;
      update_watermark();  // a restored watermark holds from the first record on
    }
    const std::int64_t requested = context_->checkpoint_requested();
    if (requested > last_barrier) inject_barrier(requested);
    // One read of each live split per poll keeps splits and other heads fair.
    for (std::size_t i = 0; i < splits_.size(); ++i) {
      if (!splits_[i].ended) progressed |= poll_split(splits_[i]);
    }
    // A source instance without splits ends at once: it holds back no watermark.
    if (std::all_of(splits_.begin(), splits_.end(), [](const Split& s) { return s.ended; })) {
      finish();
      progressed = true;
    }
    return progressed;
  }

 private:
  struct Split {
    std::unique_ptr<SplitReader<T>> reader;
    WatermarkGenerator generator;
    int id = 0;
    std::int64_t since_watermark = 0;
    Timestamp watermark = kMinTimestamp;
    Timestamp last_data_ms = 0;
    bool idle = false;
    bool ended = false;
    // The position at the end, kept for the checkpoints after it: a Kafka
    // source commits the ended partition's offsets from it (consumer lag,
    // the transactional sink's offset commit). Empty when the reader could
    // not say. A restore seeks an ended split only when it resumes after
    // its end (resumes()).
    std::string end_position = {};
  };

  bool poll_split(Split& s) {
    std::size_t max = batch_size_;
    const std::int64_t every = event_time_ ? event_time_->strategy.emit_every() : 0;
    if (every > 0) max = std::min<std::size_t>(max, static_cast<std::size_t>(every - s.since_watermark));
    batch_.clear();
    undecodable_.clear();
    StatusOr<typename SplitReader<T>::Poll> r = s.reader->poll(batch_.values, max, undecodable_);
    if (!r.ok()) {
      throw StatusError{Status(r.status().code(), "source '" + name_ + "', split '" +
                                                      s.reader->name() + "': " +
                                                      std::string(r.status().message()))};
    }
    if (!undecodable_.empty()) emit_undecodable();
    const bool got_data = !batch_.values.empty();
    if (got_data) {
      if (event_time_) {
        call_user(name_, [&] { event_time_->assigner->assign(batch_.values, batch_.timestamps); });
        for (Timestamp ts : batch_.timestamps) s.generator.on_event(ts);
      } else {
        batch_.timestamps.assign(batch_.values.size(), kMinTimestamp);
      }
      records_->add(static_cast<std::int64_t>(batch_.size()));
      op_records_->add(static_cast<std::int64_t>(batch_.size()));
      s.since_watermark += static_cast<std::int64_t>(batch_.size());
      s.last_data_ms = processing_time_now();
      if (s.idle) set_split_idle(s, false);
      downstream_->push(batch_);
    }
    switch (*r) {
      case SplitReader<T>::Poll::kEnd:
        // The watermark owed after an E-th record is emitted even when that
        // record is the split's last.
        if (every > 0 && s.since_watermark >= every) advance_split(s);
        s.ended = true;
        if (StatusOr<std::string> pos = s.reader->position(); pos.ok()) {
          s.end_position = *std::move(pos);
        }
        s.watermark = kMaxTimestamp;
        update_watermark();
        return true;
      case SplitReader<T>::Poll::kNoDataNow:
        // A live split that has nothing now: publish what it knows (unless
        // the strategy emits on the record count alone), and go idle after
        // the idleness timeout, publishing first the watermark of the
        // records since its last one (idleness depends on timing anyway;
        // without this they would hold no window back only while another
        // split is active, and none at all once every split is idle).
        if (event_time_) {
          const bool emit_now = event_time_->strategy.emit_on_no_data();
          if (emit_now) advance_split(s);
          const std::int64_t timeout = event_time_->strategy.idle_timeout_ms();
          if (!s.idle && timeout > 0 && processing_time_now() - s.last_data_ms >= timeout) {
            if (!emit_now) advance_split(s);
            set_split_idle(s, true);
          }
        }
        return got_data;
      case SplitReader<T>::Poll::kMore:
        if (every > 0 && s.since_watermark >= every) advance_split(s);
        return true;
    }
    return got_data;
  }

  SplitState split_snapshot(const Split& s) const {
    SplitState out;
    out.source = node_;
    out.split = s.id;
    out.ended = s.ended;
    out.watermark = s.generator.current();
    out.max_timestamp = s.generator.max_timestamp();
    out.since_watermark = s.since_watermark;
    if (!s.ended || s.reader->resumes_after_end()) {
      StatusOr<std::string> pos = s.reader->position();
      if (!pos.ok()) {
        throw StatusError{Status(pos.status().code(), "source '" + name_ + "': " +
                                                          std::string(pos.status().message()))};
      }
      out.position = *std::move(pos);
    } else {
      out.position = s.end_position;
    }
    return out;
  }

  // Records every split's position, then sends barrier `id` after the
  // records read so far.
  void inject_barrier(std::int64_t id) {
    for (const Split& s : splits_) context_->add_split_state(id, split_snapshot(s));
    last_barrier = id;
    const Timestamp t0 = steady_micros();
    downstream_->barrier(id);
    if (undecodable_out_ != nullptr) undecodable_out_->barrier(id);
    context_->add_sync_time(id, steady_micros() - t0);
  }

  // Positions were applied by seek() when the splits were made; here the
  // watermark generators and cadence come back.
  void restore(const RestoredCheckpoint& r) {
    for (Split& s : splits_) {
      auto it = r.splits.find({node_, s.id});
      if (it == r.splits.end()) continue;
      const SplitState& snap = it->second;
      s.generator.reset(snap.watermark, snap.max_timestamp);
      s.since_watermark = snap.since_watermark;
      // An ended split whose end is found anew at each start reads on (see
      // SplitReader::resumes_after_end(); SourceNode::restore() sought it).
      s.ended = snap.ended && !resumes(r, snap, *s.reader);
      s.watermark = s.ended ? kMaxTimestamp : snap.watermark;
      if (s.ended) s.end_position = snap.position;
    }
  }

  void advance_split(Split& s) {
    s.since_watermark = 0;
    s.watermark = s.generator.advance();
    update_watermark();
  }

  void set_split_idle(Split& s, bool idle) {
    s.idle = idle;
    const bool all_idle = std::all_of(splits_.begin(), splits_.end(),
                                      [](const Split& x) { return x.ended || x.idle; });
    if (all_idle != idle_out_) {
      idle_out_ = all_idle;
      downstream_->watermark_status(all_idle);
    }
    update_watermark();
  }

  // The instance's watermark: the minimum over its live, active splits.
  void update_watermark() {
    Timestamp min = kMaxTimestamp;
    bool any = false;
    for (const Split& s : splits_) {
      if (s.ended || s.idle) continue;
      any = true;
      min = std::min(min, s.watermark);
    }
    if (!any) {
      // All ended (the end is handled by finish()) or all idle.
      return;
    }
    emit_watermark(min);
  }

  void emit_watermark(Timestamp wm) {
    if (wm <= watermark_out_) return;
    watermark_out_ = wm;
    watermark_gauge_->set(wm);
    downstream_->watermark(wm);
  }

  void emit_undecodable() {
    undecodable_count_->add(static_cast<std::int64_t>(undecodable_.size()));
    if (undecodable_out_ == nullptr) return;  // counted; no side output consumer
    RecordBatch<std::string> out;
    out.values = std::move(undecodable_);
    out.timestamps.assign(out.values.size(), kMinTimestamp);
    undecodable_out_->push(out);
    undecodable_.clear();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    if (context_->checkpointing()) {
      // After the last barrier this head passed: part of the next checkpoint.
      for (const Split& s : splits_) {
        context_->add_split_state(last_barrier + 1, split_snapshot(s));
      }
    }
    emit_watermark(kMaxTimestamp);
    downstream_->end();
    if (undecodable_out_ != nullptr) {
      undecodable_out_->watermark(kMaxTimestamp);
      undecodable_out_->end();
    }
  }

  std::string name_;
  std::string node_;
  OperatorContext* context_ = nullptr;
  bool started_ = false;
  std::optional<EventTimeSpec<T>> event_time_;
  Collector<T>* downstream_;
  Collector<std::string>* undecodable_out_;
  std::vector<Split> splits_;
  RecordBatch<T> batch_;
  std::vector<std::string> undecodable_;
  std::size_t batch_size_ = 1024;
  Timestamp watermark_out_ = kMinTimestamp;
  bool idle_out_ = false;
  bool finished_ = false;
  Counter* records_ = nullptr;
  Counter* op_records_ = nullptr;  // labelled with the source's name
  Counter* undecodable_count_ = nullptr;
  Gauge* watermark_gauge_ = nullptr;
};

}  // namespace meterstream::detail
