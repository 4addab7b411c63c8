// Internal to the RocksDB state backend: the one RocksDB instance of a
// backend, its tuning (the memory budget), its column families and its
// checkpoints.
//
// One column family per (operator, state), named "<operator id>/<state
// name>", shared by the stores of that operator (each owns a disjoint key
// group range). Column families are reference-counted by the stores that
// registered them: the last store to close drops its column family, the
// others delete their own key group range, so that a store always starts
// empty without carrying deleted data around.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/state/rocksdb_state_backend.hpp"
#include "meterstream/state/state_backend.hpp"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "state/rocksdb/directory.hpp"
#include "state/rocksdb/ttl_filter.hpp"

namespace meterstream::detail {

// A column family of a state, shared by the stores of its operator.
struct Column {
  std::string name;  // "<operator id>/<state name>"
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  StateDescriptor descriptor;
  int users = 0;  // stores that registered it
};

// The DB and everything that must outlive it. Held by the backend and by every
// store, so that stores may outlive the backend object. Thread-safe.
class Database {
 public:
  Database() = default;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // Opens the DB in options.path (whose layout was checked), drops the
  // column families left by an earlier run and writes the layout marker.
  Status open(const RocksDBStateBackendOptions& options);

  rocksdb::DB* db() const { return db_.get(); }
  const std::string& path() const { return path_; }
  std::size_t operator_memory_bytes() const { return operator_memory_bytes_; }
  // The options of every column family (without the TTL compaction filter).
  const rocksdb::ColumnFamilyOptions& cf_options() const { return cf_options_; }

  // The event-time clocks of the open stores of `operator_id`, which its TTL
  // column families' compaction filters measure expiry on.
  std::shared_ptr<OperatorClocks> operator_clocks(const std::string& operator_id);

  // Writes a checkpoint of the whole DB into the new folder `dir`.
  Status create_checkpoint(const std::string& dir);

  // The column family of `descriptor` for operator `operator_id`: the
  // existing one when another store of the operator registered it (same kind
  // and TTL), else a new one.
  StatusOr<Column*> acquire_column(const std::string& operator_id,
                                   const StateDescriptor& descriptor);

  // A store of key groups `range` no longer uses `column`: the last user
  // drops it, the others delete the range. Errors are ignored (a store's
  // destructor has no one to report to; the data is unreachable anyway).
  void release_column(Column* column, KeyGroupRange range);

 private:
  // Declared first: released last, after the DB is closed.
  DirectoryClaim claim_;
  std::string path_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager_;
  std::size_t operator_memory_bytes_ = 0;
  std::shared_ptr<rocksdb::MergeOperator> append_operator_;
  rocksdb::ColumnFamilyOptions cf_options_;
  // Declared after what it uses: destroyed (closed, by ~Database) before it.
  std::unique_ptr<rocksdb::DB> db_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Column>> columns_;
  std::map<std::string, std::shared_ptr<OperatorClocks>> clocks_;
  std::mutex checkpoint_mu_;  // serialises create_checkpoint()
};

}  // namespace meterstream::detail
