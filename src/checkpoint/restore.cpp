// Choosing what to restore and loading it (docs/checkpoints.md, "Restore").
#include "checkpoint/coordinator.hpp"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "checkpoint/metadata.hpp"
#include "fmt/format.h"

namespace meterstream::detail {

namespace fs = std::filesystem;

StatusOr<std::shared_ptr<const RestoredCheckpoint>> Coordinator::restore() {
  CheckpointStorage& storage = *options_.storage;
  MS_ASSIGN_OR_RETURN(std::vector<std::string> paths, storage.list("chk-"));
  std::set<std::int64_t> seen;
  std::vector<std::int64_t> completed;
  for (const std::string& p : paths) {
    const std::int64_t id = checkpoint_id_of(p);
    if (id < 0) continue;
    seen.insert(id);
    if (p == metadata_path(id)) completed.push_back(id);
  }
  if (!seen.empty()) next_id_ = *seen.rbegin() + 1;
  MS_ASSIGN_OR_RETURN(std::vector<std::string> shared, storage.list("shared/"));
  shared_files_.insert(shared.begin(), shared.end());

  std::shared_ptr<RestoredCheckpoint> restored;
  const RestoreFrom& from = options_.restore;
  if (commit_point_ != nullptr && from.kind != RestoreFrom::Kind::kNone) {
    // The commit-point sink knows which checkpoint committed: only that one
    // matches the output it published, whatever newer metadata exists.
    StatusOr<std::int64_t> committed = commit_point_->sink->committed_checkpoint();
    if (!committed.ok()) {
      return Status(committed.status().code(),
                    fmt::format("{}: reading its last committed checkpoint: {}",
                                commit_point_->name, std::string(committed.status().message())));
    }
    const std::int64_t id = *committed;
    if (from.kind != RestoreFrom::Kind::kLatest) {
      MS_ASSIGN_OR_RETURN(const std::int64_t asked, restore_id(completed));
      if (asked != id) {
        return absl::FailedPreconditionError(fmt::format(
            "cannot restore checkpoint {}: {} committed the output of checkpoint {}, so only "
            "that checkpoint matches it (use RestoreFrom::latest())",
            asked, commit_point_->name, id));
      }
    }
    if (id > 0) {
      if (std::find(completed.begin(), completed.end(), id) == completed.end()) {
        return absl::DataLossError(fmt::format(
            "{} committed checkpoint {}, but {} has no {}", commit_point_->name, id,
            storage.name(), metadata_path(id)));
      }
      StatusOr<std::shared_ptr<RestoredCheckpoint>> r = load(id);
      if (!r.ok()) {
        return Status(r.status().code(),
                      fmt::format("checkpoint {}, which {} committed: {}", id, commit_point_->name,
                                  std::string(r.status().message())));
      }
      restored = *std::move(r);
    }
  } else if (from.kind == RestoreFrom::Kind::kLatest) {
    std::vector<std::string> failures;
    for (auto it = completed.rbegin(); it != completed.rend() && !restored; ++it) {
      StatusOr<std::shared_ptr<RestoredCheckpoint>> r = load(*it);
      if (r.ok()) {
        restored = *std::move(r);
        break;
      }
      // Unreachable storage is not a reason to go back in time.
      const auto code = r.status().code();
      if (code != absl::StatusCode::kDataLoss && code != absl::StatusCode::kNotFound &&
          code != absl::StatusCode::kInvalidArgument) {
        return r.status();
      }
      job_.log(LogLevel::kWarning,
               fmt::format("checkpoint {} does not verify ({}); trying an older one", *it,
                           std::string(r.status().message())));
      failures.push_back(fmt::format("{}: {}", *it, std::string(r.status().message())));
      bad_.insert(*it);
    }
    if (!restored && !failures.empty()) {
      return absl::DataLossError(fmt::format("no checkpoint in {} verifies: {}", storage.name(),
                                             fmt::join(failures, "; ")));
    }
  } else if (from.kind == RestoreFrom::Kind::kId || from.kind == RestoreFrom::Kind::kPath) {
    MS_ASSIGN_OR_RETURN(const std::int64_t id, restore_id(completed));
    MS_ASSIGN_OR_RETURN(restored, load(id));
  }

  const std::int64_t restored_id = restored ? restored->id : 0;
  if (restored) {
    splits_.insert(restored->splits.begin(), restored->splits.end());
    next_id_ = std::max(next_id_, restored_id + 1);
  }
  if (from.kind != RestoreFrom::Kind::kNone) {
    // Checkpoints after the restored one belong to a history that the sinks
    // are about to discard (their output goes): they must never be restored.
    for (std::int64_t id : completed) {
      if (id <= restored_id) continue;
      job_.log(LogLevel::kInfo,
               fmt::format("checkpoint {} is newer than the one restored ({}): removing its "
                           "metadata",
                           id, restored_id));
      MS_RETURN_IF_ERROR(storage.remove(metadata_path(id)));
    }
  }
  // Sinks: finish the restored checkpoint's commit, discard everything later.
  for (const SinkRef& s : sinks_) {
    std::vector<std::string> keep;
    if (restored) {
      auto it = restored->prepared.find(s.uid);
      if (it != restored->prepared.end()) keep = it->second;
    }
    Status st = s.sink->recover(restored_id, keep);
    if (!st.ok()) {
      return Status(st.code(), fmt::format("{}: recovering its output: {}", s.name,
                                           std::string(st.message())));
    }
  }
  triggered.store(restored_id);
  return std::shared_ptr<const RestoredCheckpoint>(std::move(restored));
}

StatusOr<std::int64_t> Coordinator::restore_id(const std::vector<std::int64_t>& completed) {
  const RestoreFrom& from = options_.restore;
  std::int64_t id = from.checkpoint_id;
  if (from.kind == RestoreFrom::Kind::kPath) {
    id = checkpoint_id_of(from.metadata_path + "/");
    if (id < 0 ||
        (from.metadata_path != checkpoint_dir(id) && from.metadata_path != metadata_path(id))) {
      return absl::InvalidArgumentError(fmt::format(
          "RestoreFrom::path('{}'): not a checkpoint's path (expected 'chk-<id>' or "
          "'chk-<id>/_metadata')",
          from.metadata_path));
    }
  }
  if (std::find(completed.begin(), completed.end(), id) == completed.end()) {
    return absl::NotFoundError(fmt::format("checkpoint {} is not in {} (no {})", id,
                                           options_.storage->name(), metadata_path(id)));
  }
  return id;
}

StatusOr<std::shared_ptr<RestoredCheckpoint>> Coordinator::load(std::int64_t id) {
  CheckpointStorage& storage = *options_.storage;
  const std::string meta_path = metadata_path(id);
  MS_ASSIGN_OR_RETURN(std::string bytes, storage.get(meta_path));
  MS_ASSIGN_OR_RETURN(CheckpointMetadata meta,
                      decode_metadata(bytes, meta_path, id, job_.max_parallelism()));
  auto r = std::make_shared<RestoredCheckpoint>();
  r->id = meta.id;
  r->final = meta.final;
  for (SplitState& split : meta.sources) r->splits[{split.source, split.split}] = std::move(split);
  r->prepared = std::move(meta.sinks);
  const fs::path local = fs::path(local_dir_) / "restore" / checkpoint_dir(id);
  std::error_code ec;
  fs::remove_all(local, ec);
  int n = 0;
  for (const CheckpointMetadata::Operator& op : meta.operators) {
    RestoredCheckpoint::Operator& into = r->operators[op.op];
    MS_ASSIGN_OR_RETURN(std::string state, storage.get(op.state_path));
    MS_RETURN_IF_ERROR(decode_instance_state(state, op.state_path, op.worker, &into));
    for (const CheckpointMetadata::Store& st : op.stores) {
      LocalStoreCopy s;
      s.local_dir = (local / std::to_string(n++)).string();
      fs::create_directories(s.local_dir, ec);
      if (ec) return absl::PermissionDeniedError(fmt::format("cannot create '{}'", s.local_dir));
      s.manifest.backend = st.backend;
      s.manifest.key_groups = st.key_groups;
      for (const CheckpointMetadata::StoreFile& f : st.files) {
        MS_RETURN_IF_ERROR(storage.get_file(f.path, s.local_dir + "/" + f.name));
        s.manifest.files.push_back(StoreManifest::File{f.name, f.shared});
      }
      into.stores.push_back(std::move(s));
    }
  }
  referenced_[id] = std::move(meta.files);
  return r;
}

}  // namespace meterstream::detail
