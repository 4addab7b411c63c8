// JobOptions: how a pipeline runs.
//
// Thread-safety: a value type.
#pragma once

#include <cstddef>
#include <memory>

#include "meterstream/checkpoint/checkpoint.hpp"
#include "meterstream/core/key_group.hpp"

namespace meterstream {

class StateBackend;

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
};

// std::thread::hardware_concurrency(), at least 1.
int default_parallelism();

}  // namespace meterstream
