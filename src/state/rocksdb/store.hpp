// Internal to the RocksDB state backend: the keyed state store of one
// operator instance, on the backend's Database (database.hpp).
//
// store.cpp has the reads, writes and scans; store_snapshot.cpp the
// snapshot and restore.
//
// Design notes:
//   - Non-TTL appends (ListState::add) are Merges with a concatenating merge
//     operator, so adding to a list does not read it. TTL states append by
//     read-modify-write instead: the whole list shares one expiry that every
//     append refreshes, and a merge operand cannot move the expiry of the
//     value under it, which the compaction filter, looking at one record at a
//     time, would then drop while the list is alive.
//   - remove_prefix() (MapState::clear, per key) deletes the keys it finds one
//     by one: one range tombstone per cleared key would pile up and slow every
//     read. clear_key_group() and store close, rare and wide, use DeleteRange.
//   - A snapshot is a rocksdb::Checkpoint of the whole DB (the flush it starts
//     puts the memtables, which no WAL backs, into SST files) plus a file of
//     the store's descriptors; a restore opens the checkpoint read-only and
//     copies the key groups it owns out of its operator's column families.
//   - The store's event-time clock is its own (KeyedStoreBase); it joins its
//     operator's clocks (OperatorClocks), which the TTL compaction filter of
//     the operator's column families measures on.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "meterstream/state/state_backend.hpp"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "state/rocksdb/database.hpp"
#include "state/store_common.hpp"

namespace meterstream::detail {

// A registered state of a RocksDB store.
struct RocksDBState {
  StateDescriptor descriptor;
  Column* column;  // owned by the Database
  rocksdb::ColumnFamilyHandle* cf;
};

class RocksDBKeyedStateStore final : public KeyedStoreBase<RocksDBState> {
 public:
  RocksDBKeyedStateStore(std::shared_ptr<OpenStores> open_stores, std::string operator_id,
                         KeyGroupRange range, int max_parallelism, std::shared_ptr<Database> db);
  ~RocksDBKeyedStateStore() override;

  const char* name() const override { return "rocksdb"; }

  StatusOr<bool> get(int state, int key_group, std::string_view key,
                     std::string* value) override;
  Status put(int state, int key_group, std::string_view key, std::string_view value) override;
  Status append(int state, int key_group, std::string_view key,
                std::string_view bytes) override;
  Status remove(int state, int key_group, std::string_view key) override;
  Status for_each(int state, int key_group, std::string_view prefix,
                  absl::FunctionRef<bool(std::string_view, std::string_view)> fn) override;
  Status remove_prefix(int state, int key_group, std::string_view prefix) override;
  Status for_each_in_key_group(
      int key_group,
      absl::FunctionRef<bool(int, std::string_view, std::string_view)> fn) override;
  Status clear_key_group(int key_group) override;
  Status put_stored(int state, int key_group, std::string_view key,
                    std::string_view stored) override;
  Status purge_expired() override;
  StatusOr<std::uint64_t> approximate_size_bytes() override;

  StatusOr<StoreManifest> snapshot(const std::string& dir) override;
  Status restore(const std::string& dir, const StoreManifest& snapshot) override;

 private:
  using State = RocksDBState;

  StatusOr<State> new_state(const StateDescriptor& descriptor) override;

  rocksdb::DB* db() const { return db_->db(); }

  // The key of (key group, key) in a reused buffer: valid until the next call.
  const std::string& make_key(int key_group, std::string_view key);

  // The state of (state, key group), or nullptr when either is invalid (then
  // locate_error says why). The hot path, so it builds no Status.
  const State* find(int state, int key_group) const {
    return valid(state, key_group) ? &states_[static_cast<std::size_t>(state)] : nullptr;
  }

  Status error(const rocksdb::Status& s, int state, int key_group, const char* what) const;

  const std::shared_ptr<Database> db_;
  const std::shared_ptr<OperatorClocks> operator_clocks_;
  rocksdb::ReadOptions read_options_;
  rocksdb::WriteOptions write_options_;
  std::string key_buffer_;
};

}  // namespace meterstream::detail
