#include "checkpoint/coordinator.hpp"

#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <utility>

#include "checkpoint/storage_util.hpp"
#include "core/failpoint.hpp"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace meterstream::detail {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "meterstream-checkpoint/1";
constexpr const char* kStateMagic = "MSOPSTATE1";

std::string checkpoint_dir(std::int64_t id) { return fmt::format("chk-{:010}", id); }
std::string metadata_path(std::int64_t id) { return checkpoint_dir(id) + "/_metadata"; }

// "chk-0000000007/..." -> 7; -1 when the path is not a checkpoint's.
std::int64_t checkpoint_id_of(std::string_view path) {
  if (path.substr(0, 4) != "chk-") return -1;
  path.remove_prefix(4);
  std::int64_t id = 0;
  std::size_t n = 0;
  while (n < path.size() && path[n] >= '0' && path[n] <= '9') {
    id = id * 10 + (path[n] - '0');
    ++n;
  }
  if (n == 0 || (n < path.size() && path[n] != '/')) return -1;
  return id;
}

bool from_hex(std::string_view hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out->clear();
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

// Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates).
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// Names in the metadata (sources, sinks, operators, staged output) come from
// users and file paths, which need not be UTF-8, while JSON text must be:
// valid UTF-8 is stored as a string, anything else as {"hex": "<bytes>"}, so
// that a restore gets the very bytes back.
json text_json(const std::string& s) {
  if (valid_utf8(s)) return s;
  return json{{"hex", to_hex(std::string_view(s))}};
}

// The inverse of text_json(); throws json::exception on another shape (load()
// turns that into kDataLoss).
std::string text_of(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  std::string out;
  if (!from_hex(j.at("hex").get<std::string>(), &out)) {
    throw json::other_error::create(501, "a name's hex bytes do not decode", &j);
  }
  return out;
}

json text_list(const std::vector<std::string>& list) {
  json out = json::array();
  for (const std::string& s : list) out.push_back(text_json(s));
  return out;
}

// An operator instance's keyed bytes and operator-wide bytes as one object.
std::string encode_state(const OperatorSnapshot& op) {
  std::string out = kStateMagic;
  put_u64(&out, op.keyed.size());
  for (const auto& [kg, bytes] : op.keyed) {
    put_i64(&out, kg);
    put_u64(&out, bytes.size());
    out += bytes;
  }
  put_u64(&out, op.operator_state.size());
  out += op.operator_state;
  return out;
}

Status decode_state(std::string_view in, const std::string& path, int worker,
                    RestoredCheckpoint::Operator* into) {
  auto bad = [&] { return absl::DataLossError(fmt::format("{}: operator state does not decode", path)); };
  if (in.substr(0, std::string_view(kStateMagic).size()) != kStateMagic) return bad();
  in.remove_prefix(std::string_view(kStateMagic).size());
  std::uint64_t n = 0;
  if (!get_u64(&in, &n)) return bad();
  for (std::uint64_t i = 0; i < n; ++i) {
    std::int64_t kg = 0;
    std::uint64_t len = 0;
    if (!get_i64(&in, &kg) || !get_u64(&in, &len) || len > in.size()) return bad();
    into->keyed[static_cast<int>(kg)].emplace_back(in.substr(0, len));
    in.remove_prefix(len);
  }
  std::uint64_t len = 0;
  if (!get_u64(&in, &len) || len != in.size()) return bad();
  into->operator_states[worker] = std::string(in);
  return Status();
}

Status file_sha256(const std::string& path, std::string* hex) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("cannot read '{}'", path));
  Sha256 sha;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) return absl::DataLossError(fmt::format("error reading '{}'", path));
  *hex = detail::to_hex(sha.finish());
  return Status();
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Writes, reads back and removes an object, so that a storage that cannot be
// written (or read) fails Job::start() with the storage's own error code.
Status probe(CheckpointStorage& storage) {
  const std::string path = fmt::format("_probe-{}-{}", ::getpid(), now_ms());
  const std::string bytes = "meterstream checkpoint storage probe";
  auto fail = [&](const Status& s, const char* what) {
    return Status(s.code(), fmt::format("checkpoint storage {} is not usable: {} the probe "
                                        "object '{}': {}",
                                        storage.name(), what, path, std::string(s.message())));
  };
  Status s = storage.put(path, bytes);
  if (!s.ok()) return fail(s, "writing");
  StatusOr<std::string> got = storage.get(path);
  if (!got.ok() || *got != bytes) {
    (void)storage.remove(path);
    return fail(got.ok() ? absl::DataLossError("read back other bytes") : got.status(), "reading");
  }
  s = storage.remove(path);
  if (!s.ok()) return fail(s, "removing");
  return Status();
}

}  // namespace

StatusOr<std::unique_ptr<Coordinator>> Coordinator::create(const CheckpointOptions& options,
                                                           JobShared& shared,
                                                           std::vector<SinkRef> sinks,
                                                           std::vector<SourceRef> sources) {
  if (!options.storage) {
    return absl::InvalidArgumentError(
        "JobOptions.checkpoint.storage is required with checkpoints or a restore");
  }
  if (options.interval.count() < 0) {
    return absl::InvalidArgumentError("JobOptions.checkpoint.interval must be >= 0");
  }
  if (options.retained < 1) {
    return absl::InvalidArgumentError(
        fmt::format("JobOptions.checkpoint.retained must be >= 1, got {}", options.retained));
  }
  if (options.max_consecutive_failures < 1) {
    return absl::InvalidArgumentError(
        fmt::format("JobOptions.checkpoint.max_consecutive_failures must be >= 1, got {}",
                    options.max_consecutive_failures));
  }
  std::vector<std::string> commit_points;
  for (const SinkRef& s : sinks) {
    if (s.sink->commit_point()) commit_points.push_back(s.name);
  }
  if (commit_points.size() > 1) {
    // Each would be the checkpoint's commit point, and two commits are not atomic.
    return absl::InvalidArgumentError(fmt::format(
        "a job can have one transactional (commit-point) sink, this one has {}: {}",
        commit_points.size(), fmt::join(commit_points, ", ")));
  }
  std::unique_ptr<Coordinator> c(
      new Coordinator(options, shared, std::move(sinks), std::move(sources)));
  // Problems with the storage show at start, not at the first checkpoint: a
  // second job on the same folder, a folder that cannot be written.
  if (auto* exclusive = dynamic_cast<ExclusiveStorage*>(options.storage.get())) {
    MS_ASSIGN_OR_RETURN(c->storage_lock_, exclusive->lock_for_writer());
  }
  MS_RETURN_IF_ERROR(probe(*options.storage));
  std::error_code ec;
  if (options.local_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path(ec) / "meterstream-chk-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return absl::PermissionDeniedError(
          fmt::format("cannot create a local checkpoint folder '{}'", tmpl));
    }
    c->local_dir_ = tmpl;
    c->owns_local_dir_ = true;
  } else {
    c->local_dir_ = options.local_dir;
    fs::create_directories(c->local_dir_, ec);
    std::error_code dir_ec;
    if (ec || !fs::is_directory(c->local_dir_, dir_ec)) {
      return absl::PermissionDeniedError(fmt::format(
          "JobOptions.checkpoint.local_dir '{}' cannot be created: {}", c->local_dir_,
          ec ? ec.message() : "not a directory"));
    }
    // Leftovers of an earlier run (snapshots that were never uploaded).
    for (const char* sub : {"snapshots", "restore"}) fs::remove_all(fs::path(c->local_dir_) / sub, ec);
  }
  return c;
}

Coordinator::Coordinator(const CheckpointOptions& options, JobShared& shared,
                         std::vector<SinkRef> sinks, std::vector<SourceRef> sources)
    : options_(options), shared_(shared), sinks_(std::move(sinks)), sources_(std::move(sources)) {
  for (const SinkRef& s : sinks_) {
    if (s.sink->commit_point()) commit_point_ = &s;
  }
  completed_ = shared_.metrics.counter("checkpoints_completed");
  failed_ = shared_.metrics.counter("checkpoints_failed");
  uploaded_bytes_ = shared_.metrics.counter("checkpoint_uploaded_bytes");
  source_commit_errors_ = shared_.metrics.counter("source_commit_errors");
  last_id_ = shared_.metrics.gauge("checkpoint_last_id", GaugeMerge::kMax, 0);
  last_duration_ms_ = shared_.metrics.gauge("checkpoint_last_duration_ms", GaugeMerge::kMax, 0);
  last_sync_ms_ = shared_.metrics.gauge("checkpoint_last_sync_ms", GaugeMerge::kMax, 0);
  max_sync_ms_ = shared_.metrics.gauge("checkpoint_max_sync_ms", GaugeMerge::kMax, 0);
}

Coordinator::~Coordinator() {
  stop();
  std::error_code ec;
  if (owns_local_dir_) fs::remove_all(local_dir_, ec);
}

// ---- restore ---------------------------------------------------------------

StatusOr<std::shared_ptr<const RestoredCheckpoint>> Coordinator::restore() {
  CheckpointStorage& storage = *options_.storage;
  MS_ASSIGN_OR_RETURN(std::vector<std::string> paths, storage.list("chk-"));
  std::set<std::int64_t> seen;
  std::vector<std::int64_t> completed;
  for (const std::string& p : paths) {
    const std::int64_t id = checkpoint_id_of(p);
    if (id < 0) continue;
    seen.insert(id);
    if (p == metadata_path(id)) completed.push_back(id);
  }
  if (!seen.empty()) next_id_ = *seen.rbegin() + 1;
  MS_ASSIGN_OR_RETURN(std::vector<std::string> shared, storage.list("shared/"));
  shared_files_.insert(shared.begin(), shared.end());

  std::shared_ptr<RestoredCheckpoint> restored;
  const RestoreFrom& from = options_.restore;
  if (commit_point_ != nullptr && from.kind != RestoreFrom::Kind::kNone) {
    // The commit-point sink knows which checkpoint committed: only that one
    // matches the output it published, whatever newer metadata exists.
    StatusOr<std::int64_t> committed = commit_point_->sink->committed_checkpoint();
    if (!committed.ok()) {
      return Status(committed.status().code(),
                    fmt::format("{}: reading its last committed checkpoint: {}",
                                commit_point_->name, std::string(committed.status().message())));
    }
    const std::int64_t id = *committed;
    if (from.kind != RestoreFrom::Kind::kLatest) {
      MS_ASSIGN_OR_RETURN(const std::int64_t asked, restore_id(completed));
      if (asked != id) {
        return absl::FailedPreconditionError(fmt::format(
            "cannot restore checkpoint {}: {} committed the output of checkpoint {}, so only "
            "that checkpoint matches it (use RestoreFrom::latest())",
            asked, commit_point_->name, id));
      }
    }
    if (id > 0) {
      if (std::find(completed.begin(), completed.end(), id) == completed.end()) {
        return absl::DataLossError(fmt::format(
            "{} committed checkpoint {}, but {} has no {}", commit_point_->name, id,
            storage.name(), metadata_path(id)));
      }
      StatusOr<std::shared_ptr<RestoredCheckpoint>> r = load(id);
      if (!r.ok()) {
        return Status(r.status().code(),
                      fmt::format("checkpoint {}, which {} committed: {}", id, commit_point_->name,
                                  std::string(r.status().message())));
      }
      restored = *std::move(r);
    }
  } else if (from.kind == RestoreFrom::Kind::kLatest) {
    std::vector<std::string> failures;
    for (auto it = completed.rbegin(); it != completed.rend() && !restored; ++it) {
      StatusOr<std::shared_ptr<RestoredCheckpoint>> r = load(*it);
      if (r.ok()) {
        restored = *std::move(r);
        break;
      }
      // Unreachable storage is not a reason to go back in time.
      const auto code = r.status().code();
      if (code != absl::StatusCode::kDataLoss && code != absl::StatusCode::kNotFound &&
          code != absl::StatusCode::kInvalidArgument) {
        return r.status();
      }
      std::fprintf(stderr, "meterstream: checkpoint %lld does not verify (%s); trying an older one\n",
                   static_cast<long long>(*it), std::string(r.status().message()).c_str());
      failures.push_back(fmt::format("{}: {}", *it, std::string(r.status().message())));
      bad_.insert(*it);
    }
    if (!restored && !failures.empty()) {
      return absl::DataLossError(fmt::format("no checkpoint in {} verifies: {}", storage.name(),
                                             fmt::join(failures, "; ")));
    }
  } else if (from.kind == RestoreFrom::Kind::kId || from.kind == RestoreFrom::Kind::kPath) {
    MS_ASSIGN_OR_RETURN(const std::int64_t id, restore_id(completed));
    MS_ASSIGN_OR_RETURN(restored, load(id));
  }

  const std::int64_t restored_id = restored ? restored->id : 0;
  if (restored) {
    splits_.insert(restored->splits.begin(), restored->splits.end());
    next_id_ = std::max(next_id_, restored_id + 1);
  }
  if (from.kind != RestoreFrom::Kind::kNone) {
    // Checkpoints after the restored one belong to a history that the sinks
    // are about to discard (their output goes): they must never be restored.
    for (std::int64_t id : completed) {
      if (id <= restored_id) continue;
      std::fprintf(stderr, "meterstream: checkpoint %lld is newer than the one restored (%lld): "
                   "removing its metadata\n",
                   static_cast<long long>(id), static_cast<long long>(restored_id));
      MS_RETURN_IF_ERROR(storage.remove(metadata_path(id)));
    }
  }
  // Sinks: finish the restored checkpoint's commit, discard everything later.
  for (const SinkRef& s : sinks_) {
    std::vector<std::string> keep;
    if (restored) {
      auto it = restored->prepared.find(s.uid);
      if (it != restored->prepared.end()) keep = it->second;
    }
    Status st = s.sink->recover(restored_id, keep);
    if (!st.ok()) {
      return Status(st.code(), fmt::format("{}: recovering its output: {}", s.name,
                                           std::string(st.message())));
    }
  }
  triggered.store(restored_id);
  return std::shared_ptr<const RestoredCheckpoint>(std::move(restored));
}

StatusOr<std::int64_t> Coordinator::restore_id(const std::vector<std::int64_t>& completed) {
  const RestoreFrom& from = options_.restore;
  std::int64_t id = from.checkpoint_id;
  if (from.kind == RestoreFrom::Kind::kPath) {
    id = checkpoint_id_of(from.metadata_path + "/");
    if (id < 0 ||
        (from.metadata_path != checkpoint_dir(id) && from.metadata_path != metadata_path(id))) {
      return absl::InvalidArgumentError(fmt::format(
          "RestoreFrom::path('{}'): not a checkpoint's path (expected 'chk-<id>' or "
          "'chk-<id>/_metadata')",
          from.metadata_path));
    }
  }
  if (std::find(completed.begin(), completed.end(), id) == completed.end()) {
    return absl::NotFoundError(fmt::format("checkpoint {} is not in {} (no {})", id,
                                           options_.storage->name(), metadata_path(id)));
  }
  return id;
}

StatusOr<std::shared_ptr<RestoredCheckpoint>> Coordinator::load(std::int64_t id) {
  CheckpointStorage& storage = *options_.storage;
  const std::string meta_path = metadata_path(id);
  MS_ASSIGN_OR_RETURN(std::string bytes, storage.get(meta_path));
  json meta = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(fmt::format("{}: {}", meta_path, what));
  };
  if (meta.is_discarded() || !meta.is_object()) return bad("not JSON");
  try {
    if (meta.at("format").get<std::string>() != kFormat) {
      return bad(fmt::format("format '{}', expected '{}'", meta.at("format").get<std::string>(),
                             kFormat));
    }
    const int max_parallelism = meta.at("max_parallelism").get<int>();
    if (max_parallelism != shared_.options.max_parallelism) {
      return absl::FailedPreconditionError(fmt::format(
          "{}: taken with max_parallelism {}, the job has {}; key groups cannot be mapped",
          meta_path, max_parallelism, shared_.options.max_parallelism));
    }
    auto r = std::make_shared<RestoredCheckpoint>();
    r->id = meta.at("id").get<std::int64_t>();
    if (r->id != id) return bad(fmt::format("holds id {}", r->id));
    r->final = meta.value("final", false);
    for (const json& s : meta.at("sources")) {
      SplitSnapshot split;
      split.source = text_of(s.at("source"));
      split.split = s.at("split").get<int>();
      if (!from_hex(s.at("position").get<std::string>(), &split.position)) {
        return bad("a split position is not hex");
      }
      split.watermark = s.at("watermark").get<std::int64_t>();
      split.max_timestamp = s.at("max_timestamp").get<std::int64_t>();
      split.since_watermark = s.at("since_watermark").get<std::int64_t>();
      split.ended = s.at("ended").get<bool>();
      r->splits[{split.source, split.split}] = split;
    }
    for (const json& s : meta.at("sinks")) {
      std::vector<std::string>& commit = r->prepared[text_of(s.at("sink"))];
      for (const json& c : s.at("commit")) commit.push_back(text_of(c));
    }
    const fs::path local = fs::path(local_dir_) / "restore" / checkpoint_dir(id);
    std::error_code ec;
    fs::remove_all(local, ec);
    int n = 0;
    for (const json& op : meta.at("operators")) {
      const std::string name = text_of(op.at("operator"));
      const int worker = op.at("worker").get<int>();
      RestoredCheckpoint::Operator& into = r->operators[name];
      const std::string state_path = op.at("state").get<std::string>();
      MS_ASSIGN_OR_RETURN(std::string state, storage.get(state_path));
      MS_RETURN_IF_ERROR(decode_state(state, state_path, worker, &into));
      for (const json& st : op.at("stores")) {
        LocalStoreSnapshot s;
        s.local_dir = (local / std::to_string(n++)).string();
        fs::create_directories(s.local_dir, ec);
        if (ec) return absl::PermissionDeniedError(fmt::format("cannot create '{}'", s.local_dir));
        s.snapshot.backend = st.at("backend").get<std::string>();
        s.snapshot.key_groups = KeyGroupRange{st.at("key_groups").at(0).get<int>(),
                                              st.at("key_groups").at(1).get<int>()};
        for (const json& f : st.at("files")) {
          StoreSnapshot::File file{f.at("name").get<std::string>(), f.at("shared").get<bool>()};
          if (file.name.empty() || file.name.find('/') != std::string::npos || file.name[0] == '.') {
            return bad(fmt::format("bad store file name '{}'", file.name));
          }
          MS_RETURN_IF_ERROR(
              storage.get_file(f.at("path").get<std::string>(), s.local_dir + "/" + file.name));
          s.snapshot.files.push_back(std::move(file));
        }
        into.stores.push_back(std::move(s));
      }
    }
    std::set<std::string> files;
    for (const json& f : meta.at("files")) files.insert(f.get<std::string>());
    referenced_[id] = std::move(files);
    return r;
  } catch (const json::exception& e) {
    return bad(fmt::format("malformed: {}", e.what()));
  }
}

// ---- the checkpoint thread ---------------------------------------------------

void Coordinator::start(int units) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    units_ = units;
    reports_.assign(static_cast<std::size_t>(units), std::nullopt);
    early_.assign(static_cast<std::size_t>(units), WorkerSnapshot());
    unit_finished_.assign(static_cast<std::size_t>(units), false);
    rests_.assign(static_cast<std::size_t>(units), WorkerSnapshot());
  }
  if (options_.interval.count() > 0) {
    thread_ = std::thread([this] {
      // Nothing may escape a library thread (std::terminate): whatever a
      // checkpoint throws fails the job instead.
      try {
        run();
      } catch (const std::exception& e) {
        shared_.fail(absl::InternalError(
            fmt::format("checkpoint coordinator: unexpected exception: {}", e.what())));
      } catch (...) {
        shared_.fail(absl::InternalError("checkpoint coordinator: unexpected exception"));
      }
    });
  }
}

void Coordinator::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Snapshots of a checkpoint that will not complete; restored files that
  // operators have read in open().
  std::error_code ec;
  fs::remove_all(fs::path(local_dir_) / "snapshots", ec);
  fs::remove_all(fs::path(local_dir_) / "restore", ec);
}

void Coordinator::report(int unit, WorkerSnapshot snapshot) {
  failpoint("snapshot");
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto u = static_cast<std::size_t>(unit);
    if (snapshot.id == pending_) {
      reports_[u] = std::move(snapshot);
    } else {
      // Not the checkpoint being collected (cannot happen while workers report
      // only triggered ids): keep it for the next one rather than lose it.
      early_[u].merge(std::move(snapshot));
    }
  }
  cv_.notify_all();
}

void Coordinator::finished(int unit, WorkerSnapshot rest) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    WorkerSnapshot& r = rests_[static_cast<std::size_t>(unit)];
    for (auto& s : rest.splits) r.splits.push_back(std::move(s));
    for (auto& p : rest.prepared) r.prepared.push_back(std::move(p));
    unit_finished_[static_cast<std::size_t>(unit)] = true;
  }
  cv_.notify_all();
}

std::string Coordinator::store_snapshot_dir(std::int64_t id, const std::string& /*op*/,
                                            int worker) {
  std::int64_t n = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    n = ++store_dirs_;
  }
  const fs::path parent = fs::path(local_dir_) / "snapshots" / checkpoint_dir(id);
  std::error_code ec;
  fs::create_directories(parent, ec);
  return (parent / fmt::format("w{}-{}", worker, n)).string();
}

void Coordinator::run() {
  using Clock = std::chrono::steady_clock;
  auto next = Clock::now() + options_.interval;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, next, [&] { return stopping_ || finishing_; });
      if (stopping_ || finishing_) return;
      // Every worker ran out of input: finish() takes the final checkpoint.
      if (std::all_of(unit_finished_.begin(), unit_finished_.end(), [](bool f) { return f; })) {
        return;
      }
    }
    const auto started = Clock::now();
    const std::int64_t id = next_id_++;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_ = id;
    }
    triggered.store(id, std::memory_order_release);
    std::vector<WorkerSnapshot> parts;
    if (!collect(id, &parts)) return;
    Status s = complete(id, std::move(parts), /*final=*/false);
    if (commit_failed_) return;  // complete() failed the job
    if (!s.ok() && commit_point_ != nullptr) {
      // Its output is in an open transaction of the commit-point sink, which
      // cannot be carried into the next checkpoint's: restart from the last.
      failed_->add();
      shared_.fail(Status(s.code(), fmt::format("checkpoint {} failed, and {} cannot carry its "
                                                "output into a later checkpoint: {}",
                                                id, commit_point_->name,
                                                std::string(s.message()))));
      return;
    }
    if (!s.ok()) record_failure(id, s);
    const auto took = Clock::now() - started;
    last_duration_ms_->set(std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
    next = std::max(started + options_.interval, Clock::now());
  }
}

bool Coordinator::collect(std::int64_t id, std::vector<WorkerSnapshot>* parts) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stopping_ || shared_.cancelled.load()) return false;
    bool all = true;
    for (int u = 0; u < units_; ++u) {
      const auto i = static_cast<std::size_t>(u);
      all &= (reports_[i] && reports_[i]->id == id) || unit_finished_[i];
    }
    if (all) break;
    // finish() runs after the workers ended: what has not come never will.
    if (finishing_) return false;
    cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
  for (int u = 0; u < units_; ++u) {
    const auto i = static_cast<std::size_t>(u);
    WorkerSnapshot part = std::move(early_[i]);
    early_[i] = WorkerSnapshot();
    if (reports_[i] && reports_[i]->id == id) {
      part.merge(std::move(*reports_[i]));
      reports_[i].reset();
    } else {
      // Ran out of input before this barrier: all it produced belongs here.
      part.merge(std::move(rests_[i]));
      rests_[i] = WorkerSnapshot();
    }
    parts->push_back(std::move(part));
  }
  return true;
}

Status Coordinator::finish() {
  // A checkpoint triggered as the input ended is completed, not abandoned:
  // writers that passed its barrier already write the next epoch's output
  // (a transactional Kafka sink: into its other producer), so the final
  // checkpoint must come after it, or that output is never committed. The
  // thread ends by itself once every unit has finished.
  {
    std::lock_guard<std::mutex> lock(mu_);
    finishing_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  stop();
  if (commit_failed_) {
    // A checkpoint's commit failed while the input was ending (after the job
    // last looked at its errors): that output is not published, so neither
    // is the rest.
    const Status first = shared_.first_error();
    return Status(first.code(), fmt::format("the final checkpoint was not taken: {}",
                                            std::string(first.message())));
  }
  std::vector<WorkerSnapshot> parts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : reports_) {
      if (r) parts.push_back(std::move(*r));  // reported a barrier nobody completed
    }
    for (auto& r : early_) parts.push_back(std::move(r));
    for (auto& r : rests_) parts.push_back(std::move(r));
    rests_.clear();
  }
  // Operators that ended hold no state: the final checkpoint keeps positions
  // (all at their end) and commits the rest of the output.
  for (WorkerSnapshot& p : parts) p.operators.clear();
  const std::int64_t id = next_id_++;
  triggered.store(id, std::memory_order_release);
  Status s;
  try {
    s = complete(id, std::move(parts), /*final=*/true);
  } catch (const std::exception& e) {
    s = absl::InternalError(fmt::format("unexpected exception: {}", e.what()));
  } catch (...) {
    s = absl::InternalError("unexpected exception");
  }
  if (!s.ok()) {
    failed_->add();
    return Status(s.code(), fmt::format("the final checkpoint {} failed, so the output staged "
                                        "since the last checkpoint is not committed: {}",
                                        id, std::string(s.message())));
  }
  return Status();
}

void Coordinator::record_failure(std::int64_t id, const Status& status) {
  failed_->add();
  ++consecutive_failures_;
  std::fprintf(stderr, "meterstream: checkpoint %lld failed (%d in a row): %s\n",
               static_cast<long long>(id), consecutive_failures_,
               std::string(status.message()).c_str());
  if (consecutive_failures_ >= options_.max_consecutive_failures) {
    shared_.fail(Status(status.code(),
                        fmt::format("{} checkpoints failed in a row (max_consecutive_failures); "
                                    "the last, {}: {}",
                                    consecutive_failures_, id, std::string(status.message()))));
  }
}

// ---- completing a checkpoint ------------------------------------------------

StatusOr<std::string> Coordinator::upload_shared(const std::string& local_file,
                                                 const std::string& name) {
  struct stat st {};
  if (::stat(local_file.c_str(), &st) != 0) {
    return absl::NotFoundError(fmt::format("snapshot file '{}' is missing", local_file));
  }
  // Hard links of one SST file share an inode: hash each file once per run.
  // The inode alone does not name a file: once RocksDB deletes an SST (and
  // its snapshot links are gone) the file system hands the inode to a new
  // file, often one of the same size, which must not inherit the old
  // content name. RocksDB never reuses an SST's file name in a database, and
  // a reused inode gets a new mtime, so both go into the key.
  const std::string key =
      fmt::format("{}:{}:{}:{}.{}:{}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                  st.st_mtim.tv_nsec, name);
  auto it = hash_cache_.find(key);
  if (it == hash_cache_.end()) {
    std::string hex;
    MS_RETURN_IF_ERROR(file_sha256(local_file, &hex));
    const std::size_t dot = name.rfind('.');
    it = hash_cache_.emplace(key, "shared/" + hex + (dot == std::string::npos ? "" : name.substr(dot)))
             .first;
  }
  const std::string& path = it->second;
  if (shared_files_.count(path) == 0) {
    MS_RETURN_IF_ERROR(options_.storage->put_file(path, local_file));
    uploaded_bytes_->add(static_cast<std::int64_t>(st.st_size));
    shared_files_.insert(path);
    failpoint("upload");
  }
  return path;
}

Status Coordinator::complete(std::int64_t id, std::vector<WorkerSnapshot> parts, bool final) {
  CheckpointStorage& storage = *options_.storage;
  std::error_code ec;
  const fs::path local = fs::path(local_dir_) / "snapshots" / checkpoint_dir(id);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{local};

  std::int64_t sync_us = 0;
  for (WorkerSnapshot& p : parts) {
    sync_us = std::max(sync_us, p.sync_us);
    for (SplitSnapshot& s : p.splits) splits_[{s.source, s.split}] = std::move(s);
    // Staged output waits for a checkpoint that completes, this one or later.
    for (SinkPrepared& s : p.prepared) uncommitted_.push_back(std::move(s));
  }
  last_sync_ms_->set(sync_us / 1000);
  for (const WorkerSnapshot& p : parts) {
    if (!p.error.ok()) {
      return Status(p.error.code(), fmt::format("a snapshot failed: {}", std::string(p.error.message())));
    }
  }
  max_sync_ms_->set(std::max(max_sync_ms_->value(), sync_us / 1000));

  json meta;
  meta["format"] = kFormat;
  meta["id"] = id;
  meta["time_ms"] = now_ms();
  meta["final"] = final;
  meta["parallelism"] = shared_.options.parallelism;
  meta["max_parallelism"] = shared_.options.max_parallelism;
  json ranges = json::array();
  for (const KeyGroupRange& r : shared_.key_group_ranges) ranges.push_back({r.first, r.last});
  meta["key_group_ranges"] = std::move(ranges);
  json sources = json::array();
  for (const auto& [key, s] : splits_) {
    sources.push_back({{"source", text_json(s.source)},
                       {"split", s.split},
                       {"position", to_hex(s.position)},
                       {"watermark", s.watermark},
                       {"max_timestamp", s.max_timestamp},
                       {"since_watermark", s.since_watermark},
                       {"ended", s.ended}});
  }
  meta["sources"] = std::move(sources);

  std::set<std::string> files;
  json operators = json::array();
  int n = 0;
  for (const WorkerSnapshot& p : parts) {
    for (const OperatorSnapshot& op : p.operators) {
      const std::string state_path = fmt::format("{}/op-{}.state", checkpoint_dir(id), n);
      const std::string state = encode_state(op);
      MS_RETURN_IF_ERROR(storage.put(state_path, state));
      uploaded_bytes_->add(static_cast<std::int64_t>(state.size()));
      failpoint("upload");
      files.insert(state_path);
      json stores = json::array();
      int m = 0;
      for (const LocalStoreSnapshot& s : op.stores) {
        json list = json::array();
        for (const StoreSnapshot::File& f : s.snapshot.files) {
          const std::string local_file = s.local_dir + "/" + f.name;
          std::string path;
          if (f.shared) {
            MS_ASSIGN_OR_RETURN(path, upload_shared(local_file, f.name));
          } else {
            path = fmt::format("{}/op-{}-store-{}/{}", checkpoint_dir(id), n, m, f.name);
            MS_RETURN_IF_ERROR(storage.put_file(path, local_file));
            failpoint("upload");
          }
          files.insert(path);
          list.push_back({{"name", f.name}, {"path", path}, {"shared", f.shared}});
        }
        stores.push_back({{"backend", s.snapshot.backend},
                          {"key_groups", {s.snapshot.key_groups.first, s.snapshot.key_groups.last}},
                          {"files", std::move(list)}});
        ++m;
      }
      operators.push_back({{"operator", text_json(op.op)},
                           {"worker", op.worker},
                           {"key_groups", {op.key_groups.first, op.key_groups.last}},
                           {"state", state_path},
                           {"stores", std::move(stores)}});
      ++n;
    }
  }
  meta["operators"] = std::move(operators);
  std::map<std::string, std::vector<std::string>> by_sink;
  for (const SinkPrepared& s : uncommitted_) by_sink[s.sink].push_back(s.prepared);
  json sinks = json::array();
  for (const auto& [sink, list] : by_sink) {
    sinks.push_back({{"sink", text_json(sink)}, {"commit", text_list(list)}});
  }
  meta["sinks"] = std::move(sinks);
  meta["files"] = files;

  // Staged output must survive what the metadata survives.
  for (const SinkRef& s : sinks_) {
    auto it = by_sink.find(s.uid);
    if (it == by_sink.end()) continue;
    Status st = s.sink->persist(it->second);
    if (!st.ok()) {
      return Status(st.code(), fmt::format("{}: making its staged output durable: {}", s.name,
                                           std::string(st.message())));
    }
  }

  // The commit point: a checkpoint exists once its metadata does.
  // Every string above is valid UTF-8 (text_json), so dump() cannot throw;
  // the catch keeps it that way should a new field forget it.
  std::string meta_text;
  try {
    meta_text = meta.dump(1);
  } catch (const json::exception& e) {
    return absl::InternalError(
        fmt::format("checkpoint {}: its metadata does not encode as JSON: {}", id, e.what()));
  }
  failpoint("metadata");
  MS_RETURN_IF_ERROR(storage.put(metadata_path(id), meta_text));
  referenced_[id] = std::move(files);
  consecutive_failures_ = 0;
  completed_->add();
  last_id_->set(id);

  failpoint("commit");
  CheckpointCommit checkpoint;
  checkpoint.id = id;
  checkpoint.final = final;
  for (const auto& [key, split] : splits_) {
    checkpoint.splits.push_back({split.source, split.split, split.position, split.ended});
  }
  Status committed = commit_sinks(std::move(checkpoint), uncommitted_);
  if (!committed.ok()) {
    // Without a commit-point sink the checkpoint stands: a restore from it
    // commits again. With one, it did not commit, and a restore goes back to
    // the one before. Either way this run cannot go on with output it failed
    // to publish. The error is returned too: finish() must not report the
    // final checkpoint (the last of the output) as committed when it is not.
    shared_.fail(committed);
    commit_failed_ = true;
    return committed;
  }
  uncommitted_.clear();
  failpoint("retention");
  Status retained = retain();
  if (!retained.ok()) {
    std::fprintf(stderr, "meterstream: checkpoint %lld: retention: %s\n",
                 static_cast<long long>(id), std::string(retained.message()).c_str());
  }
  return Status();
}

Status Coordinator::commit_sinks(CheckpointCommit checkpoint,
                                 const std::vector<SinkPrepared>& prepared) {
  // The commit-point sink commits every checkpoint, with output or not: its
  // commit records which checkpoint the job restores.
  std::vector<const SinkRef*> order;
  if (commit_point_ != nullptr) order.push_back(commit_point_);
  for (const SinkRef& s : sinks_) {
    if (&s != commit_point_) order.push_back(&s);
  }
  for (const SinkRef* s : order) {
    std::vector<std::string> mine;
    for (const SinkPrepared& p : prepared) {
      if (p.sink == s->uid) mine.push_back(p.prepared);
    }
    if (mine.empty() && s != commit_point_) continue;
    Status st = s->sink->commit(checkpoint, mine);
    if (!st.ok()) {
      return Status(st.code(), fmt::format("{}: committing checkpoint {}: {}", s->name,
                                           checkpoint.id, std::string(st.message())));
    }
    if (s == commit_point_) {
      checkpoint.transactional = true;
      failpoint("committed");
    }
  }
  // Sources hear of it last; what they do with it (a Kafka source commits
  // its offsets for consumer lag) never decides what is restored.
  for (const SourceRef& src : sources_) {
    CheckpointCommit mine = checkpoint;
    mine.splits.clear();
    for (const CheckpointCommit::Split& split : checkpoint.splits) {
      if (split.source == src.uid) mine.splits.push_back(split);
    }
    Status st = src.source->checkpoint_committed(mine);
    if (!st.ok()) {
      source_commit_errors_->add();
      std::fprintf(stderr, "meterstream: checkpoint %lld: %s: %s\n",
                   static_cast<long long>(checkpoint.id), src.name.c_str(),
                   std::string(st.message()).c_str());
    }
  }
  return Status();
}

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
      json meta = json::parse(bytes, nullptr, false);
      std::set<std::string> files;
      try {
        if (meta.is_discarded() || !meta.is_object() || !meta.contains("files")) {
          throw json::other_error::create(501, "not JSON or no files", &meta);
        }
        files = meta.at("files").get<std::set<std::string>>();
      } catch (const json::exception& e) {
        return absl::DataLossError(fmt::format("{}: {}", metadata_path(id), e.what()));
      }
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
