// The RocksDB state backend (state/rocksdb_state_backend.hpp; the layout is
// described in docs/state.md): the checks of its options and the factory of
// its stores.
//
// The parts, under src/state/rocksdb/:
//   - directory: the state directory, checked and claimed before RocksDB
//     opens it, and its layout marker;
//   - database: the one RocksDB instance, its tuning to the memory budget,
//     the column families (one per operator and state) and checkpoints;
//   - ttl_filter: the compaction filter that drops expired TTL values, on the
//     clocks of the operator's stores;
//   - store, store_snapshot: the keyed state store of an operator instance
//     (reads, writes, scans; snapshot and restore), with checkpoint_reader
//     for the read-only checkpoint a restore copies from;
//   - keys, errors: the key layout, RocksDB's errors as Status.
#include "meterstream/state/rocksdb_state_backend.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "state/rocksdb/database.hpp"
#include "state/rocksdb/directory.hpp"
#include "state/rocksdb/keys.hpp"
#include "state/rocksdb/store.hpp"
#include "state/store_common.hpp"

namespace meterstream {
namespace {

class RocksDBStateBackend final : public StateBackend {
 public:
  explicit RocksDBStateBackend(std::shared_ptr<detail::Database> db) : db_(std::move(db)) {}

  const char* name() const override { return "rocksdb"; }
  std::size_t operator_memory_bytes() const override { return db_->operator_memory_bytes(); }

  StatusOr<std::unique_ptr<KeyedStateStore>> open_keyed_store(
      std::string_view operator_id, KeyGroupRange range, int max_parallelism) override {
    std::string id(operator_id);
    MS_RETURN_IF_ERROR(detail::check_open_arguments(id, range, max_parallelism));
    if (max_parallelism > detail::kMaxKeyGroups) {
      return absl::InvalidArgumentError(absl::StrCat(
          "open_keyed_store: operator '", id, "': max_parallelism ", max_parallelism, " > ",
          detail::kMaxKeyGroups, ", the most the RocksDB backend's 2-byte key groups hold"));
    }
    return detail::open_store<detail::RocksDBKeyedStateStore>(open_stores_, std::move(id),
                                                              range, max_parallelism, db_);
  }

 private:
  const std::shared_ptr<detail::Database> db_;
  const std::shared_ptr<detail::OpenStores> open_stores_ =
      std::make_shared<detail::OpenStores>();
};

}  // namespace

StatusOr<std::shared_ptr<StateBackend>> make_rocksdb_state_backend(
    const RocksDBStateBackendOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("RocksDB state backend: empty path");
  }
  if (options.memory_budget_bytes == 0) {
    return absl::InvalidArgumentError("RocksDB state backend: memory_budget_bytes is 0");
  }
  // 0 is refused: operators need a share to keep their state in memory and
  // spill beyond it (a share of 0 would mean "no spilling at all").
  if (!(options.operator_memory_ratio > 0.0 && options.operator_memory_ratio < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RocksDB state backend: operator_memory_ratio ",
                     options.operator_memory_ratio, " is not within (0, 1)"));
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
  MS_RETURN_IF_ERROR(detail::prepare_directory(options.path, options.create_if_missing));
  MS_RETURN_IF_ERROR(detail::check_layout(options.path, options.create_if_missing));
  auto db = std::make_shared<detail::Database>();
  MS_RETURN_IF_ERROR(db->open(options));
  return std::shared_ptr<StateBackend>(std::make_shared<RocksDBStateBackend>(std::move(db)));
}

}  // namespace meterstream
