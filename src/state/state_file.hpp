// Internal: what the memory and RocksDB backends share for
// KeyedStateStore::snapshot() and restore() (docs/state.md, "Snapshots and
// restore"): the state file, and the steps of a restore that do not depend
// on the backend.
//
// The state file ("state.bin" of the memory backend, "states.bin" of
// RocksDB's; error messages call it the snapshot file) describes the store that took the snapshot (operator id,
// max_parallelism, key groups, state descriptors) and, for the memory
// backend, holds its entries. Layout (integers big-endian):
//
//   "MSSNAP01"                        magic and format version
//   u32 len, operator id
//   u32 max_parallelism, u32 first key group, u32 last key group
//   u32 number of states, then per state:
//     u32 len, name; u8 kind; u8 has TTL; i64 ttl_ms; u8 domain; u8 refresh_on_read
//   entries up to the checksum, each:
//     u32 state (index in the list above); u32 key group;
//     u32 len, key; u32 len, stored value (TTL expiry included)
//   u64 checksum: hash_bytes() of everything before it
//
// The file is built and read whole in memory: the memory backend's state fits
// in memory, and RocksDB's file holds descriptors only.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::detail {

// The store that took a snapshot.
struct StateFileHeader {
  std::string operator_id;
  int max_parallelism = 0;
  KeyGroupRange key_groups;
  std::vector<StateDescriptor> states;  // in id order
};

// Builds a snapshot file in memory, then writes it.
class StateFileBuilder {
 public:
  explicit StateFileBuilder(const StateFileHeader& header);

  // `state` is an index into header.states.
  void add(int state, int key_group, std::string_view key, std::string_view stored);

  // Appends the checksum and writes the file `path`.
  Status write(const std::string& path);

 private:
  std::string bytes_;
};

// An entry of a snapshot file; the views point into the reader's buffer.
struct StateFileEntry {
  int state = 0;  // index into header().states
  int key_group = 0;
  std::string_view key;
  std::string_view stored;
};

// Reads a snapshot file whole and checks its checksum before anything is
// parsed, so that a restore does not apply half of a corrupt file.
class StateFileReader {
 public:
  // Reads `path`: kDataLoss naming it when it is missing, cannot be read, or
  // is not a snapshot file (magic, checksum, header).
  Status open(const std::string& path);

  const StateFileHeader& header() const { return header_; }

  // The next entry; false after the last. kDataLoss naming the file for an
  // entry that does not parse: truncated, an unknown state, a key group
  // outside the header's, a TTL value without its expiry.
  StatusOr<bool> next(StateFileEntry* entry);

 private:
  Status parse_error(const char* what) const;

  std::string path_;
  std::string bytes_;
  std::size_t pos_ = 0;
  std::size_t end_ = 0;  // where the checksum starts
  StateFileHeader header_;
};

// snapshot()'s folder: kAlreadyExists when `dir` exists (the interface wants
// a new one); creates its parent folders.
Status prepare_snapshot_dir(const std::string& dir);

// The first steps of restore(), for both backends: checks that `snapshot` is
// of `store`'s backend (kFailedPrecondition), that its files are all in `dir`
// (kDataLoss naming a missing one), reads its snapshot file `file_name`
// (kDataLoss), checks that it was taken by a store of `store`'s operator and
// max_parallelism with the key groups `snapshot` records (kFailedPrecondition;
// a file that disagrees with `snapshot` is kDataLoss), and registers the
// snapshot's states in `store` (kFailedPrecondition when one is registered
// with another kind or TTL). On success `*reader` is positioned at the first
// entry, `(*ids)[i]` is the store's id of header().states[i], and `*groups`
// is the key groups to restore: the snapshot's that `store` owns (maybe
// none: size() == 0).
Status begin_restore(KeyedStateStore& store, const std::string& dir,
                     const StoreManifest& snapshot, const std::string& file_name,
                     StateFileReader* reader, std::vector<int>* ids,
                     KeyGroupRange* groups);

}  // namespace meterstream::detail
