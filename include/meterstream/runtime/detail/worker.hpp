// The worker: one thread that runs one instance of every operator, and what
// the workers of one job attempt share. Private to the runtime: operators see
// their OperatorContext (operator_context.hpp) only. Not API.
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
#include "meterstream/runtime/detail/operator_context.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/options.hpp"

namespace meterstream {
class StateBackend;
}

namespace meterstream::detail {

// What the workers of one job attempt share: options, metrics, the state
// backend, key-group ownership, cancellation and the checkpoint hub. Owned by
// the attempt (JobAttempt, src/runtime/job.cpp).
struct WorkerShared {
  explicit WorkerShared(const JobOptions& o) : options(o) {}
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
  Worker(WorkerShared& shared, int index, int parallelism);
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
  WorkerShared& shared() { return shared_; }
  // The job's checkpoint hub, where it will be (set before workers run).
  CheckpointHub* const* checkpoint_hub() const { return &shared_.checkpoints; }

  // Takes ownership; instances are opened and closed in the order added.
  // `ids`: the operator's, for its OperatorContext (empty for the runtime's
  // own instances).
  template <typename Op>
  Op* add_operator(std::unique_ptr<Op> op, OperatorIds ids = {}) {
    Op* raw = op.get();
    add_instance(std::move(op), std::move(ids));
    return raw;
  }
  // Takes ownership of a head: polled by the worker, opened like an operator.
  void add_head(std::unique_ptr<StageHead> head, OperatorIds ids = {});

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
  void add_split_state(std::int64_t epoch, SplitState split) {
    pending_[epoch].splits.push_back(std::move(split));
  }
  void add_prepared(std::int64_t epoch, SinkPrepared prepared) {
    pending_[epoch].prepared.push_back(std::move(prepared));
  }
  // Time spent passing a barrier through a head's operators (their snapshots).
  void add_sync_time(std::int64_t epoch, std::int64_t us) { pending_[epoch].sync_us += us; }
  // Fails checkpoint `epoch` with `status`, an operator's snapshot error
  // (the first one is kept), not the job.
  void fail_checkpoint(std::int64_t epoch, Status status) {
    WorkerCheckpointPart& p = pending_[epoch];
    if (p.error.ok()) p.error = std::move(status);
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
  struct Instance {
    std::unique_ptr<OperatorInstance> op;
    std::unique_ptr<OperatorContext> context;
  };
  void add_instance(std::unique_ptr<OperatorInstance> op, OperatorIds ids);
  bool poll_heads(int min_stage_exclusive);
  void fire_processing_time();
  void maybe_report();

  WorkerShared& shared_;
  int index_;
  int parallelism_;
  KeyGroupRange key_groups_;
  std::vector<Instance> operators_;
  std::vector<StageHead*> heads_;  // owned by operators_; sorted by stage in run()
  std::int64_t idle_rounds_ = 0;
  std::int64_t blocked_rounds_ = 0;
  int unit_ = 0;
  std::int64_t reported_ = 0;
  std::map<std::int64_t, WorkerCheckpointPart> pending_;  // by epoch
};

// The worker behind `context`: for the runtime's own instances (exchanges),
// which need more than operators (Worker::wait_for_space()).
inline Worker& runtime_worker(OperatorContext& context) { return *context.worker_; }

}  // namespace meterstream::detail
