// What an operator instance sees of the runtime: its ids, the state backend,
// its key groups, metrics, its memory share and the checkpoint hooks. The
// worker that runs it stays private to the runtime (worker.hpp). Not API.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "meterstream/checkpoint/detail/checkpoint_parts.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/runtime/options.hpp"

namespace meterstream {
class MetricRegistry;
class StateBackend;
}  // namespace meterstream

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

// One operator instance's view of the worker that runs it. Made by the
// worker when the instance is added (Worker::add_operator(), add_head()) and
// handed to OperatorInstance::open(); it lives as long as the instance, so an
// operator may keep a pointer to it. Used on the worker thread only.
class OperatorContext {
 public:
  // By the runtime only.
  OperatorContext(Worker& worker, OperatorIds ids);
  OperatorContext(const OperatorContext&) = delete;
  OperatorContext& operator=(const OperatorContext&) = delete;

  // The operator's ids; empty for the runtime's own instances (exchanges,
  // fan-outs).
  const OperatorIds& ids() const { return ids_; }

  // This instance's worker index among `parallelism()` workers.
  int worker_index() const { return index_; }
  int parallelism() const { return parallelism_; }
  int max_parallelism() const { return max_parallelism_; }
  // The key groups this instance owns.
  KeyGroupRange key_groups() const { return key_groups_; }
  const JobOptions& options() const;
  MetricRegistry& metrics() const;
  StateBackend* state_backend() const;
  // This instance's share, as one stateful operator instance, of the state
  // backend's operator memory (StateBackend::operator_memory_bytes()): split
  // evenly over workers and stateful operators. 0 means unbounded (the state
  // is in memory anyway).
  std::size_t operator_memory_share() const;

  // Checkpoints. Whether the job takes them.
  bool checkpointing() const { return *hub_ != nullptr; }
  // The newest barrier requested (0: none, or checkpointing off).
  std::int64_t checkpoint_requested() const {
    const CheckpointHub* hub = *hub_;
    return hub == nullptr ? 0 : hub->triggered.load(std::memory_order_acquire);
  }
  // The checkpoint the job restores, or null.
  const RestoredCheckpoint* restored() const;
  // The checkpoint the job restores (0: none): where barrier ids continue.
  std::int64_t restored_id() const;
  // This operator's part (by uid) of the checkpoint the job restores, or null.
  const RestoredCheckpoint::Operator* restored_part() const;

  // What the operator contributes to checkpoints, each to the checkpoint it
  // belongs to (`epoch`): at barrier N, N; after barrier N (a split that ends,
  // a sink's output staged at end of input), N + 1. A worker reports a
  // checkpoint with the contributions of its epoch and earlier ones only.
  //
  // The part this operator fills at barrier `epoch`.
  OperatorInstanceState& snapshot_of(std::int64_t epoch);
  // Runs `fn`, the operator's snapshot at barrier `epoch`; an error it throws
  // (StatusError) fails that checkpoint, not the job.
  template <typename F>
  void snapshot_step(std::int64_t epoch, F&& fn) {
    try {
      std::forward<F>(fn)();
    } catch (const StatusError& e) {
      fail_checkpoint(epoch, e.status);
    }
  }
  // Fails checkpoint `epoch` with `status` (the first error is kept).
  void fail_checkpoint(std::int64_t epoch, Status status);
  // Records a split's position (a source).
  void add_split_state(std::int64_t epoch, SplitState split);
  // Records a sink's staged output.
  void add_prepared(std::int64_t epoch, SinkPrepared prepared);
  // Time spent passing a barrier through a head's operators (their snapshots).
  void add_sync_time(std::int64_t epoch, std::int64_t us);
  // A new local folder for this operator's store snapshot of checkpoint `id`.
  std::string store_snapshot_dir(std::int64_t id) const;

 private:
  friend Worker& runtime_worker(OperatorContext& context);

  Worker* worker_;
  OperatorIds ids_;
  CheckpointHub* const* hub_;  // the job's hub; null while checkpointing is off
  int index_;
  int parallelism_;
  int max_parallelism_;
  KeyGroupRange key_groups_;
};

}  // namespace meterstream::detail
