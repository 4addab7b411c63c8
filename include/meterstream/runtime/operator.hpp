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

#include <chrono>
#include <cstddef>
#include <memory>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "meterstream/checkpoint/checkpoint.hpp"
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
  // Checkpoint barrier `checkpoint_id` (checkpoint/checkpoint.hpp): every
  // record before it belongs to the checkpoint, none after it. A stateful
  // operator snapshots its state here, then forwards the barrier.
  virtual void barrier(std::int64_t checkpoint_id) = 0;
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

  // Checkpointing. The position just after the last record that poll()
  // returned, as bytes that seek() accepts (a file offset, a record index, a
  // Kafka offset). The default, kUnimplemented, makes a checkpointed job fail
  // at its first checkpoint with an error naming the split.
  virtual StatusOr<std::string> position() const {
    return absl::UnimplementedError("split '" + name() + "' cannot be checkpointed");
  }
  // Moves to `position` (from position() of the same split in an earlier
  // run), before the first poll(). kInvalidArgument when it does not decode
  // or lies outside the split.
  virtual Status seek(std::string_view /*position*/) {
    return absl::UnimplementedError("split '" + name() + "' cannot be restored");
  }
  // Whether a split that had ended when a (non-final) checkpoint was taken
  // reads again from its position after a restore, rather than staying
  // ended: a split whose end is found anew at each start (a bounded Kafka
  // partition with KafkaSourceOptions::bounded_end_at_each_start). Such a
  // split's position() is recorded at its end too. Default: false
  virtual bool resumes_after_end() const { return false; }
};

// The part of a source that does not depend on its record type.
class SourceBase {
 public:
  SourceBase() = default;
  SourceBase(const SourceBase&) = delete;
  SourceBase& operator=(const SourceBase&) = delete;
  virtual ~SourceBase() = default;

  virtual std::string name() const = 0;

  // Called from the checkpoint thread once checkpoint `checkpoint.id` is
  // committed, with this source's split positions (e.g. a Kafka source
  // commits them to its consumer group, so that consumer lag is visible).
  // An error is logged and counted ("source_commit_errors"); it never fails
  // the job. Default: nothing.
  virtual Status checkpoint_committed(const CheckpointCommit& /*checkpoint*/) { return Status(); }
};

// A logical source: a factory of splits, assigned round-robin to workers.
template <typename T>
class Source : public SourceBase {
 public:
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
  // Called once at end of input; flushes and releases resources. An
  // exactly-once writer has staged its last records in prepare_commit()
  // before (the runtime calls it with the end-of-input epoch first).
  virtual Status close() = 0;

  // Exactly-once sinks (two-phase commit with checkpoints). Called at the
  // checkpoint barrier of checkpoint `epoch`, and once more at end of input
  // (with the id of the checkpoint that will follow), after every record
  // before it was written: stages those records (not yet visible; made
  // durable by SinkBase::persist()) and returns what SinkBase::commit() needs
  // to publish them, e.g. the staged file's name; "" when nothing was staged.
  // Default: "": records are visible as soon as written (at-least-once).
  virtual StatusOr<std::string> prepare_commit(std::int64_t /*epoch*/) { return std::string(); }
};

class MetricRegistry;

// What a sink learns about the job that runs it (SinkBase::open()).
struct SinkContext {
  // JobOptions::checkpoint.interval; 0 when the job takes no checkpoints.
  std::chrono::milliseconds checkpoint_interval{0};
  // JobOptions::parallelism: the number of writers.
  int parallelism = 1;
  // The job's metrics, for counters the sink registers (Job::metrics()).
  MetricRegistry* metrics = nullptr;
};

// The part of a sink that does not depend on its record type: the commit side
// of exactly-once output.
class SinkBase {
 public:
  SinkBase() = default;
  SinkBase(const SinkBase&) = delete;
  SinkBase& operator=(const SinkBase&) = delete;
  virtual ~SinkBase() = default;

  virtual std::string name() const = 0;

  // Called when a job that uses the sink starts (Job::start()), before
  // committed_checkpoint(), recover() and any writer: checks the sink's
  // options against the job and connects. An error fails the start.
  // Default: nothing.
  virtual Status open(const SinkContext& /*context*/) { return Status(); }

  // Called once the job that open() started has ended (Job::wait(), after
  // the final checkpoint, or when the job failed or was cancelled; also from
  // the job's destructor): releases connections, so that another job may use
  // the sink's resources (e.g. its Kafka lease). Default: nothing.
  virtual void close() {}

  // Makes what the writers' prepare_commit() returned durable (e.g. fsync),
  // before the checkpoint that lists it is written. Called from the
  // checkpoint thread, so prepare_commit(), which runs while its worker waits,
  // can stay cheap (a flush and a rename). Default: nothing.
  virtual Status persist(const std::vector<std::string>& /*prepared*/) { return Status(); }

  // Publishes what the writers' prepare_commit() returned (the non-empty
  // results) once `checkpoint`, which holds them, is durable. Called from the
  // checkpoint thread; called again on restore for the checkpoint restored,
  // so it must be idempotent (already published output stays as it is).
  // Without checkpointing, called at the end of input with id 0.
  // Default: nothing.
  virtual Status commit(const CheckpointCommit& /*checkpoint*/,
                        const std::vector<std::string>& /*prepared*/) {
    return Status();
  }

  // True for a sink whose commit() is the checkpoint's commit point: a
  // transactional Kafka sink, whose output cannot be published later from a
  // file (a prepared Kafka transaction does not survive its producer). The
  // coordinator then calls its commit() for every checkpoint, right after
  // the metadata is written and before other sinks commit, even with nothing
  // prepared; a failed commit() fails the job (the checkpoint is not
  // committed), and so does a checkpoint that fails after its barrier. At
  // most one per job. Default: false.
  virtual bool commit_point() const { return false; }

  // For a commit-point sink: the id of the newest checkpoint whose commit()
  // succeeded (0: none), read from where commit() records it. Called when a
  // checkpointed job starts, before recover(); RestoreFrom::latest() then
  // restores exactly that checkpoint. Default: 0.
  virtual StatusOr<std::int64_t> committed_checkpoint() { return std::int64_t{0}; }

  // Called when a checkpointed job starts, before any writer is created:
  // discards output staged by an earlier run that `keep` (what the restored
  // checkpoint still has to commit) does not list, and output that an earlier
  // run published for epochs after `restored_checkpoint` (0 when the job
  // starts without a checkpoint). Default: nothing.
  virtual Status recover(std::int64_t /*restored_checkpoint*/,
                         const std::vector<std::string>& /*keep*/) {
    return Status();
  }
};

// A logical sink: a factory of writers, one per worker.
template <typename T>
class Sink : public SinkBase {
 public:
  // Creates the writer of worker `worker` of `parallelism`; called before
  // workers start.
  virtual StatusOr<std::unique_ptr<SinkWriter<T>>> create_writer(int worker, int parallelism) = 0;
};

}  // namespace meterstream
