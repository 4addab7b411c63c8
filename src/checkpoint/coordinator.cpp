#include "checkpoint/coordinator.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <utility>

#include "checkpoint/metadata.hpp"
#include "checkpoint/storage_util.hpp"
#include "meterstream/core/time.hpp"
#include "core/failpoint.hpp"
#include "fmt/format.h"

namespace meterstream::detail {

namespace fs = std::filesystem;

namespace {

// Writes, reads back and removes an object, so that a storage that cannot be
// written (or read) fails Job::start() with the storage's own error code.
Status probe(CheckpointStorage& storage) {
  const std::string path = fmt::format("_probe-{}-{}", ::getpid(), processing_time_now());
  const std::string bytes = "meterstream checkpoint storage probe";
  auto fail = [&](const Status& s, const char* what) {
    return Status(s.code(), fmt::format("checkpoint storage {} is not usable: {} the probe "
                                        "object '{}': {}",
                                        storage.name(), what, path, std::string(s.message())));
  };
  Status s = storage.put(path, bytes);
  if (!s.ok()) return fail(s, "writing");
  StatusOr<std::string> got = storage.get(path);
  if (!got.ok() || *got != bytes) {
    (void)storage.remove(path);
    return fail(got.ok() ? absl::DataLossError("read back other bytes") : got.status(), "reading");
  }
  s = storage.remove(path);
  if (!s.ok()) return fail(s, "removing");
  return Status();
}

}  // namespace

StatusOr<std::unique_ptr<Coordinator>> Coordinator::create(const CheckpointOptions& options,
                                                           CheckpointedJob& job,
                                                           std::vector<SinkRef> sinks,
                                                           std::vector<SourceRef> sources) {
  if (!options.storage) {
    return absl::InvalidArgumentError(
        "JobOptions.checkpoint.storage is required with checkpoints or a restore");
  }
  if (options.interval.count() < 0) {
    return absl::InvalidArgumentError("JobOptions.checkpoint.interval must be >= 0");
  }
  if (options.retained < 1) {
    return absl::InvalidArgumentError(
        fmt::format("JobOptions.checkpoint.retained must be >= 1, got {}", options.retained));
  }
  if (options.max_consecutive_failures < 1) {
    return absl::InvalidArgumentError(
        fmt::format("JobOptions.checkpoint.max_consecutive_failures must be >= 1, got {}",
                    options.max_consecutive_failures));
  }
  std::vector<std::string> commit_points;
  for (const SinkRef& s : sinks) {
    if (s.sink->commit_point()) commit_points.push_back(s.name);
  }
  if (commit_points.size() > 1) {
    // Each would be the checkpoint's commit point, and two commits are not atomic.
    return absl::InvalidArgumentError(fmt::format(
        "a job can have one transactional (commit-point) sink, this one has {}: {}",
        commit_points.size(), fmt::join(commit_points, ", ")));
  }
  std::unique_ptr<Coordinator> c(
      new Coordinator(options, job, std::move(sinks), std::move(sources)));
  // Problems with the storage show at start, not at the first checkpoint: a
  // second job on the same folder, a folder that cannot be written.
  if (auto* exclusive = dynamic_cast<ExclusiveStorage*>(options.storage.get())) {
    MS_ASSIGN_OR_RETURN(c->storage_lock_, exclusive->lock_for_writer());
  }
  MS_RETURN_IF_ERROR(probe(*options.storage));
  std::error_code ec;
  if (options.local_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path(ec) / "meterstream-chk-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return absl::PermissionDeniedError(
          fmt::format("cannot create a local checkpoint folder '{}'", tmpl));
    }
    c->local_dir_ = tmpl;
    c->owns_local_dir_ = true;
  } else {
    c->local_dir_ = options.local_dir;
    fs::create_directories(c->local_dir_, ec);
    std::error_code dir_ec;
    if (ec || !fs::is_directory(c->local_dir_, dir_ec)) {
      return absl::PermissionDeniedError(fmt::format(
          "JobOptions.checkpoint.local_dir '{}' cannot be created: {}", c->local_dir_,
          ec ? ec.message() : "not a directory"));
    }
    // Leftovers of an earlier run (snapshots that were never uploaded).
    for (const char* sub : {"snapshots", "restore"}) fs::remove_all(fs::path(c->local_dir_) / sub, ec);
  }
  return c;
}

Coordinator::Coordinator(const CheckpointOptions& options, CheckpointedJob& job,
                         std::vector<SinkRef> sinks, std::vector<SourceRef> sources)
    : options_(options), job_(job), sinks_(std::move(sinks)), sources_(std::move(sources)) {
  for (const SinkRef& s : sinks_) {
    if (s.sink->commit_point()) commit_point_ = &s;
  }
  completed_ = job_.metrics().counter("checkpoints_completed");
  failed_ = job_.metrics().counter("checkpoints_failed");
  uploaded_bytes_ = job_.metrics().counter("checkpoint_uploaded_bytes");
  source_commit_errors_ = job_.metrics().counter("source_commit_errors");
  last_id_ = job_.metrics().gauge("checkpoint_last_id", GaugeMerge::kMax, 0);
  last_duration_ms_ = job_.metrics().gauge("checkpoint_last_duration_ms", GaugeMerge::kMax, 0);
  last_sync_ms_ = job_.metrics().gauge("checkpoint_last_sync_ms", GaugeMerge::kMax, 0);
  max_sync_ms_ = job_.metrics().gauge("checkpoint_max_sync_ms", GaugeMerge::kMax, 0);
}

Coordinator::~Coordinator() {
  stop();
  std::error_code ec;
  if (owns_local_dir_) fs::remove_all(local_dir_, ec);
}

// ---- triggering and collecting ----------------------------------------------

void Coordinator::start(int units) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    units_ = units;
    reports_.assign(static_cast<std::size_t>(units), std::nullopt);
    early_.assign(static_cast<std::size_t>(units), WorkerCheckpointPart());
    unit_finished_.assign(static_cast<std::size_t>(units), false);
    rests_.assign(static_cast<std::size_t>(units), WorkerCheckpointPart());
  }
  if (options_.interval.count() > 0) {
    thread_ = std::thread([this] {
      // Nothing may escape a library thread (std::terminate): whatever a
      // checkpoint throws fails the job instead.
      try {
        run();
      } catch (const std::exception& e) {
        job_.fail(absl::InternalError(
            fmt::format("checkpoint coordinator: unexpected exception: {}", e.what())));
      } catch (...) {
        job_.fail(absl::InternalError("checkpoint coordinator: unexpected exception"));
      }
    });
  }
}

void Coordinator::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Snapshots of a checkpoint that will not complete; restored files that
  // operators have read in open().
  std::error_code ec;
  fs::remove_all(fs::path(local_dir_) / "snapshots", ec);
  fs::remove_all(fs::path(local_dir_) / "restore", ec);
}

void Coordinator::report(int unit, WorkerCheckpointPart snapshot) {
  failpoint("snapshot");
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto u = static_cast<std::size_t>(unit);
    if (snapshot.id == pending_) {
      reports_[u] = std::move(snapshot);
    } else {
      // Not the checkpoint being collected (cannot happen while workers report
      // only triggered ids): keep it for the next one rather than lose it.
      early_[u].merge(std::move(snapshot));
    }
  }
  cv_.notify_all();
}

void Coordinator::finished(int unit, WorkerCheckpointPart rest) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    WorkerCheckpointPart& r = rests_[static_cast<std::size_t>(unit)];
    for (auto& s : rest.splits) r.splits.push_back(std::move(s));
    for (auto& p : rest.prepared) r.prepared.push_back(std::move(p));
    unit_finished_[static_cast<std::size_t>(unit)] = true;
  }
  cv_.notify_all();
}

std::string Coordinator::store_snapshot_dir(std::int64_t id, const std::string& /*op*/,
                                            int worker) {
  std::int64_t n = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    n = ++store_dirs_;
  }
  const fs::path parent = fs::path(local_dir_) / "snapshots" / checkpoint_dir(id);
  std::error_code ec;
  fs::create_directories(parent, ec);
  return (parent / fmt::format("w{}-{}", worker, n)).string();
}

void Coordinator::run() {
  using Clock = std::chrono::steady_clock;
  auto next = Clock::now() + options_.interval;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, next, [&] { return stopping_ || finishing_; });
      if (stopping_ || finishing_) return;
      // Every worker ran out of input: finish() takes the final checkpoint.
      if (std::all_of(unit_finished_.begin(), unit_finished_.end(), [](bool f) { return f; })) {
        return;
      }
    }
    const auto started = Clock::now();
    const std::int64_t id = next_id_++;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_ = id;
    }
    triggered.store(id, std::memory_order_release);
    std::vector<WorkerCheckpointPart> parts;
    if (!collect(id, &parts)) return;
    Status s = complete(id, std::move(parts), /*final=*/false);
    if (!commit_error_.ok()) return;  // complete() failed the job
    if (!s.ok() && commit_point_ != nullptr) {
      // Its output is in an open transaction of the commit-point sink, which
      // cannot be carried into the next checkpoint's: restart from the last.
      failed_->add();
      job_.fail(Status(s.code(), fmt::format("checkpoint {} failed, and {} cannot carry its "
                                                "output into a later checkpoint: {}",
                                                id, commit_point_->name,
                                                std::string(s.message()))));
      return;
    }
    if (!s.ok()) record_failure(id, s);
    const auto took = Clock::now() - started;
    last_duration_ms_->set(std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
    next = std::max(started + options_.interval, Clock::now());
  }
}

bool Coordinator::collect(std::int64_t id, std::vector<WorkerCheckpointPart>* parts) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stopping_ || job_.cancelled()) return false;
    bool all = true;
    for (int u = 0; u < units_; ++u) {
      const auto i = static_cast<std::size_t>(u);
      all &= (reports_[i] && reports_[i]->id == id) || unit_finished_[i];
    }
    if (all) break;
    // finish() runs after the workers ended: what has not come never will.
    if (finishing_) return false;
    cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
  for (int u = 0; u < units_; ++u) {
    const auto i = static_cast<std::size_t>(u);
    WorkerCheckpointPart part = std::move(early_[i]);
    early_[i] = WorkerCheckpointPart();
    if (reports_[i] && reports_[i]->id == id) {
      part.merge(std::move(*reports_[i]));
      reports_[i].reset();
    } else {
      // Ran out of input before this barrier: all it produced belongs here.
      part.merge(std::move(rests_[i]));
      rests_[i] = WorkerCheckpointPart();
    }
    parts->push_back(std::move(part));
  }
  return true;
}

Status Coordinator::finish() {
  // A checkpoint triggered as the input ended is completed, not abandoned:
  // writers that passed its barrier already write the next epoch's output
  // (a transactional Kafka sink: into its other producer), so the final
  // checkpoint must come after it, or that output is never committed. The
  // thread ends by itself once every unit has finished.
  {
    std::lock_guard<std::mutex> lock(mu_);
    finishing_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  stop();
  if (!commit_error_.ok()) {
    // A checkpoint's commit failed while the input was ending (after the job
    // last looked at its errors): that output is not published, so neither
    // is the rest.
    return Status(commit_error_.code(),
                  fmt::format("the final checkpoint was not taken, an earlier commit failed: {}",
                              std::string(commit_error_.message())));
  }
  // The same when the thread failed the job otherwise while the input ended
  // (a checkpoint that failed with a commit-point sink, too many in a row, an
  // exception) or the job was cancelled meanwhile: a final checkpoint would
  // commit its sinks without the output of the checkpoint that did not.
  if (Status failed = job_.first_error(); !failed.ok()) return failed;
  if (job_.cancelled()) return absl::CancelledError("the job was cancelled as its input ended");
  std::vector<WorkerCheckpointPart> parts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : reports_) {
      if (r) parts.push_back(std::move(*r));  // reported a barrier nobody completed
    }
    for (auto& r : early_) parts.push_back(std::move(r));
    for (auto& r : rests_) parts.push_back(std::move(r));
    rests_.clear();
  }
  // Operators that ended hold no state: the final checkpoint keeps positions
  // (all at their end) and commits the rest of the output.
  for (WorkerCheckpointPart& p : parts) p.operators.clear();
  const std::int64_t id = next_id_++;
  triggered.store(id, std::memory_order_release);
  Status s;
  try {
    s = complete(id, std::move(parts), /*final=*/true);
  } catch (const std::exception& e) {
    s = absl::InternalError(fmt::format("unexpected exception: {}", e.what()));
  } catch (...) {
    s = absl::InternalError("unexpected exception");
  }
  if (!s.ok()) {
    failed_->add();
    return Status(s.code(), fmt::format("the final checkpoint {} failed, so the output staged "
                                        "since the last checkpoint is not committed: {}",
                                        id, std::string(s.message())));
  }
  return Status();
}

void Coordinator::record_failure(std::int64_t id, const Status& status) {
  failed_->add();
  ++consecutive_failures_;
  job_.log(LogLevel::kWarning, fmt::format("checkpoint {} failed ({} in a row): {}", id,
                                           consecutive_failures_,
                                           std::string(status.message())));
  if (consecutive_failures_ >= options_.max_consecutive_failures) {
    job_.fail(Status(status.code(),
                        fmt::format("{} checkpoints failed in a row (max_consecutive_failures); "
                                    "the last, {}: {}",
                                    consecutive_failures_, id, std::string(status.message()))));
  }
}

}  // namespace meterstream::detail
