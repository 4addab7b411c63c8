// Design notes:
//   - Writes skip the WAL (the stores set disableWAL): the state is rebuilt
//     from checkpoints after a crash, so logging every write would only cost
//     I/O.
//   - Non-TTL appends (ListState::add) are Merges with a concatenating merge
//     operator, so adding to a list does not read it (see store.cpp for TTL
//     states).
//   - TTL column families get a compaction filter (ttl_filter.hpp) and
//     periodic compaction: expired values are removed on RocksDB's own
//     threads, never by a compaction on an operator's thread.
#include "state/rocksdb/database.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_buffer_manager.h"
#include "state/rocksdb/errors.hpp"
#include "state/rocksdb/keys.hpp"
#include "state/store_common.hpp"

namespace meterstream::detail {
namespace {

// ListState appends of non-TTL states: concatenation without a delimiter (the
// list encoding is self-delimiting). Associative, so RocksDB may combine
// operands before it sees the base value.
class AppendOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& /*key*/, const rocksdb::Slice* existing_value,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* /*logger*/) const override {
    new_value->clear();
    if (existing_value != nullptr) {
      new_value->reserve(existing_value->size() + value.size());
      new_value->append(existing_value->data(), existing_value->size());
    }
    new_value->append(value.data(), value.size());
    return true;
  }
  const char* Name() const override { return "meterstream.Append"; }
};

}  // namespace

Database::~Database() {
  if (db_ == nullptr) return;
  for (auto& [name, column] : columns_) {
    db_->DestroyColumnFamilyHandle(column->handle);
  }
  columns_.clear();
  db_->Close().PermitUncheckedError();
  db_.reset();
}

Status Database::open(const RocksDBStateBackendOptions& options) {
  path_ = options.path;
  MS_RETURN_IF_ERROR(claim_.acquire(path_));
  // The operators' share of the budget is theirs to keep in memory (never 0:
  // 0 would mean "state in memory anyway", which RocksDB's is not); RocksDB
  // gets the rest.
  operator_memory_bytes_ = std::max<std::size_t>(
      static_cast<std::size_t>(static_cast<double>(options.memory_budget_bytes) *
                               options.operator_memory_ratio),
      1);
  const std::size_t rocksdb_bytes =
      options.memory_budget_bytes - std::min(operator_memory_bytes_, options.memory_budget_bytes);
  cache_ = rocksdb::NewLRUCache(rocksdb_bytes);
  const auto write_buffer_bytes = static_cast<std::size_t>(
      static_cast<double>(rocksdb_bytes) * options.write_buffer_ratio);
  // cost_to_cache: the memtables' memory is charged to the block cache as
  // dummy entries, so blocks and memtables share the one budget.
  write_buffer_manager_ =
      std::make_shared<rocksdb::WriteBufferManager>(write_buffer_bytes, cache_);
  append_operator_ = std::make_shared<AppendOperator>();

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache_;
  // Index and filter blocks live in the cache too (else they grow with the
  // number of SST files, outside the budget); L0's stay pinned there.
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  using Role = rocksdb::CacheEntryRole;
  rocksdb::CacheEntryRoleOptions charged;
  charged.charged = rocksdb::CacheEntryRoleOptions::Decision::kEnabled;
  for (Role role :
       {Role::kFilterConstruction, Role::kBlockBasedTableReader, Role::kFileMetadata}) {
    table.cache_usage_options.options_overrides.insert({role, charged});
  }

  cf_options_.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_options_.merge_operator = append_operator_;
  // A column family's memtable flushes at a quarter of the memtable budget
  // (and at most 64 MiB); the WriteBufferManager flushes the largest ones
  // when all of them together reach it.
  cf_options_.write_buffer_size = std::clamp<std::size_t>(
      write_buffer_bytes / 4, std::size_t{1} << 20, std::size_t{64} << 20);
  cf_options_.max_write_buffer_number = 2;
  cf_options_.level_compaction_dynamic_level_bytes = true;

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.write_buffer_manager = write_buffer_manager_;
  db_options.max_background_jobs = options.max_background_jobs;
  // Nothing survives a restart (see the header), so skip the final flush.
  db_options.avoid_flush_during_shutdown = true;
  db_options.keep_log_file_num = 2;
  db_options.max_log_file_size = 4 << 20;
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;

  // Every existing column family must be opened; those of an earlier run
  // are dropped right after (the stores start empty). They are opened with
  // the append operator, so a compaction that starts before the drop can
  // resolve their merges.
  std::vector<std::string> names;
  if (!rocksdb::DB::ListColumnFamilies(db_options, path_, &names).ok()) {
    names = {rocksdb::kDefaultColumnFamilyName};
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    descriptors.emplace_back(name, cf_options_);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  const rocksdb::Status s = rocksdb::DB::Open(db_options, path_, descriptors, &handles, &db);
  if (!s.ok()) {
    const std::string message = s.ToString();
    if (s.IsIOError() && is_lock_error(message)) return in_use_error(path_, message);
    if (message.find("Permission denied") != std::string::npos) {
      return absl::PermissionDeniedError(
          absl::StrCat("RocksDB state dir '", path_, "' is not writable: ", message));
    }
    return from_rocksdb(s, absl::StrCat("opening RocksDB state dir '", path_, "'"));
  }
  db_.reset(db);
  Status dropped;
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    if (dropped.ok() && handle->GetName() != rocksdb::kDefaultColumnFamilyName) {
      const rocksdb::Status rs = db_->DropColumnFamily(handle);
      if (!rs.ok()) {
        dropped = from_rocksdb(rs, absl::StrCat("RocksDB state dir '", path_,
                                                "': dropping column family '",
                                                handle->GetName(), "' of an earlier run"));
      }
    }
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    db_->DestroyColumnFamilyHandle(handle);
  }
  MS_RETURN_IF_ERROR(dropped);
  return write_layout_marker(path_);
}

std::shared_ptr<OperatorClocks> Database::operator_clocks(const std::string& operator_id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<OperatorClocks>& clocks = clocks_[operator_id];
  if (clocks == nullptr) clocks = std::make_shared<OperatorClocks>();
  return clocks;
}

// A flush of every memtable (log_size_for_flush = 0; writes skip the WAL, so
// the memtables hold data that no file has yet), then hard links to the SST
// files and copies of MANIFEST, CURRENT and OPTIONS. Checkpoint documents
// nothing about concurrent calls; its implementation looks safe (a staging
// folder per call, DisableFileDeletions() counted, the live files listed
// under the DB mutex), but the calls are serialised anyway: each flushes
// every column family of the DB, so running them at once would only make
// them compete for the same flushes, where the next one now finds little
// left to flush.
Status Database::create_checkpoint(const std::string& dir) {
  std::lock_guard<std::mutex> lock(checkpoint_mu_);
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(db_.get(), &raw);
  const std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  if (s.ok()) s = checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0);
  if (!s.ok()) return from_rocksdb(s, absl::StrCat("RocksDB checkpoint into '", dir, "'"));
  return Status();
}

StatusOr<Column*> Database::acquire_column(const std::string& operator_id,
                                           const StateDescriptor& descriptor) {
  std::string name = absl::StrCat(operator_id, "/", descriptor.name);
  std::shared_ptr<OperatorClocks> clocks = operator_clocks(operator_id);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = columns_.find(name);
  if (it != columns_.end()) {
    MS_RETURN_IF_ERROR(check_same_state(operator_id, it->second->descriptor, descriptor));
    ++it->second->users;
    return it->second.get();
  }
  rocksdb::ColumnFamilyOptions cf = cf_options_;
  if (descriptor.ttl) {
    cf.compaction_filter_factory =
        std::make_shared<TtlFilterFactory>(descriptor.ttl->domain, std::move(clocks));
    // A state that is no longer written is never compacted on its own:
    // periodic compaction reruns the filter over files older than the time
    // to live (at least an hour, so that short TTLs do not keep RocksDB
    // compacting).
    const std::uint64_t ttl_s = static_cast<std::uint64_t>(descriptor.ttl->ttl_ms / 1000);
    cf.periodic_compaction_seconds = std::max<std::uint64_t>(ttl_s, 3600);
  }
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  const rocksdb::Status s = db_->CreateColumnFamily(cf, name, &handle);
  if (!s.ok()) {
    return from_rocksdb(s, absl::StrCat("operator '", operator_id, "' state '",
                                        descriptor.name, "': creating column family"));
  }
  auto column = std::make_unique<Column>();
  column->name = name;
  column->handle = handle;
  column->descriptor = descriptor;
  column->users = 1;
  Column* raw = column.get();
  columns_.emplace(std::move(name), std::move(column));
  return raw;
}

void Database::release_column(Column* column, KeyGroupRange range) {
  std::lock_guard<std::mutex> lock(mu_);
  if (--column->users > 0) {
    rocksdb::WriteOptions wo;
    wo.disableWAL = true;
    db_->DeleteRange(wo, column->handle, key_group_key(range.first),
                     key_group_key(range.last + 1))
        .PermitUncheckedError();
    return;
  }
  db_->DropColumnFamily(column->handle).PermitUncheckedError();
  db_->DestroyColumnFamilyHandle(column->handle);
  columns_.erase(column->name);
}

}  // namespace meterstream::detail
