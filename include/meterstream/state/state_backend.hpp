// State backends: where keyed state lives.
//
// A StateBackend is a process-wide factory (one per job, shared by all
// workers). Each keyed operator instance opens a KeyedStateStore from it for the
// key groups it owns; the store holds that instance's keyed state as bytes,
// addressed by (state id, key group, key bytes). The typed API that operators
// and user code use (ValueState, MapState, ...) is in state/state.hpp and sits
// on top of this byte-level interface.
//
// Two backends implement it: the memory backend below (small jobs and tests)
// and RocksDB (state/rocksdb_state_backend.hpp: one instance per process, a
// column family per state, keys prefixed by key group). Both pass the same
// test suite (tests/state/).
//
// State lives as long as its store: destroying the store drops it. Durability
// comes from checkpoints: KeyedStateStore::snapshot() writes a store's state
// into files of a local folder (memory: one file of entries; RocksDB: a
// RocksDB checkpoint, whose SST files later checkpoints share), which the
// checkpoint coordinator uploads, and restore() adds such files to a new
// store, whatever its key group range (rescaling). docs/state.md, "Snapshots
// and restore", has the formats.
//
// Thread-safety: StateBackend is thread-safe. A KeyedStateStore, and every
// state handle built on it, is used by one thread at a time (the operator
// instance's task).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/core/time.hpp"
#include "meterstream/state/ttl.hpp"

namespace meterstream {

// A named state of an operator.
struct StateDescriptor {
  // The kinds of keyed state (Flink's ValueState, MapState, ListState,
  // AggregatingState). The kind decides how the typed API lays out its bytes,
  // so a name is bound to one kind.
  enum class Kind { kValue, kMap, kList, kAggregating };

  StateDescriptor() = default;
  // Example: {"seen", StateDescriptor::Kind::kValue, ms::Ttl(24h)}
  StateDescriptor(std::string name, Kind kind = Kind::kValue,
                  std::optional<StateTtl> ttl = std::nullopt)
      : name(std::move(name)), kind(kind), ttl(ttl) {}

  // Unique within the operator; names the state in errors and snapshots.
  std::string name;
  Kind kind = Kind::kValue;
  // The state's time-to-live (state/ttl.hpp), or none: values live until
  // removed. With a TTL, the store stamps every stored value with an 8-byte
  // expiry and never returns expired values; see KeyedStateStore.
  std::optional<StateTtl> ttl;
};

// The name of a kind for messages: "value", "map", "list", "aggregating".
const char* to_string(StateDescriptor::Kind kind);

// The manifest of a store's snapshot: what KeyedStateStore::snapshot() wrote
// (files in a local folder, from which KeyedStateStore::restore() rebuilds
// the state), the backend that wrote them and the store's key groups. The checkpoint coordinator
// uploads the files and records this description in the checkpoint's
// metadata.
struct StoreManifest {
  struct File {
    // Relative to the snapshot's folder ("state.bin", "000012.sst").
    std::string name;
    // Immutable and identified by its content (RocksDB SST files): stored once
    // under a content hash and shared by every later checkpoint that still
    // uses it (incremental checkpoints). Other files belong to one checkpoint.
    bool shared = false;
  };
  std::string backend;       // the backend's name(): "memory", "rocksdb"
  KeyGroupRange key_groups;  // of the store that took the snapshot
  std::vector<File> files;
};

// The keyed state of one operator instance: bytes addressed by (state id,
// key group, key). Entries of a (state, key group) are ordered by key bytes.
//
// Every operation on a key group outside key_group_range() and on an unknown
// state id returns kInvalidArgument; error messages name the operator, the
// state and the key group.
//
// States with a TTL (StateDescriptor::ttl): get(), put(), append() and
// for_each() take and return the caller's bytes; the store keeps each value
// as an 8-byte big-endian expiry timestamp followed by those bytes. put() and
// append() stamp expiry = now + ttl (append() refreshes the whole value);
// get() and for_each() skip expired values (and remove them), and re-stamp
// the values they return when the TTL has refresh_on_read. A stored TTL value
// shorter than 8 bytes is kDataLoss. for_each_in_key_group() yields stored
// bytes, expiry included, and put_stored() writes them back unchanged, so a
// snapshot and its restore keep the expiries.
//
// Callbacks (for_each, for_each_in_key_group) must not modify the store; they
// may throw, and the exception propagates to the caller.
//
// Thread-safety: one thread at a time.
class KeyedStateStore {
 public:
  KeyedStateStore() = default;
  virtual ~KeyedStateStore() = default;
  KeyedStateStore(const KeyedStateStore&) = delete;
  KeyedStateStore& operator=(const KeyedStateStore&) = delete;

  // The backend's name, for logs ("memory", "rocksdb").
  virtual const char* name() const = 0;

  // What the store was opened with.
  virtual const std::string& operator_id() const = 0;
  virtual KeyGroupRange key_group_range() const = 0;
  virtual int max_parallelism() const = 0;

  // Registers a state and returns its id (small integers from 0, in order of
  // registration). Registering the same name and kind again returns the same
  // id; the same name with another kind or another TTL is kInvalidArgument,
  // as are an empty name and a TTL whose ttl_ms is not positive. RocksDB
  // also rejects a name that a store of the same operator (another key group
  // range) registered with another kind or TTL.
  virtual StatusOr<int> register_state(const StateDescriptor& descriptor) = 0;
  // The number of registered states; ids are 0 .. num_states() - 1.
  virtual int num_states() const = 0;
  // The descriptor of a registered state, or nullptr for an unknown id.
  virtual const StateDescriptor* descriptor(int state) const = 0;

  // Reads the value of `key` into `*value`; returns false (and leaves `*value`
  // unspecified) when there is none.
  virtual StatusOr<bool> get(int state, int key_group, std::string_view key,
                             std::string* value) = 0;
  // Sets the value of `key`.
  virtual Status put(int state, int key_group, std::string_view key,
                     std::string_view value) = 0;
  // Appends `bytes` to the value of `key`, which is created when absent (RocksDB
  // maps it to a Merge with a concatenating merge operator). ListState uses it
  // so that adding an element does not read the list.
  virtual Status append(int state, int key_group, std::string_view key,
                        std::string_view bytes) = 0;
  // Removes `key`; removing an absent key is not an error.
  virtual Status remove(int state, int key_group, std::string_view key) = 0;

  // Calls fn(key, value) for the entries whose key starts with `prefix`, in
  // key order, until fn returns false. An empty prefix visits the whole
  // (state, key group).
  virtual Status for_each(
      int state, int key_group, std::string_view prefix,
      absl::FunctionRef<bool(std::string_view key, std::string_view value)> fn) = 0;
  // Removes the entries whose key starts with `prefix`.
  virtual Status remove_prefix(int state, int key_group, std::string_view prefix) = 0;

  // Calls fn(state, key, value) for every entry of a key group, state by state
  // in id order and in key order within a state, until fn returns false. This
  // is how the memory backend's snapshot() reads the store.
  virtual Status for_each_in_key_group(
      int key_group,
      absl::FunctionRef<bool(int state, std::string_view key, std::string_view value)>
          fn) = 0;
  // Removes every entry of a key group, in all states (e.g. before restoring
  // it, or after handing it to another worker).
  virtual Status clear_key_group(int key_group) = 0;

  // Writes an entry as for_each_in_key_group() yielded it: for a state with a
  // TTL, `stored` starts with its expiry (kInvalidArgument when shorter than
  // 8 bytes); for other states it is put(). This is how the memory backend's
  // restore() writes.
  virtual Status put_stored(int state, int key_group, std::string_view key,
                            std::string_view stored) = 0;

  // Event time for event-time TTLs: operators call it with each watermark.
  // The clock is this store's own (its operator instance's): the store keeps
  // the largest watermark passed to it, smaller ones are ignored, and no
  // other store's watermark moves it (one operator's final kMaxTimestamp
  // watermark expires nothing of another's).
  virtual void advance_event_time(Timestamp watermark) = 0;
  // The time a TTL of `domain` is measured against now: this store's event
  // time (kMinTimestamp before the first watermark) or the system clock.
  virtual Timestamp current_time(TimeDomain domain) const = 0;
  // Removes the expired values of this store's TTL states physically, or
  // has them removed. Memory: a sweep, done when it returns. RocksDB: a
  // request to its background threads (a flush of the TTL states, whose TTL
  // filter runs on flushes too, and a compaction of this store's key range),
  // which returns at once: an operator's thread never compacts. Reads
  // already never return expired values; operators may call it periodically
  // to bound the space they take.
  virtual Status purge_expired() = 0;
  // The approximate space this store's state takes: memory backend, the bytes
  // of keys and values; RocksDB, the bytes of its key range in memtables and
  // SST files (compressed, on disk).
  virtual StatusOr<std::uint64_t> approximate_size_bytes() = 0;

  // Checkpoints. The synchronous part of a checkpoint of this store: writes,
  // under the local folder `dir` (which must not exist yet; it is created),
  // files from which restore() rebuilds the store's state as it is now; later
  // changes to the store do not change them. Memory: a copy of the entries in
  // one file. RocksDB: a flush, then rocksdb::Checkpoint's hard links to the
  // database's files; SST files are marked shared.
  virtual StatusOr<StoreManifest> snapshot(const std::string& dir) = 0;

  // Adds to this store the entries of `snapshot` (its files downloaded into
  // the local folder `dir` under their names) whose key group is in this
  // store's range; the others are skipped, so that a restore may use other
  // ranges than the snapshot (rescaling: several snapshots restore into one
  // store, or one snapshot into several). The snapshot was taken by a store
  // of the same operator id and backend (kFailedPrecondition otherwise).
  // The snapshot records its states' descriptors: restore() registers those
  // not registered yet (so user code that registers them later gets the same
  // state back) and matches the others by name; a state registered with
  // another kind or TTL is kFailedPrecondition. Values keep their TTL expiry.
  // A file that is missing or does not parse is kDataLoss naming it.
  virtual Status restore(const std::string& dir, const StoreManifest& snapshot) = 0;
};

// A process-wide factory of keyed state stores.
//
// Thread-safety: all methods may be called concurrently.
class StateBackend {
 public:
  StateBackend() = default;
  virtual ~StateBackend() = default;
  StateBackend(const StateBackend&) = delete;
  StateBackend& operator=(const StateBackend&) = delete;

  // The backend's name, for logs ("memory", "rocksdb").
  virtual const char* name() const = 0;

  // The memory that operators may use, in all, for their in-memory copies of
  // state (window tables, write-back caches) before they spill to the store;
  // 0 when the store keeps state in memory anyway and nothing is to be spilled
  // (the memory backend).
  virtual std::size_t operator_memory_bytes() const { return 0; }

  // Opens the keyed state of operator instance `operator_id` for the key groups
  // `range`, out of `max_parallelism` key groups. The store starts empty.
  //
  // Errors: kInvalidArgument for an empty operator id, max_parallelism < 1, or
  // a range that is empty or not within [0, max_parallelism); kAlreadyExists
  // when a store of the same operator id whose range overlaps `range` is open.
  // Stores of different operator ids never see each other's state.
  virtual StatusOr<std::unique_ptr<KeyedStateStore>> open_keyed_store(
      std::string_view operator_id, KeyGroupRange range, int max_parallelism) = 0;
};

// Options of the memory state backend. None yet.
struct MemoryStateBackendOptions {};

// A state backend that keeps state in memory: per state and key group, an
// ordered map from key bytes to value bytes. For small jobs and tests; state
// must fit in memory.
StatusOr<std::shared_ptr<StateBackend>> make_memory_state_backend(
    const MemoryStateBackendOptions& options = {});

}  // namespace meterstream
