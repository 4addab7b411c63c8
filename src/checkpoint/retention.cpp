// Retention: which checkpoints and shared files stay in the storage.
#include "checkpoint/coordinator.hpp"

#include <algorithm>
#include <utility>

#include "checkpoint/metadata.hpp"

namespace meterstream::detail {

// Keeps the newest `retained` completed checkpoints; removes the others
// (metadata first, so a crash midway never leaves a checkpoint with missing
// files) and the shared files none of the kept ones references.
Status Coordinator::retain() {
  CheckpointStorage& storage = *options_.storage;
  MS_ASSIGN_OR_RETURN(std::vector<std::string> paths, storage.list("chk-"));
  std::map<std::int64_t, std::vector<std::string>> by_id;
  std::vector<std::int64_t> completed;
  for (const std::string& p : paths) {
    const std::int64_t id = checkpoint_id_of(p);
    if (id < 0) continue;
    by_id[id].push_back(p);
    if (p == metadata_path(id) && bad_.count(id) == 0) completed.push_back(id);
  }
  std::sort(completed.begin(), completed.end());
  const std::size_t keep_from =
      completed.size() > static_cast<std::size_t>(options_.retained)
          ? completed.size() - static_cast<std::size_t>(options_.retained)
          : 0;
  const std::set<std::int64_t> kept(completed.begin() + static_cast<std::ptrdiff_t>(keep_from),
                                    completed.end());
  const std::int64_t newest = completed.empty() ? 0 : completed.back();
  for (auto& [id, list] : by_id) {
    if (kept.count(id) != 0 || id > newest) continue;  // newer: being written
    std::stable_partition(list.begin(), list.end(),
                          [&](const std::string& p) { return p == metadata_path(id); });
    for (const std::string& p : list) MS_RETURN_IF_ERROR(storage.remove(p));
    referenced_.erase(id);
  }
  std::set<std::string> live;
  for (std::int64_t id : kept) {
    auto it = referenced_.find(id);
    if (it == referenced_.end()) {
      // Kept from an earlier run: read which files it uses.
      MS_ASSIGN_OR_RETURN(std::string bytes, storage.get(metadata_path(id)));
      MS_ASSIGN_OR_RETURN(std::set<std::string> files,
                          decode_metadata_files(bytes, metadata_path(id)));
      it = referenced_.emplace(id, std::move(files)).first;
    }
    live.insert(it->second.begin(), it->second.end());
  }
  // shared_files_ is the storage's shared/ as listed at start, plus what this
  // run uploaded, less what it removed: no need to list it again.
  for (auto it = shared_files_.begin(); it != shared_files_.end();) {
    if (live.count(*it) != 0) {
      ++it;
      continue;
    }
    MS_RETURN_IF_ERROR(storage.remove(*it));
    it = shared_files_.erase(it);
  }
  return Status();
}

}  // namespace meterstream::detail
