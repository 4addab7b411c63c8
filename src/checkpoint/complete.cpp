// Completing a checkpoint: uploading the workers' parts, writing the
// metadata (the commit point of jobs without a commit-point sink), and
// committing the sinks.
#include "checkpoint/coordinator.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <utility>

#include "checkpoint/metadata.hpp"
#include "checkpoint/storage_util.hpp"
#include "meterstream/core/time.hpp"
#include "core/failpoint.hpp"
#include "fmt/format.h"

namespace meterstream::detail {

namespace fs = std::filesystem;

namespace {

Status file_sha256(const std::string& path, std::string* hex) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("cannot read '{}'", path));
  Sha256 sha;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) return absl::DataLossError(fmt::format("error reading '{}'", path));
  *hex = detail::to_hex(sha.finish());
  return Status();
}

}  // namespace

StatusOr<std::string> Coordinator::upload_shared(const std::string& local_file,
                                                 const std::string& name) {
  struct stat st {};
  if (::stat(local_file.c_str(), &st) != 0) {
    return absl::NotFoundError(fmt::format("snapshot file '{}' is missing", local_file));
  }
  // Hard links of one SST file share an inode: hash each file once per run.
  // The inode alone does not name a file: once RocksDB deletes an SST (and
  // its snapshot links are gone) the file system hands the inode to a new
  // file, often one of the same size, which must not inherit the old
  // content name. RocksDB never reuses an SST's file name in a database, and
  // a reused inode gets a new mtime, so both go into the key.
  const std::string key =
      fmt::format("{}:{}:{}:{}.{}:{}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                  st.st_mtim.tv_nsec, name);
  auto it = hash_cache_.find(key);
  if (it == hash_cache_.end()) {
    std::string hex;
    MS_RETURN_IF_ERROR(file_sha256(local_file, &hex));
    const std::size_t dot = name.rfind('.');
    it = hash_cache_.emplace(key, "shared/" + hex + (dot == std::string::npos ? "" : name.substr(dot)))
             .first;
  }
  const std::string& path = it->second;
  if (shared_files_.count(path) == 0) {
    MS_RETURN_IF_ERROR(options_.storage->put_file(path, local_file));
    uploaded_bytes_->add(static_cast<std::int64_t>(st.st_size));
    shared_files_.insert(path);
    failpoint("upload");
  }
  return path;
}

Status Coordinator::complete(std::int64_t id, std::vector<WorkerCheckpointPart> parts, bool final) {
  CheckpointStorage& storage = *options_.storage;
  std::error_code ec;
  const fs::path local = fs::path(local_dir_) / "snapshots" / checkpoint_dir(id);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{local};

  std::int64_t sync_us = 0;
  for (WorkerCheckpointPart& p : parts) {
    sync_us = std::max(sync_us, p.sync_us);
    for (SplitState& s : p.splits) splits_[{s.source, s.split}] = std::move(s);
    // Staged output waits for a checkpoint that completes, this one or later.
    for (SinkPrepared& s : p.prepared) uncommitted_.push_back(std::move(s));
  }
  last_sync_ms_->set(sync_us / 1000);
  for (const WorkerCheckpointPart& p : parts) {
    if (!p.error.ok()) {
      return Status(p.error.code(), fmt::format("a snapshot failed: {}", std::string(p.error.message())));
    }
  }
  max_sync_ms_->set(std::max(max_sync_ms_->value(), sync_us / 1000));

  CheckpointMetadata meta;
  meta.id = id;
  meta.time_ms = processing_time_now();
  meta.final = final;
  meta.parallelism = job_.parallelism();
  meta.max_parallelism = job_.max_parallelism();
  meta.key_group_ranges = job_.key_group_ranges();
  for (const auto& [key, s] : splits_) meta.sources.push_back(s);

  int n = 0;
  for (const WorkerCheckpointPart& p : parts) {
    for (const OperatorInstanceState& op : p.operators) {
      CheckpointMetadata::Operator entry;
      entry.op = op.op;
      entry.worker = op.worker;
      entry.key_groups = op.key_groups;
      entry.state_path = fmt::format("{}/op-{}.state", checkpoint_dir(id), n);
      const std::string state = encode_instance_state(op);
      MS_RETURN_IF_ERROR(storage.put(entry.state_path, state));
      uploaded_bytes_->add(static_cast<std::int64_t>(state.size()));
      failpoint("upload");
      meta.files.insert(entry.state_path);
      int m = 0;
      for (const LocalStoreCopy& s : op.stores) {
        CheckpointMetadata::Store store{s.manifest.backend, s.manifest.key_groups, {}};
        for (const StoreManifest::File& f : s.manifest.files) {
          const std::string local_file = s.local_dir + "/" + f.name;
          std::string path;
          if (f.shared) {
            MS_ASSIGN_OR_RETURN(path, upload_shared(local_file, f.name));
          } else {
            path = fmt::format("{}/op-{}-store-{}/{}", checkpoint_dir(id), n, m, f.name);
            MS_RETURN_IF_ERROR(storage.put_file(path, local_file));
            failpoint("upload");
          }
          meta.files.insert(path);
          store.files.push_back({f.name, path, f.shared});
        }
        entry.stores.push_back(std::move(store));
        ++m;
      }
      meta.operators.push_back(std::move(entry));
      ++n;
    }
  }
  for (const SinkPrepared& s : uncommitted_) meta.sinks[s.sink].push_back(s.prepared);
  const std::map<std::string, std::vector<std::string>>& by_sink = meta.sinks;

  // Staged output must survive what the metadata survives.
  for (const SinkRef& s : sinks_) {
    auto it = by_sink.find(s.uid);
    if (it == by_sink.end()) continue;
    Status st = s.sink->persist(it->second);
    if (!st.ok()) {
      return Status(st.code(), fmt::format("{}: making its staged output durable: {}", s.name,
                                           std::string(st.message())));
    }
  }

  // The commit point: a checkpoint exists once its metadata does.
  MS_ASSIGN_OR_RETURN(const std::string meta_text, encode_metadata(meta));
  failpoint("metadata");
  MS_RETURN_IF_ERROR(storage.put(metadata_path(id), meta_text));
  referenced_[id] = std::move(meta.files);
  consecutive_failures_ = 0;
  completed_->add();
  last_id_->set(id);

  failpoint("commit");
  CheckpointCommit checkpoint;
  checkpoint.id = id;
  checkpoint.final = final;
  for (const auto& [key, split] : splits_) {
    checkpoint.splits.push_back({split.source, split.split, split.position, split.ended});
  }
  Status committed = commit_sinks(std::move(checkpoint), uncommitted_);
  if (!committed.ok()) {
    // Without a commit-point sink the checkpoint stands: a restore from it
    // commits again. With one, it did not commit, and a restore goes back to
    // the one before. Either way this run cannot go on with output it failed
    // to publish. The error is returned too: finish() must not report the
    // final checkpoint (the last of the output) as committed when it is not.
    job_.fail(committed);
    commit_error_ = committed;
    return committed;
  }
  uncommitted_.clear();
  failpoint("retention");
  Status retained = retain();
  if (!retained.ok()) {
    job_.log(LogLevel::kWarning, fmt::format("checkpoint {}: retention: {}", id,
                                             std::string(retained.message())));
  }
  return Status();
}

Status Coordinator::commit_sinks(CheckpointCommit checkpoint,
                                 const std::vector<SinkPrepared>& prepared) {
  // The commit-point sink commits every checkpoint, with output or not: its
  // commit records which checkpoint the job restores.
  std::vector<const SinkRef*> order;
  if (commit_point_ != nullptr) order.push_back(commit_point_);
  for (const SinkRef& s : sinks_) {
    if (&s != commit_point_) order.push_back(&s);
  }
  for (const SinkRef* s : order) {
    std::vector<std::string> mine;
    for (const SinkPrepared& p : prepared) {
      if (p.sink == s->uid) mine.push_back(p.prepared);
    }
    if (mine.empty() && s != commit_point_) continue;
    Status st = s->sink->commit(checkpoint, mine);
    if (!st.ok()) {
      return Status(st.code(), fmt::format("{}: committing checkpoint {}: {}", s->name,
                                           checkpoint.id, std::string(st.message())));
    }
    if (s == commit_point_) {
      checkpoint.transactional = true;
      failpoint("committed");
    }
  }
  // Sources hear of it last; what they do with it (a Kafka source commits
  // its offsets for consumer lag) never decides what is restored.
  for (const SourceRef& src : sources_) {
    CheckpointCommit mine = checkpoint;
    mine.splits.clear();
    for (const CheckpointCommit::Split& split : checkpoint.splits) {
      if (split.source == src.uid) mine.splits.push_back(split);
    }
    Status st = src.source->checkpoint_committed(mine);
    if (!st.ok()) {
      source_commit_errors_->add();
      job_.log(LogLevel::kWarning, fmt::format("checkpoint {}: {}: {}", checkpoint.id, src.name,
                                               std::string(st.message())));
    }
  }
  return Status();
}

}  // namespace meterstream::detail
