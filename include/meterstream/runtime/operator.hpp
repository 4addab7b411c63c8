// Interfaces between the runtime and sources, sinks and operators.
//
// Applications use these to write their own sources and sinks; the built-in
// connectors implement them too. Records move in RecordBatch; a Collector is
// what an operator pushes its output into.
//
// Thread-safety: every object here is used by one worker thread at a time,
// except Source and Sink factories, whose create_*() may be called from the
// thread that runs the job before workers start.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "meterstream/core/record_batch.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/core/time.hpp"

namespace meterstream {

// The receiving end of an operator's output: the next operator in the chain,
// an exchange to other workers, or a sink.
template <typename T>
class Collector {
 public:
  virtual ~Collector() = default;
  // Takes the records of `batch`. The callee may modify the batch but must not
  // keep a reference to it after returning.
  virtual void push(RecordBatch<T>& batch) = 0;
  // The event-time clock advanced to `watermark`. Never called with a smaller
  // value than before.
  virtual void watermark(Timestamp watermark) = 0;
  // The input became idle (true) or active again (false).
  virtual void watermark_status(bool idle) = 0;
  // No more input will come.
  virtual void end() = 0;
};

// One split of a source (a file, a Kafka partition, a generator) read by one
// worker.
template <typename T>
class SplitReader {
 public:
  enum class Poll { kMore, kNoDataNow, kEnd };

  SplitReader() = default;
  SplitReader(const SplitReader&) = delete;
  SplitReader& operator=(const SplitReader&) = delete;
  virtual ~SplitReader() = default;

  // Appends up to `max` records to `out`. A record that cannot be decoded is
  // not appended: its description goes to `undecodable` (it is counted and sent
  // to the source's undecodable side output). Returns kEnd when the split is
  // exhausted, kNoDataNow when nothing is available for now, kMore otherwise;
  // an error stops the job.
  virtual StatusOr<Poll> poll(std::vector<T>& out, std::size_t max,
                              std::vector<std::string>& undecodable) = 0;

  // For logs and errors: which split this is ("events.csv", "topic-3").
  virtual std::string name() const = 0;
};

// A logical source: a factory of splits, assigned round-robin to workers.
template <typename T>
class Source {
 public:
  Source() = default;
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;
  virtual ~Source() = default;

  virtual std::string name() const = 0;
  // Creates the splits; called once when the job starts. Errors (a missing
  // file) fail the job before any record flows.
  virtual StatusOr<std::vector<std::unique_ptr<SplitReader<T>>>> create_splits() = 0;
};

// One worker's instance of a sink.
template <typename T>
class SinkWriter {
 public:
  SinkWriter() = default;
  SinkWriter(const SinkWriter&) = delete;
  SinkWriter& operator=(const SinkWriter&) = delete;
  virtual ~SinkWriter() = default;

  virtual Status write(const RecordBatch<T>& batch) = 0;
  // Called once at end of input; flushes and releases resources.
  virtual Status close() = 0;
};

// A logical sink: a factory of writers, one per worker.
template <typename T>
class Sink {
 public:
  Sink() = default;
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  virtual ~Sink() = default;

  virtual std::string name() const = 0;
  // Creates the writer of worker `worker` of `parallelism`; called before
  // workers start.
  virtual StatusOr<std::unique_ptr<SinkWriter<T>>> create_writer(int worker, int parallelism) = 0;
};

}  // namespace meterstream
