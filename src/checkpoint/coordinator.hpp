// The checkpoint coordinator of one job run. Not API: Job drives it.
//
// Its thread triggers checkpoint N (CheckpointHub::triggered), waits until
// every worker thread has reported its part (or has run out of input),
// uploads the parts, writes the metadata (the commit point), asks the sinks
// to commit what they staged, and applies retention. One checkpoint runs at a
// time. At the end of input Job calls finish() for the final checkpoint,
// which commits the rest of the output.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "meterstream/checkpoint/checkpoint.hpp"
#include "meterstream/metrics/metrics.hpp"
#include "meterstream/runtime/detail/snapshot.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream::detail {

class Coordinator final : public CheckpointHub {
 public:
  struct SinkRef {
    std::string uid;   // the sink node's uid: keys its staged output in checkpoints
    std::string name;  // the sink node's name, for errors
    std::shared_ptr<SinkBase> sink;
  };
  struct SourceRef {
    std::string uid;   // the source node's uid: keys its split positions in checkpoints
    std::string name;  // the source node's name, for logs
    std::shared_ptr<SourceBase> source;
  };

  // Checks the options (storage present, retained and failure limit >= 1,
  // at most one commit-point sink),
  // locks the storage for this job (a local folder: kFailedPrecondition while
  // another job holds it), probes it (writes, reads and removes an object: a
  // storage that cannot be written fails here with its own code) and prepares
  // the local working folder.
  static StatusOr<std::unique_ptr<Coordinator>> create(const CheckpointOptions& options,
                                                       JobShared& shared,
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

  void report(int unit, WorkerSnapshot snapshot) override;
  void finished(int unit, WorkerSnapshot rest) override;
  std::string store_snapshot_dir(std::int64_t id, const std::string& op, int worker) override;

 private:
  Coordinator(const CheckpointOptions& options, JobShared& shared, std::vector<SinkRef> sinks,
              std::vector<SourceRef> sources);

  void run();
  // Waits for every unit's part of checkpoint `id`; false when stopped.
  bool collect(std::int64_t id, std::vector<WorkerSnapshot>* parts);
  // Uploads, writes the metadata, commits the sinks, applies retention.
  Status complete(std::int64_t id, std::vector<WorkerSnapshot> parts, bool final);
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
  JobShared& shared_;
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
  std::vector<std::optional<WorkerSnapshot>> reports_;   // per unit, for pending_
  std::vector<bool> unit_finished_;
  std::vector<WorkerSnapshot> rests_;  // per unit: produced after its last report
  std::vector<WorkerSnapshot> early_;  // per unit: reports of no pending checkpoint
  std::thread thread_;

  // Coordinator thread only (or the caller of finish() after the thread stopped).
  std::int64_t next_id_ = 1;
  std::map<std::pair<std::string, int>, SplitSnapshot> splits_;  // newest known
  std::vector<SinkPrepared> uncommitted_;  // staged output of failed checkpoints
  std::set<std::string> shared_files_;     // in storage under shared/
  // "dev:inode:size:mtime:file name" -> content name
  std::map<std::string, std::string> hash_cache_;
  std::map<std::int64_t, std::set<std::string>> referenced_;  // completed id -> its files
  std::set<std::int64_t> bad_;  // checkpoints that did not verify
  int consecutive_failures_ = 0;
  bool commit_failed_ = false;   // a sink's commit failed: the job has failed
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
