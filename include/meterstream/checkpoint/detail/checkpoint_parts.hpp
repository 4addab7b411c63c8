// The checkpoint's data model: what workers and operators put into a
// checkpoint, what they get back on restore, and the coordinator as workers
// see it (CheckpointHub). Not API. The checkpoint layer owns it; the runtime
// fills it (docs/architecture.md, "Checkpoints").
//
// At barrier N every operator instance writes its state as bytes per key
// group (so that a restore with other key-group ranges can pick the key
// groups it owns), an optional operator-wide part (its watermark, counters:
// merged over the old instances on restore), and the snapshots of its state
// stores. Sources record each split's position and watermark generator, sinks
// what they staged. The checkpoint coordinator (src/checkpoint/) uploads all
// of it and writes the metadata; on restore it downloads a checkpoint into a
// RestoredCheckpoint that operators read in open().
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/core/time.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::detail {

// The state of one split of a source at a barrier (or at its end): its
// reader's position and its watermark generator.
struct SplitState {
  std::string source;      // the source node's name
  int split = 0;           // index among the source's splits
  std::string position;    // SplitReader::position()
  Timestamp watermark = kMinTimestamp;
  Timestamp max_timestamp = kMinTimestamp;
  std::int64_t since_watermark = 0;  // records since the last watermark (the cadence)
  bool ended = false;
};

// A copy of a state store in a local folder: a store snapshot waiting for its
// upload, or one downloaded for a restore. `manifest` lists its files.
struct LocalStoreCopy {
  std::string local_dir;
  StoreManifest manifest;
};

// The key group of state bytes that hold entries of every key group of an
// instance (the restore filters them by key).
inline constexpr int kAllKeyGroups = -1;

// One operator instance's state at a barrier: its bytes per key group, its
// operator-wide bytes and copies of its state stores.
struct OperatorInstanceState {
  std::string op;  // the operator's name (a node name, or a store's operator id)
  int worker = 0;
  KeyGroupRange key_groups;
  std::vector<std::pair<int, std::string>> keyed;  // key group (or kAllKeyGroups) -> bytes
  std::string operator_state;                      // operator-wide bytes, may be empty
  std::vector<LocalStoreCopy> stores;
};

// What a sink staged for commit.
struct SinkPrepared {
  std::string sink;  // the sink node's name
  std::string prepared;
};

// One worker thread's part of checkpoint `id`: what its operators, sources
// and sinks contributed, reported to the coordinator in one piece.
struct WorkerCheckpointPart {
  std::int64_t id = 0;
  std::vector<OperatorInstanceState> operators;
  std::vector<SplitState> splits;
  std::vector<SinkPrepared> prepared;
  std::int64_t sync_us = 0;  // time spent in operators' snapshots (the pause)
  Status error;              // an operator's snapshot failed: the checkpoint fails

  // Appends `other` (contributions of another epoch) to this one.
  void merge(WorkerCheckpointPart&& other) {
    for (auto& o : other.operators) operators.push_back(std::move(o));
    for (auto& s : other.splits) splits.push_back(std::move(s));
    for (auto& p : other.prepared) prepared.push_back(std::move(p));
    sync_us += other.sync_us;
    if (error.ok()) error = std::move(other.error);
  }
};

// A checkpoint as restore gives it to operators (read-only, shared by workers).
struct RestoredCheckpoint {
  struct Operator {
    std::map<int, std::vector<std::string>> keyed;  // key group -> state bytes
    std::map<int, std::string> operator_states;     // old worker index -> bytes
    std::vector<LocalStoreCopy> stores;         // downloaded
  };

  std::int64_t id = 0;
  // Taken at the end of the input: a job restored from it ends at once.
  bool final = false;
  std::map<std::string, Operator> operators;
  // (source name, split) -> its snapshot.
  std::map<std::pair<std::string, int>, SplitState> splits;
  // sink name -> what the checkpoint still has to commit.
  std::map<std::string, std::vector<std::string>> prepared;

  const Operator* find(const std::string& op) const {
    auto it = operators.find(op);
    return it == operators.end() ? nullptr : &it->second;
  }
};

// The checkpoint coordinator as workers see it (src/checkpoint/coordinator.hpp
// implements it).
class CheckpointHub {
 public:
  virtual ~CheckpointHub() = default;
  // The newest checkpoint whose barrier sources are to inject; 0: none yet.
  std::atomic<std::int64_t> triggered{0};
  // Reporting unit `unit` (a worker thread) has passed barrier snapshot.id on
  // every head; its operators' snapshots are in `snapshot`.
  virtual void report(int unit, WorkerCheckpointPart snapshot) = 0;
  // Unit `unit` ran to the end of its input; `rest` holds what it produced
  // since its last report (staged sink output, ended splits).
  virtual void finished(int unit, WorkerCheckpointPart rest) = 0;
  // A new local folder (not yet existing) for a store snapshot of checkpoint `id`.
  virtual std::string store_snapshot_dir(std::int64_t id, const std::string& op, int worker) = 0;
};

// Little helpers for operators' state bytes.
inline void put_u64(std::string* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}
inline bool get_u64(std::string_view* in, std::uint64_t* v) {
  if (in->size() < 8) return false;
  std::uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r = (r << 8) | static_cast<unsigned char>((*in)[static_cast<std::size_t>(i)]);
  in->remove_prefix(8);
  *v = r;
  return true;
}
inline void put_i64(std::string* out, std::int64_t v) { put_u64(out, static_cast<std::uint64_t>(v)); }
inline bool get_i64(std::string_view* in, std::int64_t* v) {
  std::uint64_t u = 0;
  if (!get_u64(in, &u)) return false;
  *v = static_cast<std::int64_t>(u);
  return true;
}

}  // namespace meterstream::detail
