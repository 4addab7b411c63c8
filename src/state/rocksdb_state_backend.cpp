// The RocksDB state backend (state/rocksdb_state_backend.hpp; the layout is
// described in docs/state.md).
//
// Design notes:
//   - One DB per backend; one column family per (operator, state) shared by
//     the stores of that operator (each owns a disjoint key group range).
//     Column families are reference-counted by the stores that registered
//     them: the last store to close drops its column family, the others
//     delete their own key group range, so that a store always starts empty
//     without carrying deleted data around.
//   - Writes skip the WAL (disableWAL): the state is rebuilt from checkpoints
//     after a crash, so logging every write would only cost I/O.
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
#include "meterstream/state/rocksdb_state_backend.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "rocksdb/cache.h"
#include "rocksdb/compaction_filter.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"
#include "rocksdb/write_buffer_manager.h"
#include "meterstream/state/state_backend.hpp"
#include "state/snapshot_file.hpp"
#include "state/store_common.hpp"
#include "state/ttl_format.hpp"

namespace meterstream {
namespace {

namespace fs = std::filesystem;
using detail::OpenStores;
using detail::TtlClock;

// The key group takes 2 bytes of each key; Flink's upper bound as well.
constexpr int kMaxKeyGroups = 1 << 15;
constexpr const char* kLayoutFile = "MS_LAYOUT";
// The descriptors of a snapshot's store (state/snapshot_file.hpp), next to
// the checkpoint's files.
constexpr const char* kSnapshotStatesFile = "states.bin";
// A restore writes in batches of about this many bytes.
constexpr std::size_t kRestoreBatchBytes = std::size_t{1} << 20;

std::string_view to_view(const rocksdb::Slice& s) { return {s.data(), s.size()}; }
rocksdb::Slice to_slice(std::string_view s) { return {s.data(), s.size()}; }

// Appends the 2-byte big-endian key group.
void put_key_group(int key_group, std::string* out) {
  out->push_back(static_cast<char>((key_group >> 8) & 0xff));
  out->push_back(static_cast<char>(key_group & 0xff));
}

std::string key_group_key(int key_group) {
  std::string k;
  put_key_group(key_group, &k);
  return k;
}

// The smallest key greater than every key starting with `prefix`. Every key
// starts with a key group < 2^15, whose first byte is < 0xff, so it exists.
std::string prefix_successor(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) {
    prefix.pop_back();
  }
  prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

bool contains_lock_error(const std::string& message) {
  // PosixEnv::LockFile: "While lock file: <dir>/LOCK: Resource temporarily
  // unavailable" (another process) or "lock hold by current process" (another
  // DB of this process).
  return message.find("lock") != std::string::npos || message.find("LOCK") != std::string::npos;
}

// A RocksDB error as a Status. `context` says what failed, on what.
Status from_rocksdb(const rocksdb::Status& s, const std::string& context) {
  const std::string message = absl::StrCat(context, ": ", s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsNoSpace() || s.IsMemoryLimit()) return absl::ResourceExhaustedError(message);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return absl::UnavailableError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsNotSupported()) return absl::UnimplementedError(message);
  if (s.IsNotFound()) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

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

// Drops the values of a TTL column family whose expiry has passed on the
// domain's clock (docs/state.md). Shared by all TTL column families of a
// domain and called from compaction threads concurrently: it is stateless
// apart from the (thread-safe) clock. RocksDB turns a dropped value into a
// tombstone, so no older version of the key reappears.
class TtlCompactionFilter final : public rocksdb::CompactionFilter {
 public:
  TtlCompactionFilter(TimeDomain domain, std::shared_ptr<TtlClock> clock)
      : domain_(domain), clock_(std::move(clock)) {}

  bool Filter(int /*level*/, const rocksdb::Slice& /*key*/,
              const rocksdb::Slice& existing_value, std::string* /*new_value*/,
              bool* /*value_changed*/) const override {
    Timestamp expiry = 0;
    // A value too short to hold an expiry is corrupt: keep it, so that the
    // read reports it rather than the data silently vanishing.
    if (!detail::get_expiry(to_view(existing_value), &expiry)) return false;
    return detail::is_expired(expiry, clock_->now(domain_));
  }

  const char* Name() const override {
    return domain_ == TimeDomain::kEventTime ? "meterstream.TtlEventTime"
                                             : "meterstream.TtlProcessingTime";
  }

 private:
  const TimeDomain domain_;
  const std::shared_ptr<TtlClock> clock_;
};

// The state directories opened by backends of this process (canonical
// paths). RocksDB locks its directory, but DB::Open rotates the info LOG
// before it takes the lock; checking first keeps a refused directory
// untouched.
class OpenDirectories {
 public:
  static OpenDirectories& instance() {
    static OpenDirectories* dirs = new OpenDirectories();  // never destroyed
    return *dirs;
  }
  bool acquire(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    return paths_.insert(path).second;
  }
  void release(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    paths_.erase(path);
  }

 private:
  std::mutex mu_;
  std::set<std::string> paths_;
};

// The pid of another process holding RocksDB's lock on `dir`, or 0. Must not
// be called while this process holds it: closing any descriptor of the LOCK
// file would drop this process's lock.
pid_t lock_holder(const std::string& dir) {
  const std::string lock_file = dir + "/LOCK";
  const int fd = ::open(lock_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct flock f = {};
  f.l_type = F_WRLCK;
  f.l_whence = SEEK_SET;
  pid_t holder = 0;
  if (::fcntl(fd, F_GETLK, &f) == 0 && f.l_type != F_UNLCK) holder = f.l_pid;
  ::close(fd);
  return holder;
}

Status in_use_error(const std::string& path, const std::string& detail) {
  return absl::FailedPreconditionError(
      absl::StrCat("RocksDB state dir '", path, "' is in use by another process (or by "
                   "another state backend of this process): ", detail));
}

// A column family of a state, shared by the stores of its operator.
struct Column {
  std::string name;  // "<operator id>/<state name>"
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  StateDescriptor descriptor;
  int users = 0;  // stores that registered it
};

// The DB and everything that must outlive it. Held by the backend and by every
// store, so that stores may outlive the backend object.
class Database {
 public:
  Database() = default;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  std::size_t operator_memory_bytes() const { return operator_memory_bytes_; }

  ~Database() {
    if (!registered_path_.empty()) OpenDirectories::instance().release(registered_path_);
    if (db_ == nullptr) return;
    for (auto& [name, column] : columns_) {
      db_->DestroyColumnFamilyHandle(column->handle);
    }
    columns_.clear();
    db_->Close().PermitUncheckedError();
    db_.reset();
  }

  // Opens the DB in `path` (whose layout was checked), drops the column
  // families left by an earlier run and writes the layout marker.
  Status open(const RocksDBStateBackendOptions& options) {
    path_ = options.path;
    std::error_code ec;
    std::string canonical = fs::weakly_canonical(path_, ec).string();
    if (ec) canonical = path_;
    if (!OpenDirectories::instance().acquire(canonical)) {
      return in_use_error(path_, "another backend of this process has it open");
    }
    registered_path_ = canonical;
    if (const pid_t holder = lock_holder(path_); holder != 0) {
      return in_use_error(path_, absl::StrCat("process ", holder, " holds its LOCK"));
    }
    // The operators' share of the budget is theirs to keep in memory; RocksDB
    // gets the rest.
    operator_memory_bytes_ = static_cast<std::size_t>(
        static_cast<double>(options.memory_budget_bytes) * options.operator_memory_ratio);
    const std::size_t rocksdb_bytes = options.memory_budget_bytes - operator_memory_bytes_;
    cache_ = rocksdb::NewLRUCache(rocksdb_bytes);
    const auto write_buffer_bytes = static_cast<std::size_t>(
        static_cast<double>(rocksdb_bytes) * options.write_buffer_ratio);
    // cost_to_cache: the memtables' memory is charged to the block cache as
    // dummy entries, so blocks and memtables share the one budget.
    write_buffer_manager_ =
        std::make_shared<rocksdb::WriteBufferManager>(write_buffer_bytes, cache_);
    append_operator_ = std::make_shared<AppendOperator>();
    event_time_filter_ =
        std::make_unique<TtlCompactionFilter>(TimeDomain::kEventTime, clock_);
    processing_time_filter_ =
        std::make_unique<TtlCompactionFilter>(TimeDomain::kProcessingTime, clock_);

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
    for (Role role : {Role::kFilterConstruction, Role::kBlockBasedTableReader,
                      Role::kFileMetadata}) {
      table.cache_usage_options.options_overrides.insert({role, charged});
    }

    cf_options_.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    cf_options_.merge_operator = append_operator_;
    // A column family's memtable flushes at a quarter of the memtable budget
    // (and at most 64 MiB); the WriteBufferManager flushes the largest ones
    // when all of them together reach it.
    cf_options_.write_buffer_size =
        std::clamp<std::size_t>(write_buffer_bytes / 4, std::size_t{1} << 20,
                                std::size_t{64} << 20);
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
    const rocksdb::Status s =
        rocksdb::DB::Open(db_options, path_, descriptors, &handles, &db);
    if (!s.ok()) {
      const std::string message = s.ToString();
      if (s.IsIOError() && contains_lock_error(message)) return in_use_error(path_, message);
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
    return write_layout_marker();
  }

  rocksdb::DB* db() const { return db_.get(); }
  TtlClock& clock() { return *clock_; }
  const std::string& path() const { return path_; }
  // The options of every column family (without the TTL compaction filter).
  const rocksdb::ColumnFamilyOptions& cf_options() const { return cf_options_; }

  // Writes a checkpoint of the whole DB into the new folder `dir`: a flush
  // of every memtable (log_size_for_flush = 0; writes skip the WAL, so the
  // memtables hold data that no file has yet), then hard links to the SST
  // files and copies of MANIFEST, CURRENT and OPTIONS. Checkpoint documents
  // nothing about concurrent calls; its implementation looks safe (a staging
  // folder per call, DisableFileDeletions() counted, the live files listed
  // under the DB mutex), but the calls are serialised anyway: each flushes
  // every column family of the DB, so running them at once would only make
  // them compete for the same flushes, where the next one now finds little
  // left to flush.
  Status create_checkpoint(const std::string& dir) {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    rocksdb::Checkpoint* raw = nullptr;
    rocksdb::Status s = rocksdb::Checkpoint::Create(db_.get(), &raw);
    const std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    if (s.ok()) s = checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0);
    if (!s.ok()) return from_rocksdb(s, absl::StrCat("RocksDB checkpoint into '", dir, "'"));
    return Status();
  }

  // The column family of `descriptor` for operator `operator_id`: the
  // existing one when another store of the operator registered it (same kind
  // and TTL), else a new one.
  StatusOr<Column*> acquire_column(const std::string& operator_id,
                                   const StateDescriptor& descriptor) {
    std::string name = absl::StrCat(operator_id, "/", descriptor.name);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = columns_.find(name);
    if (it != columns_.end()) {
      MS_RETURN_IF_ERROR(
          detail::check_same_state(operator_id, it->second->descriptor, descriptor));
      ++it->second->users;
      return it->second.get();
    }
    rocksdb::ColumnFamilyOptions cf = cf_options_;
    if (descriptor.ttl) {
      cf.compaction_filter = descriptor.ttl->domain == TimeDomain::kEventTime
                                 ? event_time_filter_.get()
                                 : processing_time_filter_.get();
      // A state that is no longer written is never compacted on its own:
      // periodic compaction reruns the filter over files older than the
      // time to live (at least an hour, so that short TTLs do not keep
      // RocksDB compacting).
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

  // A store of key groups `range` no longer uses `column`: the last user
  // drops it, the others delete the range. Errors are ignored (a store's
  // destructor has no one to report to; the data is unreachable anyway).
  void release_column(Column* column, KeyGroupRange range) {
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

 private:
  Status write_layout_marker() {
    const fs::path marker = fs::path(path_) / kLayoutFile;
    const fs::path tmp = fs::path(path_) / (std::string(kLayoutFile) + ".tmp");
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << kRocksDBStateLayoutVersion << "\n";
      out.flush();
      if (!out) {
        return absl::PermissionDeniedError(absl::StrCat(
            "RocksDB state dir '", path_, "': cannot write ", tmp.string()));
      }
    }
    std::error_code ec;
    fs::rename(tmp, marker, ec);
    if (ec) {
      return absl::PermissionDeniedError(absl::StrCat("RocksDB state dir '", path_,
                                                      "': cannot write ", marker.string(),
                                                      ": ", ec.message()));
    }
    return Status();
  }

  std::string path_;
  std::string registered_path_;  // in OpenDirectories, when not empty
  std::shared_ptr<rocksdb::Cache> cache_;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager_;
  std::size_t operator_memory_bytes_ = 0;
  std::shared_ptr<rocksdb::MergeOperator> append_operator_;
  const std::shared_ptr<TtlClock> clock_ = std::make_shared<TtlClock>();
  std::unique_ptr<TtlCompactionFilter> event_time_filter_;
  std::unique_ptr<TtlCompactionFilter> processing_time_filter_;
  rocksdb::ColumnFamilyOptions cf_options_;
  // Declared last: destroyed (closed, by ~Database) before what it uses.
  std::unique_ptr<rocksdb::DB> db_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Column>> columns_;
  std::mutex checkpoint_mu_;  // serialises create_checkpoint()
};

// A checkpoint folder opened read-only, for a restore. Several restores may
// read one folder at once: a read-only DB takes no LOCK and writes nothing
// into the folder (not even an info LOG).
class CheckpointReader {
 public:
  CheckpointReader() = default;
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;
  ~CheckpointReader() {
    if (db_ == nullptr) return;
    for (rocksdb::ColumnFamilyHandle* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
    db_->Close().PermitUncheckedError();
  }

  // Opens the column families `names` of the checkpoint in `dir` with the
  // live DB's options (its merge operator resolves the appends). Errors are
  // kDataLoss prefixed with `context`: a checkpoint that cannot be read, or
  // lacks one of them.
  Status open(const std::string& dir, const std::vector<std::string>& names,
              const rocksdb::ColumnFamilyOptions& cf_options, const std::string& context) {
    rocksdb::DBOptions options;
    options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
    std::vector<std::string> existing;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, dir, &existing);
    if (!s.ok()) return data_loss(s, context);
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) {
      if (std::find(existing.begin(), existing.end(), name) == existing.end()) {
        return absl::DataLossError(absl::StrCat(
            context, ": the RocksDB checkpoint has no column family '", name, "'"));
      }
      descriptors.emplace_back(name, cf_options);
    }
    // A read-only DB may open some of the column families, but always the
    // default one.
    descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
    rocksdb::DB* db = nullptr;
    s = rocksdb::DB::OpenForReadOnly(options, dir, descriptors, &handles_, &db);
    db_.reset(db);
    if (!s.ok()) return data_loss(s, context);
    return Status();
  }

  rocksdb::DB* db() const { return db_.get(); }
  // The handle of names[i].
  rocksdb::ColumnFamilyHandle* handle(std::size_t i) const { return handles_[i]; }

  static Status data_loss(const rocksdb::Status& s, const std::string& context) {
    return absl::DataLossError(absl::StrCat(context, ": RocksDB checkpoint: ", s.ToString()));
  }

 private:
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<rocksdb::DB> db_;
};

class RocksDBKeyedStateStore final : public KeyedStateStore {
 public:
  RocksDBKeyedStateStore(std::shared_ptr<Database> db, std::shared_ptr<OpenStores> open_stores,
                         std::string operator_id, KeyGroupRange range, int max_parallelism)
      : db_(std::move(db)),
        open_stores_(std::move(open_stores)),
        operator_id_(std::move(operator_id)),
        range_(range),
        max_parallelism_(max_parallelism) {
    write_options_.disableWAL = true;  // durability comes from checkpoints
  }

  ~RocksDBKeyedStateStore() override {
    for (State& state : states_) db_->release_column(state.column, range_);
    open_stores_->release(operator_id_, range_);
  }

  const char* name() const override { return "rocksdb"; }
  const std::string& operator_id() const override { return operator_id_; }
  KeyGroupRange key_group_range() const override { return range_; }
  int max_parallelism() const override { return max_parallelism_; }

  StatusOr<int> register_state(const StateDescriptor& descriptor) override {
    MS_ASSIGN_OR_RETURN(const int existing,
                        detail::find_registered_state(operator_id_, states_, descriptor));
    if (existing >= 0) return existing;
    MS_ASSIGN_OR_RETURN(Column * column, db_->acquire_column(operator_id_, descriptor));
    states_.push_back(State{descriptor, column, column->handle});
    return static_cast<int>(states_.size() - 1);
  }

  int num_states() const override { return static_cast<int>(states_.size()); }

  const StateDescriptor* descriptor(int state) const override {
    if (state < 0 || state >= num_states()) return nullptr;
    return &states_[static_cast<std::size_t>(state)].descriptor;
  }

  StatusOr<bool> get(int state, int key_group, std::string_view key,
                     std::string* value) override {
    const State* s = find(state, key_group);
    if (s == nullptr) return locate_error(state, key_group);
    const std::string& k = make_key(key_group, key);
    rocksdb::PinnableSlice stored;
    const rocksdb::Status rs = db()->Get(read_options_, s->cf, k, &stored);
    if (rs.IsNotFound()) return false;
    if (!rs.ok()) return error(rs, state, key_group, "get");
    if (!s->descriptor.ttl) {
      value->assign(stored.data(), stored.size());
      return true;
    }
    const StateTtl& ttl = *s->descriptor.ttl;
    Timestamp expiry = 0;
    if (!detail::get_expiry(to_view(stored), &expiry)) {
      return short_value_error(state, key_group, stored.size());
    }
    const Timestamp now = db_->clock().now(ttl.domain);
    if (detail::is_expired(expiry, now)) {
      // Removed lazily; the compaction filter would drop it later anyway.
      const rocksdb::Status d = db()->Delete(write_options_, s->cf, k);
      if (!d.ok()) return error(d, state, key_group, "delete of an expired value");
      return false;
    }
    value->assign(stored.data() + detail::kExpiryBytes,
                  stored.size() - detail::kExpiryBytes);
    if (ttl.refresh_on_read) {
      std::string restamped;
      restamped.reserve(stored.size());
      detail::put_expiry(detail::expiry_for(now, ttl), &restamped);
      restamped.append(*value);
      const rocksdb::Status p = db()->Put(write_options_, s->cf, k, restamped);
      if (!p.ok()) return error(p, state, key_group, "refresh on read");
    }
    return true;
  }

  Status put(int state, int key_group, std::string_view key,
             std::string_view value) override {
    const State* s = find(state, key_group);
    if (s == nullptr) return locate_error(state, key_group);
    const std::string& k = make_key(key_group, key);
    rocksdb::Status rs;
    if (!s->descriptor.ttl) {
      rs = db()->Put(write_options_, s->cf, k, to_slice(value));
    } else {
      const StateTtl& ttl = *s->descriptor.ttl;
      std::string stored;
      stored.reserve(detail::kExpiryBytes + value.size());
      detail::put_expiry(detail::expiry_for(db_->clock().now(ttl.domain), ttl), &stored);
      stored.append(value.data(), value.size());
      rs = db()->Put(write_options_, s->cf, k, stored);
    }
    if (!rs.ok()) return error(rs, state, key_group, "put");
    return Status();
  }

  Status append(int state, int key_group, std::string_view key,
                std::string_view bytes) override {
    const State* s = find(state, key_group);
    if (s == nullptr) return locate_error(state, key_group);
    const std::string& k = make_key(key_group, key);
    if (!s->descriptor.ttl) {
      const rocksdb::Status rs = db()->Merge(write_options_, s->cf, k, to_slice(bytes));
      if (!rs.ok()) return error(rs, state, key_group, "merge");
      return Status();
    }
    // Read-modify-write (see the file comment): the whole value's TTL
    // restarts; an expired value is replaced, not extended.
    const StateTtl& ttl = *s->descriptor.ttl;
    const Timestamp now = db_->clock().now(ttl.domain);
    rocksdb::PinnableSlice old;
    const rocksdb::Status g = db()->Get(read_options_, s->cf, k, &old);
    if (!g.ok() && !g.IsNotFound()) return error(g, state, key_group, "get");
    std::string stored;
    detail::put_expiry(detail::expiry_for(now, ttl), &stored);
    if (g.ok()) {
      Timestamp expiry = 0;
      if (!detail::get_expiry(to_view(old), &expiry)) {
        return short_value_error(state, key_group, old.size());
      }
      if (!detail::is_expired(expiry, now)) {
        stored.append(old.data() + detail::kExpiryBytes, old.size() - detail::kExpiryBytes);
      }
    }
    stored.append(bytes.data(), bytes.size());
    const rocksdb::Status p = db()->Put(write_options_, s->cf, k, stored);
    if (!p.ok()) return error(p, state, key_group, "put");
    return Status();
  }

  Status remove(int state, int key_group, std::string_view key) override {
    const State* s = find(state, key_group);
    if (s == nullptr) return locate_error(state, key_group);
    const rocksdb::Status rs = db()->Delete(write_options_, s->cf, make_key(key_group, key));
    if (!rs.ok()) return error(rs, state, key_group, "delete");
    return Status();
  }

  // The keys of one key group that start with a prefix: the seek key and the
  // upper bound, which the iterator reads and which must outlive it.
  struct PrefixScan {
    PrefixScan(int key_group, std::string_view prefix) {
      put_key_group(key_group, &lower);
      lower.append(prefix.data(), prefix.size());
      upper = prefix_successor(lower);
      upper_slice = rocksdb::Slice(upper);
    }
    std::unique_ptr<rocksdb::Iterator> iterator(rocksdb::DB* db, rocksdb::ReadOptions ro,
                                                rocksdb::ColumnFamilyHandle* cf) const {
      ro.iterate_upper_bound = &upper_slice;
      return std::unique_ptr<rocksdb::Iterator>(db->NewIterator(ro, cf));
    }
    std::string lower;
    std::string upper;
    rocksdb::Slice upper_slice;
  };

  Status for_each(int state, int key_group, std::string_view prefix,
                  absl::FunctionRef<bool(std::string_view, std::string_view)> fn) override {
    const State* s = find(state, key_group);
    if (s == nullptr) return locate_error(state, key_group);
    PrefixScan scan(key_group, prefix);
    std::unique_ptr<rocksdb::Iterator> it = scan.iterator(db(), read_options_, s->cf);

    const std::optional<StateTtl>& ttl = s->descriptor.ttl;
    const Timestamp now = ttl ? db_->clock().now(ttl->domain) : 0;
    rocksdb::WriteBatch fixes;  // TTL: deletes of expired values, refreshes
    Status status;
    for (it->Seek(scan.lower); it->Valid(); it->Next()) {
      std::string_view key = to_view(it->key());
      std::string_view value = to_view(it->value());
      if (ttl) {
        Timestamp expiry = 0;
        if (!detail::get_expiry(value, &expiry)) {
          status = short_value_error(state, key_group, value.size());
          break;
        }
        if (detail::is_expired(expiry, now)) {
          fixes.Delete(s->cf, it->key()).PermitUncheckedError();
          continue;
        }
        value.remove_prefix(detail::kExpiryBytes);
        if (ttl->refresh_on_read) {
          std::string restamped;
          detail::put_expiry(detail::expiry_for(now, *ttl), &restamped);
          restamped.append(value.data(), value.size());
          fixes.Put(s->cf, it->key(), restamped).PermitUncheckedError();
        }
      }
      key.remove_prefix(2);
      if (!fn(key, value)) break;
    }
    if (status.ok() && !it->status().ok()) status = error(it->status(), state, key_group, "scan");
    it.reset();
    if (fixes.Count() > 0) {
      const rocksdb::Status w = db()->Write(write_options_, &fixes);
      if (!w.ok() && status.ok()) status = error(w, state, key_group, "TTL update after scan");
    }
    return status;
  }

  Status remove_prefix(int state, int key_group, std::string_view prefix) override {
    const State* s = find(state, key_group);
    if (s == nullptr) return locate_error(state, key_group);
    PrefixScan scan(key_group, prefix);
    std::unique_ptr<rocksdb::Iterator> it = scan.iterator(db(), read_options_, s->cf);
    rocksdb::WriteBatch batch;
    for (it->Seek(scan.lower); it->Valid(); it->Next()) {
      batch.Delete(s->cf, it->key()).PermitUncheckedError();
    }
    if (!it->status().ok()) return error(it->status(), state, key_group, "scan");
    it.reset();
    if (batch.Count() == 0) return Status();
    const rocksdb::Status w = db()->Write(write_options_, &batch);
    if (!w.ok()) return error(w, state, key_group, "delete of a prefix");
    return Status();
  }

  Status for_each_in_key_group(
      int key_group,
      absl::FunctionRef<bool(int, std::string_view, std::string_view)> fn) override {
    if (!range_.contains(key_group)) return range_error(key_group);
    const PrefixScan scan(key_group, "");
    for (std::size_t i = 0; i < states_.size(); ++i) {
      const State& s = states_[i];
      const int state = static_cast<int>(i);
      const std::optional<StateTtl>& ttl = s.descriptor.ttl;
      const Timestamp now = ttl ? db_->clock().now(ttl->domain) : 0;
      std::unique_ptr<rocksdb::Iterator> it = scan.iterator(db(), read_options_, s.cf);
      for (it->Seek(scan.lower); it->Valid(); it->Next()) {
        const std::string_view value = to_view(it->value());
        if (ttl) {
          Timestamp expiry = 0;
          if (!detail::get_expiry(value, &expiry)) {
            return short_value_error(state, key_group, value.size());
          }
          if (detail::is_expired(expiry, now)) continue;
        }
        if (!fn(state, to_view(it->key()).substr(2), value)) return Status();
      }
      if (!it->status().ok()) return error(it->status(), state, key_group, "scan");
    }
    return Status();
  }

  Status clear_key_group(int key_group) override {
    if (!range_.contains(key_group)) return range_error(key_group);
    const std::string begin = key_group_key(key_group);
    const std::string end = key_group_key(key_group + 1);
    for (std::size_t i = 0; i < states_.size(); ++i) {
      const rocksdb::Status rs = db()->DeleteRange(write_options_, states_[i].cf, begin, end);
      if (!rs.ok()) return error(rs, static_cast<int>(i), key_group, "delete range");
    }
    return Status();
  }

  Status put_stored(int state, int key_group, std::string_view key,
                    std::string_view stored) override {
    const State* s = find(state, key_group);
    if (s == nullptr) return locate_error(state, key_group);
    if (s->descriptor.ttl && stored.size() < detail::kExpiryBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "operator '", operator_id_, "' state '", s->descriptor.name, "' key group ",
          key_group, ": put_stored of ", stored.size(),
          " bytes, shorter than the 8-byte TTL expiry"));
    }
    const rocksdb::Status rs =
        db()->Put(write_options_, s->cf, make_key(key_group, key), to_slice(stored));
    if (!rs.ok()) return error(rs, state, key_group, "put");
    return Status();
  }

  void advance_event_time(Timestamp watermark) override {
    db_->clock().advance_event_time(watermark);
  }

  Timestamp current_time(TimeDomain domain) const override {
    return db_->clock().now(domain);
  }

  Status purge_expired() override {
    const std::string begin = key_group_key(range_.first);
    const std::string end = key_group_key(range_.last + 1);
    const rocksdb::Slice b(begin);
    const rocksdb::Slice e(end);
    rocksdb::CompactRangeOptions options;
    // Rewrite the bottommost level too (that is where old values sit), and
    // let other compactions run meanwhile.
    options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    options.exclusive_manual_compaction = false;
    for (std::size_t i = 0; i < states_.size(); ++i) {
      if (!states_[i].descriptor.ttl) continue;
      // Flushes the memtable first, then runs the TTL compaction filter.
      const rocksdb::Status rs = db()->CompactRange(options, states_[i].cf, &b, &e);
      if (!rs.ok()) {
        return from_rocksdb(rs, absl::StrCat("operator '", operator_id_, "' state '",
                                             states_[i].descriptor.name,
                                             "': compaction of expired values"));
      }
    }
    return Status();
  }

  StatusOr<std::uint64_t> approximate_size_bytes() override {
    const std::string begin = key_group_key(range_.first);
    const std::string end = key_group_key(range_.last + 1);
    const rocksdb::Range range(begin, end);
    rocksdb::SizeApproximationOptions options;
    options.include_memtables = true;
    options.include_files = true;
    std::uint64_t total = 0;
    for (const State& s : states_) {
      std::uint64_t size = 0;
      const rocksdb::Status rs = db()->GetApproximateSizes(options, s.cf, &range, 1, &size);
      if (!rs.ok()) {
        return from_rocksdb(rs, absl::StrCat("operator '", operator_id_, "' state '",
                                             s.descriptor.name, "': approximate size"));
      }
      total += size;
    }
    return total;
  }

  StatusOr<StoreSnapshot> snapshot(const std::string& dir) override {
    MS_RETURN_IF_ERROR(detail::prepare_snapshot_dir(dir));
    std::error_code ec;
    const fs::path absolute = fs::absolute(dir, ec);  // as Checkpoint wants it
    MS_RETURN_IF_ERROR(db_->create_checkpoint(ec ? dir : absolute.string()));
    detail::SnapshotHeader header{operator_id_, max_parallelism_, range_, {}};
    for (const State& state : states_) header.states.push_back(state.descriptor);
    MS_RETURN_IF_ERROR(
        detail::SnapshotFileBuilder(header).write((fs::path(dir) / kSnapshotStatesFile).string()));
    StoreSnapshot snapshot{name(), range_, {}};
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code type_ec;
      if (!it->is_regular_file(type_ec)) continue;
      const fs::path& path = it->path();
      // SST files never change once written: the coordinator may share them.
      snapshot.files.push_back({path.filename().string(), path.extension() == ".sst"});
    }
    if (ec) {
      return absl::InternalError(absl::StrCat("operator '", operator_id_,
                                              "': listing snapshot folder '", dir,
                                              "': ", ec.message()));
    }
    std::sort(snapshot.files.begin(), snapshot.files.end(),
              [](const StoreSnapshot::File& a, const StoreSnapshot::File& b) {
                return a.name < b.name;
              });
    return snapshot;
  }

  Status restore(const std::string& dir, const StoreSnapshot& snapshot) override {
    detail::SnapshotFileReader file;
    std::vector<int> ids;
    KeyGroupRange groups;
    MS_RETURN_IF_ERROR(
        detail::begin_restore(*this, dir, snapshot, kSnapshotStatesFile, &file, &ids, &groups));
    if (groups.size() == 0) return Status();
    const std::string context =
        absl::StrCat("operator '", operator_id_, "': restore from '", dir, "'");
    std::vector<std::string> names;
    for (const StateDescriptor& d : file.header().states) {
      names.push_back(absl::StrCat(operator_id_, "/", d.name));
    }
    CheckpointReader checkpoint;
    MS_RETURN_IF_ERROR(checkpoint.open(dir, names, db_->cf_options(), context));

    // Keys start with their key group: the groups to restore are one range.
    const std::string begin = key_group_key(groups.first);
    const std::string end = key_group_key(groups.last + 1);
    const rocksdb::Slice end_slice(end);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &end_slice;
    ro.fill_cache = false;  // read once: keep the live state's blocks cached
    rocksdb::WriteBatch batch;
    auto write = [&](int state) -> Status {
      const rocksdb::Status w = db()->Write(write_options_, &batch);
      batch.Clear();
      if (!w.ok()) return error(w, state, groups.first, "write of restored entries");
      return Status();
    };
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const int id = ids[i];
      const State& s = states_[static_cast<std::size_t>(id)];
      const std::optional<StateTtl>& ttl = s.descriptor.ttl;
      const Timestamp now = ttl ? db_->clock().now(ttl->domain) : 0;
      std::unique_ptr<rocksdb::Iterator> it(
          checkpoint.db()->NewIterator(ro, checkpoint.handle(i)));
      for (it->Seek(begin); it->Valid(); it->Next()) {
        const std::string_view value = to_view(it->value());
        if (ttl) {
          Timestamp expiry = 0;
          if (!detail::get_expiry(value, &expiry)) {
            const int key_group = (static_cast<std::uint8_t>(it->key()[0]) << 8) |
                                  static_cast<std::uint8_t>(it->key()[1]);
            const Status short_value = short_value_error(id, key_group, value.size());
            return absl::DataLossError(absl::StrCat(context, ": ", short_value.message()));
          }
          if (detail::is_expired(expiry, now)) continue;  // as if compacted away
        }
        batch.Put(s.cf, it->key(), it->value()).PermitUncheckedError();
        if (batch.GetDataSize() >= kRestoreBatchBytes) MS_RETURN_IF_ERROR(write(id));
      }
      if (!it->status().ok()) return CheckpointReader::data_loss(it->status(), context);
      if (batch.Count() > 0) MS_RETURN_IF_ERROR(write(id));
    }
    return Status();
  }

 private:
  struct State {
    StateDescriptor descriptor;
    Column* column;  // owned by the Database
    rocksdb::ColumnFamilyHandle* cf;
  };

  rocksdb::DB* db() const { return db_->db(); }

  // The key of (key group, key) in a reused buffer: valid until the next call.
  const std::string& make_key(int key_group, std::string_view key) {
    key_buffer_.clear();
    put_key_group(key_group, &key_buffer_);
    key_buffer_.append(key.data(), key.size());
    return key_buffer_;
  }

  const State* find(int state, int key_group) const {
    if (state < 0 || state >= num_states() || !range_.contains(key_group)) return nullptr;
    return &states_[static_cast<std::size_t>(state)];
  }

  Status error(const rocksdb::Status& s, int state, int key_group, const char* what) const {
    return from_rocksdb(s, absl::StrCat("operator '", operator_id_, "' state '",
                                        descriptor(state)->name, "' key group ", key_group,
                                        ": RocksDB ", what));
  }

  Status short_value_error(int state, int key_group, std::size_t size) const {
    return detail::short_ttl_value_error(operator_id_, *descriptor(state), key_group, size);
  }

  Status locate_error(int state, int key_group) const {
    return detail::locate_error(operator_id_, range_, descriptor(state), state, key_group);
  }
  Status range_error(int key_group) const {
    return detail::range_error(operator_id_, range_, key_group);
  }

  const std::shared_ptr<Database> db_;
  const std::shared_ptr<OpenStores> open_stores_;
  const std::string operator_id_;
  const KeyGroupRange range_;
  const int max_parallelism_;
  rocksdb::ReadOptions read_options_;
  rocksdb::WriteOptions write_options_;
  std::string key_buffer_;
  // A deque so that descriptor() pointers stay valid when states are added.
  std::deque<State> states_;
};

class RocksDBStateBackend final : public StateBackend {
 public:
  explicit RocksDBStateBackend(std::shared_ptr<Database> db) : db_(std::move(db)) {}

  const char* name() const override { return "rocksdb"; }
  std::size_t operator_memory_bytes() const override { return db_->operator_memory_bytes(); }

  StatusOr<std::unique_ptr<KeyedStateStore>> open_keyed_store(
      std::string_view operator_id, KeyGroupRange range, int max_parallelism) override {
    std::string id(operator_id);
    MS_RETURN_IF_ERROR(detail::check_open_arguments(id, range, max_parallelism));
    if (max_parallelism > kMaxKeyGroups) {
      return absl::InvalidArgumentError(absl::StrCat(
          "open_keyed_store: operator '", id, "': max_parallelism ", max_parallelism,
          " > ", kMaxKeyGroups, ", the most the RocksDB backend's 2-byte key groups hold"));
    }
    MS_RETURN_IF_ERROR(open_stores_->acquire(id, range));
    return std::unique_ptr<KeyedStateStore>(std::make_unique<RocksDBKeyedStateStore>(
        db_, open_stores_, std::move(id), range, max_parallelism));
  }

 private:
  const std::shared_ptr<Database> db_;
  const std::shared_ptr<OpenStores> open_stores_ = std::make_shared<OpenStores>();
};

// Checks that `path` is (or can become) a writable directory, creating it.
Status prepare_directory(const std::string& path, bool create_if_missing) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) {
      return absl::FailedPreconditionError(
          absl::StrCat("RocksDB state dir '", path, "' is not a directory"));
    }
  } else {
    if (!create_if_missing) {
      return absl::NotFoundError(absl::StrCat(
          "RocksDB state dir '", path, "' does not exist (create_if_missing is false)"));
    }
    fs::create_directories(path, ec);
    if (ec) {
      const std::string message = absl::StrCat("RocksDB state dir '", path,
                                               "' cannot be created: ", ec.message());
      if (ec == std::errc::permission_denied || ec == std::errc::operation_not_permitted ||
          ec == std::errc::read_only_file_system) {
        return absl::PermissionDeniedError(message);
      }
      // ENOTDIR (a parent is a regular file), EEXIST, ...
      return absl::FailedPreconditionError(message);
    }
  }
  if (::access(path.c_str(), W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("RocksDB state dir '", path, "' is not writable: ",
                     std::generic_category().message(errno)));
  }
  return Status();
}

// Checks that the directory holds meterstream state of this layout version,
// or nothing. Reads only.
Status check_layout(const std::string& path, bool create_if_missing) {
  const fs::path dir(path);
  std::error_code ec;
  const bool has_db = fs::exists(dir / "CURRENT", ec);
  std::optional<std::string> found;
  if (fs::exists(dir / kLayoutFile, ec)) {
    std::ifstream in(dir / kLayoutFile);
    std::string line;
    std::getline(in, line);
    found = line;
  }
  if (found) {
    if (*found != kRocksDBStateLayoutVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "RocksDB state dir '", path, "' has state layout '", *found,
          "', this build reads layout '", kRocksDBStateLayoutVersion,
          "'; use another directory or delete this one"));
    }
    return Status();
  }
  if (has_db) {
    return absl::FailedPreconditionError(absl::StrCat(
        "RocksDB state dir '", path,
        "' holds a RocksDB database without a meterstream layout marker (", kLayoutFile,
        "): found layout none, this build reads layout '", kRocksDBStateLayoutVersion,
        "'; use another directory"));
  }
  bool empty = fs::is_empty(dir, ec);
  if (ec) empty = false;
  if (!empty) {
    return absl::FailedPreconditionError(absl::StrCat(
        "RocksDB state dir '", path,
        "' is not empty and holds no meterstream state; refusing to write into it"));
  }
  if (!create_if_missing) {
    return absl::NotFoundError(absl::StrCat("RocksDB state dir '", path,
                                            "' holds no state (create_if_missing is false)"));
  }
  return Status();
}

}  // namespace

StatusOr<std::shared_ptr<StateBackend>> make_rocksdb_state_backend(
    const RocksDBStateBackendOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("RocksDB state backend: empty path");
  }
  if (options.memory_budget_bytes == 0) {
    return absl::InvalidArgumentError("RocksDB state backend: memory_budget_bytes is 0");
  }
  if (!(options.operator_memory_ratio >= 0.0 && options.operator_memory_ratio < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RocksDB state backend: operator_memory_ratio ",
                     options.operator_memory_ratio, " is not within [0, 1)"));
  }
  if (!(options.write_buffer_ratio > 0.0 && options.write_buffer_ratio < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RocksDB state backend: write_buffer_ratio ",
                     options.write_buffer_ratio, " is not within (0, 1)"));
  }
  if (options.max_background_jobs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("RocksDB state backend: max_background_jobs ",
                     options.max_background_jobs, " < 1"));
  }
  MS_RETURN_IF_ERROR(prepare_directory(options.path, options.create_if_missing));
  MS_RETURN_IF_ERROR(check_layout(options.path, options.create_if_missing));
  auto db = std::make_shared<Database>();
  MS_RETURN_IF_ERROR(db->open(options));
  return std::shared_ptr<StateBackend>(std::make_shared<RocksDBStateBackend>(std::move(db)));
}

}  // namespace meterstream
