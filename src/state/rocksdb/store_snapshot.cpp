// The snapshot and restore of a RocksDB store (store.hpp has the design).
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "rocksdb/write_batch.h"
#include "state/rocksdb/checkpoint_reader.hpp"
#include "state/rocksdb/keys.hpp"
#include "state/rocksdb/store.hpp"
#include "state/state_file.hpp"
#include "state/ttl_format.hpp"

namespace meterstream::detail {
namespace {

namespace fs = std::filesystem;

// The descriptors of a snapshot's store (state/state_file.hpp), next to
// the checkpoint's files.
constexpr const char* kSnapshotStatesFile = "states.bin";
// A restore writes in batches of about this many bytes.
constexpr std::size_t kRestoreBatchBytes = std::size_t{1} << 20;

}  // namespace

StatusOr<StoreManifest> RocksDBKeyedStateStore::snapshot(const std::string& dir) {
  MS_RETURN_IF_ERROR(prepare_snapshot_dir(dir));
  std::error_code ec;
  const fs::path absolute = fs::absolute(dir, ec);  // as Checkpoint wants it
  MS_RETURN_IF_ERROR(db_->create_checkpoint(ec ? dir : absolute.string()));
  StateFileHeader header{operator_id_, max_parallelism_, range_, {}};
  for (const State& state : states_) header.states.push_back(state.descriptor);
  MS_RETURN_IF_ERROR(
      StateFileBuilder(header).write((fs::path(dir) / kSnapshotStatesFile).string()));
  StoreManifest snapshot{name(), range_, {}};
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
            [](const StoreManifest::File& a, const StoreManifest::File& b) {
              return a.name < b.name;
            });
  return snapshot;
}

Status RocksDBKeyedStateStore::restore(const std::string& dir, const StoreManifest& snapshot) {
  StateFileReader file;
  std::vector<int> ids;
  KeyGroupRange groups;
  MS_RETURN_IF_ERROR(
      begin_restore(*this, dir, snapshot, kSnapshotStatesFile, &file, &ids, &groups));
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
    const Timestamp now = ttl ? clock().now(ttl->domain) : 0;
    std::unique_ptr<rocksdb::Iterator> it(
        checkpoint.db()->NewIterator(ro, checkpoint.handle(i)));
    for (it->Seek(begin); it->Valid(); it->Next()) {
      const std::string_view value = to_view(it->value());
      if (ttl) {
        Timestamp expiry = 0;
        if (!get_expiry(value, &expiry)) {
          const Status short_value =
              short_value_error(id, key_group_of_key(to_view(it->key())), value.size());
          return absl::DataLossError(absl::StrCat(context, ": ", short_value.message()));
        }
        if (is_expired(expiry, now)) continue;  // as if compacted away
      }
      batch.Put(s.cf, it->key(), it->value()).PermitUncheckedError();
      if (batch.GetDataSize() >= kRestoreBatchBytes) MS_RETURN_IF_ERROR(write(id));
    }
    if (!it->status().ok()) return CheckpointReader::data_loss(it->status(), context);
    if (batch.Count() > 0) MS_RETURN_IF_ERROR(write(id));
  }
  return Status();
}

}  // namespace meterstream::detail
