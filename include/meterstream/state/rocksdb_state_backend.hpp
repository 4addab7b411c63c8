// The RocksDB state backend: keyed state in one embedded RocksDB instance per
// backend, for state larger than memory.
//
// Layout (docs/state.md has the details):
//   - one column family per declared state, named "<operator id>/<state name>",
//     created when a store first registers the state;
//   - keys are the key group as 2 big-endian bytes followed by the key bytes,
//     so that a key group, or a range of them, is one contiguous key range
//     (snapshots scan it, clear_key_group() deletes it with DeleteRange);
//   - values are the codec's bytes; states with a TTL prefix them with an
//     8-byte expiry, and a compaction filter (on RocksDB's background
//     threads, on the operator's own event-time clock) drops expired values;
//   - ListState appends are RocksDB Merges with a concatenating merge operator.
//
// Memory: one LRU block cache of memory_budget_bytes holds data, index and
// filter blocks, and the memtables are charged to it (WriteBufferManager), so
// RocksDB's memory stays near the budget whatever the amount of state; see
// docs/state.md for what lies outside it.
//
// Durability: none by itself. Writes skip RocksDB's write-ahead log, and the
// state directory is working storage: state left in it by an earlier run is
// discarded when a backend opens it. Durable state comes from checkpoints:
// KeyedStateStore::snapshot() takes a RocksDB checkpoint of the DB (hard
// links to its SST files), restore() opens one read-only and copies its
// operator's key groups out of it.
//
// Thread-safety: the backend is thread-safe; each store is used by one thread
// at a time (see state_backend.hpp).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "meterstream/core/status.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream {

// Options of the RocksDB state backend.
struct RocksDBStateBackendOptions {
  // The state directory; created (with its parents) when missing. Required.
  std::string path;

  // The state's memory budget: RocksDB's shared block cache (which the
  // memtables are charged to) plus the operators' in-memory state (window
  // tables, write-back caches), which they spill to RocksDB beyond their
  // share. Default: 512 MiB.
  std::size_t memory_budget_bytes = std::size_t{512} << 20;

  // The share of memory_budget_bytes for operators' in-memory state
  // (StateBackend::operator_memory_bytes()); RocksDB gets the rest. In
  // (0, 1): 0 is refused (operators need a share to spill beyond).
  // Spilled state is written in large sequential chunks and read back by
  // scans, which need little cache; the window tables that it keeps out of
  // RocksDB need much more. Measured (Q1, 2 M meters, 256 MiB): 0.5 made
  // every window spill again and again (3.9 M events/s), 0.75 not (12 M).
  // Default: 0.75.
  double operator_memory_ratio = 0.75;

  // The share of memory_budget_bytes that memtables may fill before RocksDB
  // flushes them; the rest caches blocks. In (0, 1). Default: 0.5.
  double write_buffer_ratio = 0.5;

  // Whether a missing directory (or an empty one) gets a new database. When
  // false, a directory without meterstream state is kNotFound.
  // Default: true.
  bool create_if_missing = true;

  // RocksDB's background flush and compaction threads. Default: 2.
  int max_background_jobs = 2;
};

// The version of the on-disk layout that this build reads and writes; the
// state directory records it in the file MS_LAYOUT.
inline constexpr const char* kRocksDBStateLayoutVersion = "meterstream-rocksdb-state/1";

// Opens (or creates) the RocksDB state backend at options.path.
//
// Errors, all reported before anything in the directory is modified:
//   - kInvalidArgument: an empty path, a zero budget, an
//     operator_memory_ratio or write_buffer_ratio outside (0, 1),
//     max_background_jobs < 1;
//   - kPermissionDenied: the directory cannot be created or written;
//   - kFailedPrecondition: the path is not a directory (or lies under a
//     regular file); the directory is in use by another process or by another
//     backend of this process (RocksDB's LOCK); it holds a RocksDB database
//     without meterstream's layout marker or with another layout version (the
//     message names the path and both versions); it is not empty and holds no
//     meterstream state;
//   - kNotFound: create_if_missing is false and there is no state to open.
//
// Stores opened from the backend also reject max_parallelism > 32768 (the key
// group takes 2 bytes of each key).
StatusOr<std::shared_ptr<StateBackend>> make_rocksdb_state_backend(
    const RocksDBStateBackendOptions& options);

}  // namespace meterstream
