// Checkpoints: what a job needs to survive a crash with exact results.
//
// With JobOptions::checkpoint.interval > 0, a coordinator thread in the job
// injects checkpoint barrier N into every source split every interval. Each
// operator snapshots its state when barrier N has arrived on all its inputs
// (aligned barriers: an input that is ahead waits) and forwards it; sinks
// stage the output written before it. The snapshots (RocksDB state
// incrementally: SST files are uploaded once and shared by later checkpoints)
// are uploaded to the CheckpointStorage while processing goes on; then the
// checkpoint's metadata file is written, last: a checkpoint without its
// metadata does not exist. Then the sinks publish the output staged for it
// (exactly-once output). The last `retained` checkpoints are kept.
//
// A job started with `restore` resumes from a checkpoint: sources seek to
// their positions, operators get their state back (for the key groups they
// own: restoring with another parallelism redistributes them), and sinks
// finish the commit of the restored checkpoint and discard later output.
//
// Layout in the storage (docs/checkpoints.md):
//   shared/<sha256>.sst            immutable files shared by checkpoints
//   chk-<id>/...                   files of one checkpoint
//   chk-<id>/_metadata             JSON, written last
//
// Example:
//   MS_ASSIGN_OR_RETURN(auto storage, ms::make_checkpoint_storage("/var/lib/meters/chk"));
//   ms::JobOptions o;
//   o.checkpoint = ms::enable_checkpointing(std::chrono::seconds(1), std::move(storage));
//   o.checkpoint.restore = ms::RestoreFrom::latest();
//   MS_RETURN_IF_ERROR(pipeline.run(o));
//
// Thread-safety: value types.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "meterstream/checkpoint/checkpoint_storage.hpp"

namespace meterstream {

// Which checkpoint a job starts from.
struct RestoreFrom {
  enum class Kind { kNone, kLatest, kId, kPath };

  // Start without state (the default).
  static RestoreFrom none() { return RestoreFrom(); }
  // The newest completed checkpoint in the storage whose metadata and files
  // verify; older ones are tried when it does not (a corrupt or missing file
  // is logged with its name). Without any checkpoint the job starts from
  // scratch.
  static RestoreFrom latest() {
    RestoreFrom r;
    r.kind = Kind::kLatest;
    return r;
  }
  // Checkpoint `id`; an error when it does not exist or does not verify.
  static RestoreFrom id(std::int64_t id) {
    RestoreFrom r;
    r.kind = Kind::kId;
    r.checkpoint_id = id;
    return r;
  }
  // The checkpoint whose metadata is at `path` in the storage
  // ("chk-0000000007/_metadata", or its folder "chk-0000000007").
  static RestoreFrom path(std::string path) {
    RestoreFrom r;
    r.kind = Kind::kPath;
    r.metadata_path = std::move(path);
    return r;
  }

  Kind kind = Kind::kNone;
  std::int64_t checkpoint_id = 0;
  std::string metadata_path;
};

struct CheckpointOptions {
  // Time between the start of one checkpoint and the next; a checkpoint that
  // takes longer delays the next (one runs at a time). 0: no checkpoints.
  // Default: 0.
  std::chrono::milliseconds interval{0};

  // Where checkpoints go. Required when interval > 0 or restore is not none.
  std::shared_ptr<CheckpointStorage> storage;

  // A local working folder: snapshots wait here for their upload, restores
  // download here. Default: empty, a folder under the system's temp folder,
  // removed when the job ends.
  std::string local_dir;

  // Completed checkpoints kept; older ones, and shared files that no kept
  // checkpoint references, are deleted. At least 1. Default: 3.
  int retained = 3;

  // A checkpoint that fails (storage unreachable, a snapshot error) is logged
  // and counted ("checkpoints_failed"), and the job goes on; after this many
  // failures in a row the job fails with the last one's error. At least 1.
  // Default: 3.
  int max_consecutive_failures = 3;

  // Where the job starts from. Default: none.
  RestoreFrom restore;
};

// A checkpoint whose state is durable, as sinks and sources see it when it
// commits (SinkBase::commit(), SourceBase::checkpoint_committed()).
struct CheckpointCommit {
  struct Split {
    std::string source;    // the source node's name, as in the checkpoint metadata
    int split = 0;         // the split's index in its source
    std::string position;  // SplitReader::position() at the barrier
    bool ended = false;    // the split had ended
  };

  std::int64_t id = 0;
  // The job's last checkpoint, taken at the end of its input.
  bool final = false;
  // The position of every split in the checkpoint; for a source's
  // checkpoint_committed(), only that source's splits.
  std::vector<Split> splits;
  // A commit-point sink (SinkBase::commit_point()) committed this checkpoint,
  // and with it the positions of the job's Kafka sources inside its
  // transaction: sources must not commit them again.
  bool transactional = false;
};

// CheckpointOptions with `interval` and `storage`, other fields at their
// defaults.
inline CheckpointOptions enable_checkpointing(std::chrono::milliseconds interval,
                                              std::shared_ptr<CheckpointStorage> storage) {
  CheckpointOptions o;
  o.interval = interval;
  o.storage = std::move(storage);
  return o;
}

}  // namespace meterstream
