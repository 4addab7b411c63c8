#include "state/rocksdb/directory.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "meterstream/state/rocksdb_state_backend.hpp"

namespace meterstream::detail {
namespace {

namespace fs = std::filesystem;

// The state directories claimed by backends of this process (canonical
// paths).
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

}  // namespace

Status in_use_error(const std::string& path, const std::string& detail) {
  return absl::FailedPreconditionError(
      absl::StrCat("RocksDB state dir '", path, "' is in use by another process (or by "
                   "another state backend of this process): ", detail));
}

bool is_lock_error(const std::string& message) {
  // PosixEnv::LockFile: "While lock file: <dir>/LOCK: Resource temporarily
  // unavailable" (another process) or "lock hold by current process" (another
  // DB of this process).
  return message.find("lock") != std::string::npos || message.find("LOCK") != std::string::npos;
}

DirectoryClaim::~DirectoryClaim() {
  if (!claimed_.empty()) OpenDirectories::instance().release(claimed_);
}

Status DirectoryClaim::acquire(const std::string& path) {
  std::error_code ec;
  std::string canonical = fs::weakly_canonical(path, ec).string();
  if (ec) canonical = path;
  if (!OpenDirectories::instance().acquire(canonical)) {
    return in_use_error(path, "another backend of this process has it open");
  }
  claimed_ = canonical;
  if (const pid_t holder = lock_holder(path); holder != 0) {
    return in_use_error(path, absl::StrCat("process ", holder, " holds its LOCK"));
  }
  return Status();
}

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

Status write_layout_marker(const std::string& path) {
  const fs::path marker = fs::path(path) / kLayoutFile;
  const fs::path tmp = fs::path(path) / (std::string(kLayoutFile) + ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kRocksDBStateLayoutVersion << "\n";
    out.flush();
    if (!out) {
      return absl::PermissionDeniedError(
          absl::StrCat("RocksDB state dir '", path, "': cannot write ", tmp.string()));
    }
  }
  std::error_code ec;
  fs::rename(tmp, marker, ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat("RocksDB state dir '", path,
                                                    "': cannot write ", marker.string(),
                                                    ": ", ec.message()));
  }
  return Status();
}

}  // namespace meterstream::detail
