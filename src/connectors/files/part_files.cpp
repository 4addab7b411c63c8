// The part files of exactly_once_file_sink(): staging, commit and recovery
// (the protocol is in files.hpp's file comment).

#include "meterstream/connectors/files/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "fmt/format.h"

namespace meterstream::detail {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "part-";
constexpr std::string_view kCommittedSuffix = ".csv";
constexpr std::string_view kStagedSuffix = ".staged";

Status io_error(const std::string& what, const std::string& path, int error) {
  return absl::UnavailableError(
      fmt::format("exactly-once file sink: {} '{}': {}", what, path, std::strerror(error)));
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Consumes a decimal number at the front of `s`.
bool take_number(std::string_view& s, std::uint64_t* out) {
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 10);
  if (ec != std::errc() || ptr == s.data()) return false;
  s.remove_prefix(static_cast<std::size_t>(ptr - s.data()));
  return true;
}

// The epoch of a committed part file's name ("part-<epoch>-w<worker>.csv"),
// or -1 when `name` is not one.
std::int64_t committed_epoch(std::string_view name) {
  if (!starts_with(name, kPrefix) || !ends_with(name, kCommittedSuffix)) return -1;
  name.remove_prefix(kPrefix.size());
  name.remove_suffix(kCommittedSuffix.size());
  std::uint64_t epoch = 0;
  std::uint64_t worker = 0;
  if (!take_number(name, &epoch) || !starts_with(name, "-w")) return -1;
  name.remove_prefix(2);
  if (!take_number(name, &worker) || !name.empty()) return -1;
  if (epoch > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return -1;
  return static_cast<std::int64_t>(epoch);
}

// True when `name` is a staged part file's name: a committed name plus ".staged".
bool is_staged_name(std::string_view name) {
  return ends_with(name, kStagedSuffix) &&
         committed_epoch(name.substr(0, name.size() - kStagedSuffix.size())) >= 0;
}

std::string path_in(const std::string& dir, std::string_view name) {
  return (fs::path(dir) / fs::path(std::string(name))).string();
}

// Makes renames and deletions in `dir` durable.
Status sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open folder", dir, errno);
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (rc != 0) return io_error("cannot sync folder", dir, error);
  return Status();
}

class StagedPartFileImpl final : public StagedPartFile {
 public:
  StagedPartFileImpl(std::string dir, int worker)
      : dir_(std::move(dir)),
        worker_(worker),
        in_progress_(path_in(dir_, fmt::format("part-inprogress-w{}.staged", worker))) {}
  ~StagedPartFileImpl() override {
    // Records not staged yet stay in the in-progress file, which recover()
    // deletes (or the next run of this worker truncates).
    if (file_ != nullptr) std::fclose(file_);
  }

  Status append(const std::string& text) override {
    if (!failed_.ok()) return failed_;
    if (text.empty()) return Status();
    if (file_ == nullptr) {
      file_ = std::fopen(in_progress_.c_str(), "wb");
      if (file_ == nullptr) return fail(io_error("cannot create", in_progress_, errno));
    }
    if (std::fwrite(text.data(), 1, text.size(), file_) != text.size()) {
      return fail(io_error("cannot write", in_progress_, errno));
    }
    return Status();
  }

  StatusOr<std::string> prepare(std::int64_t epoch) override {
    if (!failed_.ok()) return failed_;
    if (epoch < 0) {
      return absl::InvalidArgumentError(fmt::format(
          "exactly-once file sink '{}': prepare_commit({}): negative epoch", dir_, epoch));
    }
    if (file_ == nullptr) return std::string();
    if (epoch <= last_epoch_) {
      // Staging under the name of an earlier epoch would replace its file.
      return fail(absl::FailedPreconditionError(fmt::format(
          "exactly-once file sink '{}': prepare_commit({}) after prepare_commit({}) of worker {}: "
          "epochs must increase",
          dir_, epoch, last_epoch_, worker_)));
    }
    // No fsync here: this runs while the worker waits at a barrier;
    // persist_part_files() makes the file durable from the checkpoint thread.
    std::FILE* f = std::exchange(file_, nullptr);
    const bool flushed = std::fflush(f) == 0;
    const int error = errno;
    if (std::fclose(f) != 0 || !flushed) {
      return fail(io_error("cannot flush", in_progress_, flushed ? errno : error));
    }
    std::string name = fmt::format("part-{:010d}-w{}.csv.staged", epoch, worker_);
    const std::string staged = path_in(dir_, name);
    if (std::rename(in_progress_.c_str(), staged.c_str()) != 0) {
      return fail(io_error("cannot rename '" + in_progress_ + "' to", staged, errno));
    }
    last_epoch_ = epoch;
    return name;
  }

  Status close() override {
    if (!failed_.ok()) return failed_;
    if (file_ == nullptr) return Status();
    std::fclose(std::exchange(file_, nullptr));
    return absl::FailedPreconditionError(fmt::format(
        "exactly-once file sink '{}': records written to '{}' after the last prepare_commit() "
        "would never be committed",
        dir_, in_progress_));
  }

 private:
  Status fail(Status s) {
    failed_ = s;
    return s;
  }

  std::string dir_;
  int worker_;
  std::string in_progress_;
  std::FILE* file_ = nullptr;
  std::int64_t last_epoch_ = -1;
  Status failed_;
};

}  // namespace

std::unique_ptr<StagedPartFile> StagedPartFile::create(std::string dir, int worker) {
  return std::make_unique<StagedPartFileImpl>(std::move(dir), worker);
}

Status make_part_directory(const std::string& dir) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("exactly-once file sink: the folder name is empty");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::error_code ec_is_dir;
  if (fs::is_directory(dir, ec_is_dir)) {
    // Fails at job start rather than at the first record.
    if (::access(dir.c_str(), W_OK | X_OK) != 0) return io_error("cannot write into", dir, errno);
    return Status();
  }
  if (fs::exists(fs::symlink_status(dir, ec_is_dir))) {
    return absl::InvalidArgumentError(
        fmt::format("exactly-once file sink: '{}' exists and is not a folder", dir));
  }
  return io_error("cannot create folder", dir, ec ? ec.value() : ENOENT);
}

Status persist_part_files(const std::string& dir, const std::vector<std::string>& prepared) {
  for (const std::string& name : prepared) {
    if (name.empty()) continue;
    std::string path = path_in(dir, name);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
      // Committed already (a restore persisting again): the published file.
      path = path_in(dir, std::string_view(name).substr(0, name.size() - kStagedSuffix.size()));
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) return io_error("cannot open", path, errno);
    const int synced = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    if (synced != 0) return io_error("cannot fsync", path, error);
  }
  // The checkpoint that lists the names must find them after a power loss too.
  return sync_directory(dir);
}

Status commit_part_files(const std::string& dir, const std::vector<std::string>& prepared) {
  Status result;
  bool renamed = false;
  for (const std::string& name : prepared) {
    if (name.empty()) continue;
    if (!is_staged_name(name)) {
      result.Update(absl::InvalidArgumentError(fmt::format(
          "exactly-once file sink '{}': cannot commit '{}': not a staged part file name", dir,
          name)));
      continue;
    }
    const std::string staged = path_in(dir, name);
    const std::string committed =
        path_in(dir, std::string_view(name).substr(0, name.size() - kStagedSuffix.size()));
    // Never over published output: two epochs with one name would mean
    // output counted twice, or lost.
    struct stat published{};
    if (::stat(committed.c_str(), &published) == 0 && ::access(staged.c_str(), F_OK) == 0) {
      result.Update(absl::FailedPreconditionError(fmt::format(
          "exactly-once file sink '{}': cannot commit '{}': '{}' is already published", dir, name,
          fs::path(committed).filename().string())));
      continue;
    }
    if (std::rename(staged.c_str(), committed.c_str()) == 0) {
      renamed = true;
      continue;
    }
    const int error = errno;
    if (error != ENOENT) {
      result.Update(io_error("cannot rename '" + staged + "' to", committed, error));
      continue;
    }
    // Committed before (by the commit of an earlier run, which crashed
    // before the checkpoint thread knew it): nothing to do.
    struct stat st{};
    if (::stat(committed.c_str(), &st) == 0) continue;
    result.Update(absl::DataLossError(
        fmt::format("exactly-once file sink '{}': cannot commit '{}': neither it nor '{}' exists",
                    dir, name, fs::path(committed).filename().string())));
  }
  if (renamed) result.Update(sync_directory(dir));
  return result;
}

Status check_no_published_output(const std::string& dir) {
  MS_RETURN_IF_ERROR(make_part_directory(dir));
  std::vector<std::string> published;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (committed_epoch(name) >= 0 && it->is_regular_file(type_ec)) published.push_back(name);
  }
  if (ec) return io_error("cannot list folder", dir, ec.value());
  if (published.empty()) return Status();
  std::sort(published.begin(), published.end());
  return absl::FailedPreconditionError(fmt::format(
      "exactly-once file sink: folder '{}' already holds published output of an earlier run "
      "('{}'{}); a job that does not restore that run's checkpoint neither deletes nor adds "
      "to it: restore the checkpoint (RestoreFrom::latest()), or write into an empty folder",
      dir, published.front(),
      published.size() > 1 ? fmt::format(" and {} more", published.size() - 1) : ""));
}

Status recover_part_files(const std::string& dir, std::int64_t restored_checkpoint,
                          const std::vector<std::string>& keep) {
  MS_RETURN_IF_ERROR(make_part_directory(dir));
  // A job that starts afresh never deletes published output it did not write.
  if (restored_checkpoint <= 0) MS_RETURN_IF_ERROR(check_no_published_output(dir));
  const std::set<std::string, std::less<>> kept(keep.begin(), keep.end());
  std::vector<std::string> doomed;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (!starts_with(name, kPrefix) || !it->is_regular_file(type_ec)) continue;
    if (ends_with(name, kStagedSuffix)) {
      // Staged for a checkpoint that is not restored, or never staged.
      if (kept.count(name) == 0) doomed.push_back(name);
      continue;
    }
    // Published for a checkpoint after the restored one: the restored job
    // produces that output again.
    const std::int64_t epoch = committed_epoch(name);
    if (epoch > restored_checkpoint && kept.count(name + std::string(kStagedSuffix)) == 0) {
      doomed.push_back(name);
    }
  }
  if (ec) return io_error("cannot list folder", dir, ec.value());
  for (const std::string& name : doomed) {
    const std::string path = path_in(dir, name);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return io_error("cannot delete", path, errno);
    }
  }
  if (!doomed.empty()) MS_RETURN_IF_ERROR(sync_directory(dir));
  return commit_part_files(dir, keep);
}

}  // namespace meterstream::detail
