// The checkpoint coordinator of one job run. Not API: Job drives it.
//
// Its thread triggers checkpoint N (CheckpointHub::triggered), waits until
// every worker thread has reported its part (or has run out of input),
// uploads the parts, writes the metadata (the commit point), asks the sinks
// to commit what they staged, and applies retention. One checkpoint runs at a
// time. At the end of input Job calls finish() for the final checkpoint,
// which commits the rest of the output.
//
// The checkpoint layer sits below the runtime: the coordinator knows the job
// only through CheckpointedJob, its sinks and sources through CheckpointedSink
// and CheckpointedSource, all owned here and implemented by the runtime
// (src/runtime/job.cpp). Its parts, one file each: coordinator.cpp (checks,
// the thread that triggers and collects, failures), complete.cpp (uploads,
// the metadata, the sinks' commit), restore.cpp (choosing and loading what
// to restore), retention.cpp, and metadata.hpp (the format in storage).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "meterstream/checkpoint/checkpoint.hpp"
#include "meterstream/checkpoint/detail/checkpoint_parts.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/log.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/metrics/metrics.hpp"

namespace meterstream::detail {

// The job as the coordinator sees it. Called from the coordinator's thread
// and from the caller of create(), restore() and finish().
class CheckpointedJob {
 public:
  virtual ~CheckpointedJob() = default;
  // Fails the job with `status` (the first error wins) and cancels it.
  virtual void fail(Status status) = 0;
  // The job's first error (OK while it has none).
  virtual Status first_error() const = 0;
  virtual bool cancelled() const = 0;
  virtual int parallelism() const = 0;
  virtual int max_parallelism() const = 0;
  // Per worker; assigned before start().
  virtual std::vector<KeyGroupRange> key_group_ranges() const = 0;
  virtual MetricRegistry& metrics() = 0;
  // JobOptions::log.
  virtual void log(LogLevel level, std::string_view message) = 0;
};

// A sink as the coordinator sees it: SinkBase's checkpoint methods
// (runtime/operator.hpp has their contracts).
class CheckpointedSink {
 public:
  virtual ~CheckpointedSink() = default;
  virtual bool commit_point() const = 0;
  virtual StatusOr<std::int64_t> committed_checkpoint() = 0;
  virtual Status recover(std::int64_t restored_checkpoint,
                         const std::vector<std::string>& prepared) = 0;
  virtual Status persist(const std::vector<std::string>& prepared) = 0;
  virtual Status commit(const CheckpointCommit& checkpoint,
                        const std::vector<std::string>& prepared) = 0;
};

// A source as the coordinator sees it (SourceBase::checkpoint_committed()).
class CheckpointedSource {
 public:
  virtual ~CheckpointedSource() = default;
  virtual Status checkpoint_committed(const CheckpointCommit& checkpoint) = 0;
};

class Coordinator final : public CheckpointHub {
 public:
  struct SinkRef {
    std::string uid;   // the sink node's uid: keys its staged output in checkpoints
    std::string name;  // the sink node's name, for errors
    std::shared_ptr<CheckpointedSink> sink;
  };
  struct SourceRef {
    std::string uid;   // the source node's uid: keys its split positions in checkpoints
    std::string name;  // the source node's name, for logs
    std::shared_ptr<CheckpointedSource> source;
  };

  // Checks the options (storage present, retained and failure limit >= 1,
  // at most one commit-point sink),
  // locks the storage for this job (a local folder: kFailedPrecondition while
  // another job holds it), probes it (writes, reads and removes an object: a
  // storage that cannot be written fails here with its own code) and prepares
  // the local working folder.
  static StatusOr<std::unique_ptr<Coordinator>> create(const CheckpointOptions& options,
                                                       CheckpointedJob& job,
                                                       std::vector<SinkRef> sinks,
                                                       std::vector<SourceRef> sources);
  ~Coordinator() override;

  // Loads the checkpoint that options.restore names (null: start without
  // state) and lets the sinks recover. Called before any worker exists.
  StatusOr<std::shared_ptr<const RestoredCheckpoint>> restore();

  // Starts the thread that triggers checkpoints; `units` threads report.
  void start(int units);
  // The workers ran to the end of their input: stops the thread and takes
  // the final checkpoint, which commits the rest of the output.
  Status finish();
  // Stops the thread; no more checkpoints (a failed or cancelled job).
  void stop();
  // Lets another job write to the storage (the job has ended).
  void release_storage() { storage_lock_.reset(); }

  void report(int unit, WorkerCheckpointPart snapshot) override;
  void finished(int unit, WorkerCheckpointPart rest) override;
  std::string store_snapshot_dir(std::int64_t id, const std::string& op, int worker) override;

 private:
  Coordinator(const CheckpointOptions& options, CheckpointedJob& job, std::vector<SinkRef> sinks,
              std::vector<SourceRef> sources);

  void run();
  // Waits for every unit's part of checkpoint `id`; false when stopped.
  bool collect(std::int64_t id, std::vector<WorkerCheckpointPart>* parts);
  // Uploads, writes the metadata, commits the sinks, applies retention.
  Status complete(std::int64_t id, std::vector<WorkerCheckpointPart> parts, bool final);
  // Commits checkpoint `checkpoint`: the commit-point sink first (its commit
  // is the checkpoint's), then the other sinks, then tells the sources.
  Status commit_sinks(CheckpointCommit checkpoint, const std::vector<SinkPrepared>& prepared);
  // The id that options.restore names, given the completed checkpoints in
  // the storage (0: start without state).
  StatusOr<std::int64_t> restore_id(const std::vector<std::int64_t>& completed);
  Status retain();
  StatusOr<std::shared_ptr<RestoredCheckpoint>> load(std::int64_t id);
  StatusOr<std::string> upload_shared(const std::string& local_file, const std::string& name);
  void record_failure(std::int64_t id, const Status& status);

  CheckpointOptions options_;
  CheckpointedJob& job_;
  std::vector<SinkRef> sinks_;
  std::vector<SourceRef> sources_;
  const SinkRef* commit_point_ = nullptr;  // the sink whose commit is the checkpoint's
  std::string local_dir_;
  bool owns_local_dir_ = false;
  std::shared_ptr<void> storage_lock_;  // ExclusiveStorage::lock_for_writer()

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool finishing_ = false;  // finish(): complete what is pending, then end
  int units_ = 0;
  std::int64_t pending_ = 0;                             // the checkpoint being collected
  std::vector<std::optional<WorkerCheckpointPart>> reports_;   // per unit, for pending_
  std::vector<bool> unit_finished_;
  std::vector<WorkerCheckpointPart> rests_;  // per unit: produced after its last report
  std::vector<WorkerCheckpointPart> early_;  // per unit: reports of no pending checkpoint
  std::thread thread_;

  // Coordinator thread only (or the caller of finish() after the thread stopped).
  std::int64_t next_id_ = 1;
  std::map<std::pair<std::string, int>, SplitState> splits_;  // newest known
  std::vector<SinkPrepared> uncommitted_;  // staged output of failed checkpoints
  std::set<std::string> shared_files_;     // in storage under shared/
  // "dev:inode:size:mtime:file name" -> content name
  std::map<std::string, std::string> hash_cache_;
  std::map<std::int64_t, std::set<std::string>> referenced_;  // completed id -> its files
  std::set<std::int64_t> bad_;  // checkpoints that did not verify
  int consecutive_failures_ = 0;
  Status commit_error_;  // a sink's commit failed (the job has failed): its error
  std::int64_t store_dirs_ = 0;  // under mu_

  Counter* completed_ = nullptr;
  Counter* failed_ = nullptr;
  Counter* uploaded_bytes_ = nullptr;
  Counter* source_commit_errors_ = nullptr;
  Gauge* last_id_ = nullptr;
  Gauge* last_duration_ms_ = nullptr;
  Gauge* last_sync_ms_ = nullptr;
  Gauge* max_sync_ms_ = nullptr;
};

}  // namespace meterstream::detail
