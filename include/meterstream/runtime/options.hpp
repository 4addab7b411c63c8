// JobOptions: how a pipeline runs.
//
// Thread-safety: a value type.
#pragma once

#include <cstddef>
#include <memory>

#include "meterstream/core/key_group.hpp"

namespace meterstream {

class StateBackend;

struct JobOptions {
  // Worker threads. Each runs one instance of every operator and owns a range of
  // key groups. Must be between 1 and max_parallelism.
  // Default: std::thread::hardware_concurrency() (0 is resolved to it by
  // default_parallelism(); an explicit 0 is an error).
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
  // tasks, so that reading and partitioning overlap with the keyed work
  // instead of loading the worker that holds the splits. With false, each
  // worker is one thread.
  // Default: true.
  bool source_threads = true;

  // Where keyed state lives. Default: nullptr, the in-memory backend.
  std::shared_ptr<StateBackend> state_backend;
};

// std::thread::hardware_concurrency(), at least 1.
int default_parallelism();

}  // namespace meterstream
