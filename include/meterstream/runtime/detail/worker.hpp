// The worker: one thread that runs one instance of every operator. Not API.
#pragma once

#include <atomic>
#include <map>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/core/time.hpp"
#include "meterstream/metrics/metrics.hpp"
#include "meterstream/checkpoint/detail/checkpoint_parts.hpp"
#include "meterstream/runtime/options.hpp"

namespace meterstream {
class StateBackend;
}

namespace meterstream::detail {

class Worker;

// How an operator instance is known: `uid` keys its state (checkpoint entries,
// state stores, RocksDB column families) and stays stable across pipeline
// changes when the user sets it; `name` is the label in errors, logs and
// metrics. From the plan's Node.
struct OperatorIds {
  std::string uid;   // Node::uid, e.g. "window-aggregate#4" or the user's .uid()
  std::string name;  // Node::name, e.g. "window(tumbling 1min).aggregate" or .name()
};

// The per-operator variant of job metric `metric`, labelled with the
// operator's name: window_results{operator="usage per minute"}.
inline std::string operator_metric(const std::string& metric, const std::string& name) {
  return metric + "{operator=\"" + name + "\"}";
}

// Thrown through operator frames to unwind a worker when the job is cancelled
// (another worker failed). Never escapes the runtime.
struct JobCancelled {};

// Thrown by operators for errors that are not user exceptions (a sink that
// failed, a source error); the worker turns it back into its Status.
struct StatusError {
  Status status;
};

// Lifecycle of an operator instance on a worker.
class OperatorInstance {
 public:
  virtual ~OperatorInstance() = default;
  // Called on the worker thread before any record.
  virtual void open(Worker& /*worker*/) {}
  // The earliest processing time at which on_processing_time() must be called;
  // kMaxTimestamp when none.
  virtual Timestamp next_processing_time() const { return kMaxTimestamp; }
  virtual void on_processing_time(Timestamp /*now*/) {}
  // For an instance that is also a Collector: true when push() leaves the
  // batch it is given unchanged and hands it to no collector that may change
  // it. A fan-out (fan_out.hpp) then gives it the producer's batch instead of
  // a copy. Default: false (Collector::push() may modify the batch).
  virtual bool reads_input_only() const { return false; }
};

// What a worker polls: a source instance or the receiving end of an exchange.
class StageHead : public OperatorInstance {
 public:
  // Does a bounded amount of work; true if it made progress.
  virtual bool poll(Worker& worker) = 0;
  virtual bool finished() const = 0;

  // Number of exchanges between the sources and this head. A worker blocked on
  // pushing from stage s only polls heads of later stages, so no operator is
  // re-entered.
  int stage = 0;
  // The newest checkpoint barrier this head has passed on (aligned and
  // forwarded; for a source, injected).
  std::int64_t last_barrier = 0;
};

// State shared by the workers of one run.
struct JobShared {
  explicit JobShared(const JobOptions& o) : options(o) {}
  JobOptions options;
  MetricRegistry metrics;
  std::shared_ptr<StateBackend> state_backend;
  int stateful_operators = 0;  // nodes that share the operator memory budget
  std::vector<KeyGroupRange> key_group_ranges;  // per worker
  std::vector<int> key_group_owner;             // per key group: its worker
  std::atomic<bool> cancelled{false};
  CheckpointHub* checkpoints = nullptr;          // null: checkpointing off
  const RestoredCheckpoint* restored = nullptr;  // null: started without state
  std::int64_t restored_id = 0;

  // Records the first error and cancels the job.
  void fail(Status status);
  // Hands `message` to options.log (if set; an exception it throws is dropped).
  void log(LogLevel level, std::string_view message) const;
  Status first_error() const;

 private:
  mutable std::mutex mu_;
  Status first_error_;
};

class Worker {
 public:
  Worker(JobShared& shared, int index, int parallelism);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();

  int index() const { return index_; }
  int parallelism() const { return parallelism_; }
  int max_parallelism() const { return shared_.options.max_parallelism; }
  KeyGroupRange key_groups() const { return key_groups_; }
  // The worker that owns `key_group` in this run.
  int owner_of(int key_group) const {
    return shared_.key_group_owner[static_cast<std::size_t>(key_group)];
  }
  const JobOptions& options() const { return shared_.options; }
  MetricRegistry& metrics() { return shared_.metrics; }
  StateBackend* state_backend() const { return shared_.state_backend.get(); }
  // This worker's share, for one stateful operator instance, of the state
  // backend's operator memory (StateBackend::operator_memory_bytes()): split
  // evenly over workers and stateful operators. 0 means unbounded (the state
  // is in memory anyway).
  std::size_t operator_memory_share() const;
  JobShared& shared() { return shared_; }

  // Takes ownership; instances are opened and closed in the order added.
  template <typename Op>
  Op* add_operator(std::unique_ptr<Op> op) {
    Op* raw = op.get();
    operators_.push_back(std::move(op));
    return raw;
  }
  // Takes ownership of a head: polled by the worker, opened like an operator.
  void add_head(std::unique_ptr<StageHead> head);

  // Called by an exchange sender of stage `stage` whose channel is full: does
  // other work of later stages meanwhile. Throws JobCancelled when cancelled.
  void wait_for_space(int stage);

  // Runs to end of input, cancellation or error. Records errors in shared().
  void run();

  // Checkpoints. Whether the job takes them.
  bool checkpointing() const { return shared_.checkpoints != nullptr; }
  // The newest barrier requested (0: none, or checkpointing off).
  std::int64_t checkpoint_requested() const {
    return shared_.checkpoints == nullptr
               ? 0
               : shared_.checkpoints->triggered.load(std::memory_order_acquire);
  }
  // What operators contribute to checkpoints, each to the checkpoint it
  // belongs to (`epoch`): at barrier N, N; after barrier N (a split that ends,
  // a sink's output staged at end of input), N + 1. A worker reports a
  // checkpoint with the contributions of its epoch and earlier ones only.
  //
  // The part that operator `op` fills at barrier `epoch`.
  OperatorInstanceState& snapshot_of(std::int64_t epoch, const std::string& op);
  // Records a split's position; a sink's staged output.
  void add_split_snapshot(std::int64_t epoch, SplitState split) {
    pending_[epoch].splits.push_back(std::move(split));
  }
  void add_prepared(std::int64_t epoch, SinkPrepared prepared) {
    pending_[epoch].prepared.push_back(std::move(prepared));
  }
  // Time spent passing a barrier through a head's operators (their snapshots).
  void add_sync_time(std::int64_t epoch, std::int64_t us) { pending_[epoch].sync_us += us; }
  // Runs `fn`, an operator's snapshot at barrier `epoch`; an error it throws
  // (StatusError) fails that checkpoint, not the job.
  template <typename F>
  void snapshot_step(std::int64_t epoch, F&& fn) {
    try {
      fn();
    } catch (const StatusError& e) {
      WorkerCheckpointPart& p = pending_[epoch];
      if (p.error.ok()) p.error = e.status;
    }
  }
  // A new local folder for operator `op`'s store snapshot of checkpoint `id`.
  std::string store_snapshot_dir(std::int64_t id, const std::string& op) const {
    return shared_.checkpoints->store_snapshot_dir(id, op, index_);
  }
  // The checkpoint the job restores, or null.
  const RestoredCheckpoint* restored() const { return shared_.restored; }
  // The checkpoint the job restores (0: none): where barrier ids continue.
  std::int64_t restored_id() const { return shared_.restored_id; }
  // This thread's index among the units that report to the coordinator.
  void set_checkpoint_unit(int unit) { unit_ = unit; }

 private:
  bool poll_heads(int min_stage_exclusive);
  void fire_processing_time();
  void maybe_report();

  JobShared& shared_;
  int index_;
  int parallelism_;
  KeyGroupRange key_groups_;
  std::vector<std::unique_ptr<OperatorInstance>> operators_;
  std::vector<StageHead*> heads_;  // owned by operators_; sorted by stage in run()
  std::int64_t idle_rounds_ = 0;
  std::int64_t blocked_rounds_ = 0;
  int unit_ = 0;
  std::int64_t reported_ = 0;
  std::map<std::int64_t, WorkerCheckpointPart> pending_;  // by epoch
};

}  // namespace meterstream::detail
