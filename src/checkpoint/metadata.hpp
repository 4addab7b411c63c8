// The checkpoint's format in storage. Not API. docs/checkpoints.md
// ("Metadata") describes it; every restore test reads checkpoints of
// this format, so it changes only with kFormat.
//
// A checkpoint `chk-<10-digit id>/` holds one object per operator instance
// ("op-<n>.state": its keyed bytes and operator-wide bytes), the private
// files of its store copies ("op-<n>-store-<m>/<file>"), and last the JSON
// metadata "_metadata", whose existence makes the checkpoint complete.
// Shared files ("shared/<sha256>.<ext>") are outside any checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "meterstream/checkpoint/detail/checkpoint_parts.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::detail {

// "chk-0000000007".
std::string checkpoint_dir(std::int64_t id);
// "chk-0000000007/_metadata".
std::string metadata_path(std::int64_t id);
// "chk-0000000007/..." -> 7; -1 when the path is not a checkpoint's.
std::int64_t checkpoint_id_of(std::string_view path);

// An operator instance's keyed bytes and operator-wide bytes as one object
// ("MSOPSTATE1", then length-prefixed key groups and bytes).
std::string encode_instance_state(const OperatorInstanceState& op);
// Adds the object `in` (read from `path`, written by old instance `worker`)
// to `into`; kDataLoss naming `path` when it does not decode.
Status decode_instance_state(std::string_view in, const std::string& path, int worker,
                             RestoredCheckpoint::Operator* into);

// The metadata of one checkpoint, as the JSON file holds it.
struct CheckpointMetadata {
  struct StoreFile {
    std::string name;  // in the store's folder
    std::string path;  // in the storage
    bool shared = false;
  };
  struct Store {
    std::string backend;
    KeyGroupRange key_groups;
    std::vector<StoreFile> files;
  };
  struct Operator {
    std::string op;  // the operator's uid
    int worker = 0;  // the instance's worker
    KeyGroupRange key_groups;
    std::string state_path;  // its encode_instance_state() object
    std::vector<Store> stores;
  };

  std::int64_t id = 0;
  std::int64_t time_ms = 0;
  bool final = false;
  int parallelism = 0;
  int max_parallelism = 0;
  std::vector<KeyGroupRange> key_group_ranges;
  std::vector<SplitState> sources;  // in (source, split) order
  std::vector<Operator> operators;
  std::map<std::string, std::vector<std::string>> sinks;  // sink uid -> staged output
  std::set<std::string> files;  // every object it references (retention)
};

// The JSON text of `meta`; kInternal if it does not encode.
StatusOr<std::string> encode_metadata(const CheckpointMetadata& meta);

// Parses the metadata `bytes` read from `path` for checkpoint `id`:
// kDataLoss naming `path` when it is not a checkpoint's metadata (not JSON,
// another format, malformed, another id); kFailedPrecondition when it was
// taken with another max_parallelism than `max_parallelism`.
StatusOr<CheckpointMetadata> decode_metadata(const std::string& bytes, const std::string& path,
                                             std::int64_t id, int max_parallelism);

// Only the files that the metadata `bytes` (read from `path`) references;
// kDataLoss naming `path` when it has none.
StatusOr<std::set<std::string>> decode_metadata_files(const std::string& bytes,
                                                      const std::string& path);

}  // namespace meterstream::detail
