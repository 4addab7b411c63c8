// JobOptions: how a pipeline runs.
//
// Thread-safety: a value type.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "meterstream/checkpoint/checkpoint.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/log.hpp"
#include "meterstream/core/status.hpp"

namespace meterstream {

class StateBackend;

// What Job::run() / Job::wait() do when a run fails: Flink's fixed-delay
// restart strategy. A failed run is torn down (threads joined, sinks closed,
// the coordinator stopped) and, after `delay`, the job starts again from its
// last committed checkpoint (RestoreFrom::latest()), up to `max_attempts`
// times; each restart counts in the metric "job_restarts" and is logged
// (JobOptions::log) with the error. Restarts need checkpointing
// (JobOptions::checkpoint.interval > 0): without a checkpoint a restart would
// replay the input from its start. A restart that fails to start (e.g. the
// broker is still down) counts as an attempt too.
//
// Example: survive a broker restart of up to a minute.
//   o.restart = ms::RestartStrategy::fixed_delay(12, std::chrono::seconds(5));
struct RestartStrategy {
  // Restarts at most, in the life of the Job. 0: a failure ends the job.
  // Default: 0
  int max_attempts = 0;

  // Time between a failure and the next start. Default: 1 s
  std::chrono::milliseconds delay{1000};

  // The status codes that restart the job; any other code (e.g.
  // kInvalidArgument for bad options, kDataLoss for a corrupt checkpoint,
  // kFailedPrecondition for a second job with the same transactional prefix)
  // ends it. kCancelled after Job::cancel() never restarts.
  // Default: kUnavailable (a server down), kAborted (a fenced or aborted
  // transaction), kInternal (a fatal producer error, an exception thrown by
  // user code), kDeadlineExceeded (a commit or flush that timed out)
  std::vector<StatusCode> retriable = {StatusCode::kUnavailable, StatusCode::kAborted,
                                       StatusCode::kInternal, StatusCode::kDeadlineExceeded};

  // `attempts` restarts, `delay` apart, on the default retriable codes.
  static RestartStrategy fixed_delay(int attempts, std::chrono::milliseconds delay) {
    RestartStrategy r;
    r.max_attempts = attempts;
    r.delay = delay;
    return r;
  }
};

struct JobOptions {
  // Worker threads. Each runs one instance of every operator and owns a range of
  // key groups. Must be between 1 and max_parallelism.
  // Default: -1, resolved by Pipeline::build() to default_parallelism() (one
  // per core); 0 is an error.
  int parallelism = -1;

  // Number of key groups: the unit of keyed state and of rescaling.
  // Default: 128.
  int max_parallelism = kDefaultMaxParallelism;

  // Records per batch, at most, between operators.
  // Default: 1024.
  std::size_t batch_size = 1024;

  // Batches an exchange channel between two workers holds before its sender
  // waits (backpressure). Rounded up to a power of two.
  // Default: 64.
  std::size_t channel_capacity = 64;

  // Runs the source stage (sources and the operators chained to them, up to the
  // first exchange) of each worker on a thread of its own, as Flink runs source
  // tasks, so that reading and partitioning overlap with the keyed work. With
  // false, each worker is one thread. Worth it with more cores than workers.
  // Default: false (measured: on 2 cores the third thread cost more than the
  // imbalance; see docs/performance.md).
  bool source_threads = false;

  // When source_threads is false and only some workers read source splits
  // (a single file or generator), those workers own this share of an equal
  // share of the key groups, so that reading and keyed work balance out.
  // 1 gives every worker the same number of key groups. In (0, 1].
  // Default: 0.6 (measured best of 0.4 to 1.0 for Q1; docs/performance.md).
  double reader_key_group_share = 0.6;

  // Where keyed state lives. Default: nullptr, the in-memory backend.
  std::shared_ptr<StateBackend> state_backend;

  // Checkpoints and restore (checkpoint/checkpoint.hpp). Default: none.
  CheckpointOptions checkpoint;

  // Restarts after a failure (see RestartStrategy). Default: none
  RestartStrategy restart;

  // Where the job's log messages go (core/log.hpp): failures it survives (a
  // checkpoint that failed, one that does not verify on restore, a source
  // that could not commit its offsets, retention) and progress (checkpoints
  // a restore removed, a restart). Called from the job's threads, possibly
  // concurrently: it must be thread-safe. An empty function drops them.
  // Default: log_to_stderr (one line "meterstream: <message>" each).
  LogFunction log = log_to_stderr;
};

// std::thread::hardware_concurrency(), at least 1.
int default_parallelism();

}  // namespace meterstream
