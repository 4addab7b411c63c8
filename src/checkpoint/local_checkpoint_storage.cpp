// The local folder checkpoint storage (checkpoint/checkpoint_storage.hpp; the
// file format is in docs/checkpoint_storage.md).
//
// Design notes:
//   - An object is a file holding its bytes followed by a 48-byte trailer
//     (magic, length, SHA-256). A trailer rather than a side file keeps a put
//     to one rename, so atomicity needs nothing else; a trailer rather than a
//     header lets put_file() stream its input once, hashing as it copies.
//   - put: write "<dir>/.ms-tmp-<unique>-<name>", fsync it, rename it over the
//     object, fsync the directory. rename() is atomic on POSIX filesystems, so
//     a reader opens either the old file or the new one.
//   - remove() also removes the directories it leaves empty (retention would
//     otherwise leave one empty folder per deleted checkpoint). A put racing
//     with it may find its directory gone between creating it and opening
//     its temporary file; put retries that a few times.
#include <fcntl.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/storage_util.hpp"
#include "meterstream/checkpoint/checkpoint_storage.hpp"

namespace meterstream {
namespace {

namespace fs = std::filesystem;
using detail::Sha256;
using detail::Sha256Digest;

constexpr char kMagic[8] = {'M', 'S', 'C', 'H', 'K', '0', '0', '1'};
constexpr std::size_t kTrailerSize = 8 + 8 + 32;
constexpr std::size_t kBufferSize = std::size_t{1} << 20;

Status errno_status(int err, std::string_view what) {
  return absl::ErrnoToStatus(err, detail::av(what));
}

// An fd closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

Status write_all(int fd, const char* data, std::size_t size, const std::string& file) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, detail::cat("checkpoint storage: writing ", file));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return absl::OkStatus();
}

// Reads up to `size` bytes; fewer only at end of file.
StatusOr<std::size_t> read_some(int fd, char* data, std::size_t size, const std::string& file) {
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, detail::cat("checkpoint storage: reading ", file));
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

std::string make_trailer(std::uint64_t length, const Sha256Digest& digest) {
  std::string t(kMagic, sizeof(kMagic));
  for (int i = 0; i < 8; ++i) t.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  t.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return t;
}

struct Trailer {
  std::uint64_t length = 0;
  Sha256Digest digest{};
};

// Parses the trailer of an object file of `file_size` bytes.
StatusOr<Trailer> parse_trailer(std::string_view t, std::uint64_t file_size,
                                std::string_view path) {
  auto loss = [&](std::string_view why) {
    return absl::DataLossError(
        detail::cat("checkpoint storage: object \"", path, "\" is corrupt: ", why));
  };
  if (file_size < kTrailerSize || t.size() != kTrailerSize) {
    return loss("shorter than its checksum trailer");
  }
  if (std::memcmp(t.data(), kMagic, sizeof(kMagic)) != 0) return loss("bad trailer magic");
  Trailer out;
  for (int i = 0; i < 8; ++i) {
    out.length |= static_cast<std::uint64_t>(static_cast<unsigned char>(t[8 + i])) << (8 * i);
  }
  if (out.length != file_size - kTrailerSize) return loss("length does not match its trailer");
  std::memcpy(out.digest.data(), t.data() + 16, out.digest.size());
  return out;
}

Status fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return errno_status(errno, detail::cat("checkpoint storage: opening ", dir.string()));
  if (::fsync(fd.get()) != 0) {
    return errno_status(errno, detail::cat("checkpoint storage: fsync of ", dir.string()));
  }
  return absl::OkStatus();
}

std::string unique_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return detail::cat(::getpid(), "-", counter.fetch_add(1), "-", rng() % 1000000000ULL);
}

// A writer killed in the middle of a put() leaves its temporary file behind
// (".ms-tmp-<pid>-..."): those of processes that no longer run are removed,
// with the folders they leave empty.
void remove_stale_temp_files(const fs::path& root) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(detail::kTempPrefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + detail::kTempPrefix.size(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      stale.push_back(it->path());
    }
  }
  for (const fs::path& p : stale) {
    fs::remove(p, ec);
    for (fs::path dir = p.parent_path(); dir != root && ::rmdir(dir.c_str()) == 0;) {
      dir = dir.parent_path();
    }
  }
}

class LocalCheckpointStorage final : public CheckpointStorage, public detail::ExclusiveStorage {
 public:
  explicit LocalCheckpointStorage(fs::path root) : root_(std::move(root)) {}

  std::string name() const override { return detail::cat("local:", root_.string()); }

  // flock() on <root>/.ms-lock, which holds the holder's pid. flock locks
  // belong to an open file description: a second job of the same process
  // opens the file again and is refused like another process; a process that
  // dies releases its lock with its descriptors.
  StatusOr<std::shared_ptr<void>> lock_for_writer() override {
    const std::string file = (root_ / std::string(detail::kLockFile)).string();
    auto fd = std::make_shared<Fd>(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd->get() < 0) {
      return errno_status(errno, detail::cat("checkpoint storage: opening the lock file ", file));
    }
    int rc = 0;
    do {
      rc = ::flock(fd->get(), LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      if (errno != EWOULDBLOCK) {
        return errno_status(errno, detail::cat("checkpoint storage: locking ", file));
      }
      char buf[32] = {};
      const ssize_t n = ::pread(fd->get(), buf, sizeof(buf) - 1, 0);
      const long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
      return absl::FailedPreconditionError(detail::cat(
          "checkpoint storage: ", root_.string(), " is in use by another job (process ",
          pid > 0 ? std::to_string(pid) : std::string("unknown"), ", lock file ", file,
          "): two jobs must not share a checkpoint folder"));
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd->get(), 0) != 0 || ::pwrite(fd->get(), pid.data(), pid.size(), 0) !=
                                              static_cast<ssize_t>(pid.size())) {
      return errno_status(errno, detail::cat("checkpoint storage: writing ", file));
    }
    return std::shared_ptr<void>(fd);
  }

  Status put(std::string_view path, std::string_view bytes) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    Sha256Digest digest = detail::sha256(bytes);
    return write_object(path, [&](int fd, const std::string& tmp) -> StatusOr<Sha256Digest> {
      MS_RETURN_IF_ERROR(write_all(fd, bytes.data(), bytes.size(), tmp));
      return digest;
    }, bytes.size());
  }

  Status put_file(std::string_view path, const std::string& local_file) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    Fd in(::open(local_file.c_str(), O_RDONLY | O_CLOEXEC));
    if (in.get() < 0) {
      return errno_status(errno, detail::cat("checkpoint storage: put_file of \"", path,
                                              "\": opening ", local_file));
    }
    struct stat st {};
    if (::fstat(in.get(), &st) != 0) {
      return errno_status(errno, detail::cat("checkpoint storage: stat of ", local_file));
    }
    auto size = static_cast<std::uint64_t>(st.st_size);
    return write_object(path, [&](int fd, const std::string& tmp) -> StatusOr<Sha256Digest> {
      if (::lseek(in.get(), 0, SEEK_SET) != 0) {
        return errno_status(errno, detail::cat("checkpoint storage: seeking ", local_file));
      }
      Sha256 hash;
      std::vector<char> buf(kBufferSize);
      std::uint64_t total = 0;
      while (true) {
        MS_ASSIGN_OR_RETURN(std::size_t n, read_some(in.get(), buf.data(), buf.size(), local_file));
        if (n == 0) break;
        hash.update(buf.data(), n);
        MS_RETURN_IF_ERROR(write_all(fd, buf.data(), n, tmp));
        total += n;
      }
      if (total != size) {
        return absl::AbortedError(detail::cat("checkpoint storage: put_file of \"", path,
                                               "\": ", local_file, " changed size while read"));
      }
      return hash.finish();
    }, size);
  }

  StatusOr<std::string> get(std::string_view path) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    const std::string file = (root_ / std::string(path)).string();
    Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return open_error(errno, path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errno_status(errno, detail::cat("checkpoint storage: stat of ", file));
    auto size = static_cast<std::uint64_t>(st.st_size);
    std::string data(size, '\0');
    MS_ASSIGN_OR_RETURN(std::size_t n, read_some(fd.get(), data.data(), data.size(), file));
    data.resize(n);
    if (n < kTrailerSize) return parse_trailer({}, n, path).status();
    MS_ASSIGN_OR_RETURN(Trailer trailer,
                        parse_trailer(std::string_view(data).substr(n - kTrailerSize), n, path));
    data.resize(n - kTrailerSize);
    if (detail::sha256(data) != trailer.digest) return checksum_mismatch(path);
    return data;
  }

  Status get_file(std::string_view path, const std::string& local_file) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    const std::string file = (root_ / std::string(path)).string();
    Fd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (in.get() < 0) return open_error(errno, path);
    struct stat st {};
    if (::fstat(in.get(), &st) != 0) return errno_status(errno, detail::cat("checkpoint storage: stat of ", file));
    auto size = static_cast<std::uint64_t>(st.st_size);
    std::string t(kTrailerSize, '\0');
    if (size >= kTrailerSize) {
      ssize_t n = ::pread(in.get(), t.data(), t.size(), static_cast<off_t>(size - kTrailerSize));
      if (n != static_cast<ssize_t>(kTrailerSize)) t.clear();
    }
    MS_ASSIGN_OR_RETURN(Trailer trailer, parse_trailer(t, size, path));

    const std::string tmp = detail::cat(local_file, ".ms-tmp-", unique_suffix());
    Fd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (out.get() < 0) {
      return errno_status(errno, detail::cat("checkpoint storage: get_file of \"", path,
                                              "\": creating ", tmp));
    }
    auto fail = [&](Status s) {
      out.reset();
      ::unlink(tmp.c_str());
      return s;
    };
    Sha256 hash;
    std::vector<char> buf(kBufferSize);
    std::uint64_t left = trailer.length;
    while (left > 0) {
      std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size()));
      StatusOr<std::size_t> n = read_some(in.get(), buf.data(), want, file);
      if (!n.ok()) return fail(n.status());
      if (*n != want) {
        return fail(absl::DataLossError(
            detail::cat("checkpoint storage: object \"", path, "\" is corrupt: truncated")));
      }
      hash.update(buf.data(), *n);
      Status w = write_all(out.get(), buf.data(), *n, tmp);
      if (!w.ok()) return fail(w);
      left -= *n;
    }
    if (hash.finish() != trailer.digest) return fail(checksum_mismatch(path));
    if (::fsync(out.get()) != 0) {
      return fail(errno_status(errno, detail::cat("checkpoint storage: fsync of ", tmp)));
    }
    out.reset();
    if (::rename(tmp.c_str(), local_file.c_str()) != 0) {
      return fail(errno_status(errno, detail::cat("checkpoint storage: renaming ", tmp,
                                                   " to ", local_file)));
    }
    return absl::OkStatus();
  }

  StatusOr<bool> exists(std::string_view path) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    std::error_code ec;
    bool found = fs::is_regular_file(root_ / std::string(path), ec);
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
      return errno_status(ec.value(), detail::cat("checkpoint storage: exists(\"", path, "\")"));
    }
    return found;
  }

  StatusOr<std::vector<std::string>> list(std::string_view prefix) override {
    if (prefix.find('\0') != std::string_view::npos) {
      return absl::InvalidArgumentError("checkpoint storage: list prefix contains a NUL byte");
    }
    // Only the folder that the prefix's complete components name is walked.
    fs::path start = root_;
    std::size_t slash = prefix.rfind('/');
    if (slash != std::string_view::npos) {
      std::string_view dir = prefix.substr(0, slash);
      Status valid = detail::validate_object_path(dir);
      if (!valid.ok()) {
        return absl::InvalidArgumentError(
            detail::cat("checkpoint storage: invalid list prefix \"", prefix, "\""));
      }
      start /= std::string(dir);
    }
    std::vector<std::string> out;
    std::error_code ec;
    if (!fs::is_directory(start, ec)) return out;
    fs::recursive_directory_iterator it(start, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      const fs::directory_entry& entry = *it;
      std::string file_name = entry.path().filename().string();
      if (file_name.compare(0, detail::kTempPrefix.size(), detail::kTempPrefix) == 0) continue;
      if (file_name == detail::kLockFile && entry.path().parent_path() == root_) continue;
      std::error_code type_ec;
      if (!entry.is_regular_file(type_ec)) continue;
      std::string rel = entry.path().lexically_relative(root_).generic_string();
      if (rel.compare(0, prefix.size(), prefix) == 0) out.push_back(std::move(rel));
    }
    // A folder that vanishes during the walk (a concurrent remove) is not an
    // error: its objects are gone.
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return errno_status(ec.value(), detail::cat("checkpoint storage: listing \"", prefix, "\""));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  Status remove(std::string_view path) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    fs::path file = root_ / std::string(path);
    if (::unlink(file.c_str()) != 0 && errno != ENOENT && errno != ENOTDIR) {
      return errno_status(errno, detail::cat("checkpoint storage: removing \"", path, "\""));
    }
    // Best effort: rmdir fails on a folder that is not empty, which is fine.
    for (fs::path dir = file.parent_path(); dir != root_ && dir.has_relative_path();
         dir = dir.parent_path()) {
      if (::rmdir(dir.c_str()) != 0) break;
    }
    return absl::OkStatus();
  }

 private:
  Status open_error(int err, std::string_view path) const {
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(detail::cat("checkpoint storage: no object \"", path,
                                              "\" in ", root_.string()));
    }
    return errno_status(err, detail::cat("checkpoint storage: opening \"", path, "\""));
  }

  static Status checksum_mismatch(std::string_view path) {
    return absl::DataLossError(detail::cat("checkpoint storage: object \"", path,
                                            "\" is corrupt: its SHA-256 does not match"));
  }

  // Writes an object through a temporary file: `fill` writes the payload into
  // the temporary file and returns its digest.
  template <typename Fill>
  Status write_object(std::string_view path, Fill&& fill, std::uint64_t length) {
    fs::path target = root_ / std::string(path);
    fs::path dir = target.parent_path();
    fs::path tmp = dir / detail::cat(detail::kTempPrefix, unique_suffix(), "-",
                                      target.filename().string());
    Fd fd;
    for (int attempt = 0; attempt < 5 && fd.get() < 0; ++attempt) {
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) {
        return errno_status(ec.value(), detail::cat("checkpoint storage: put of \"", path,
                                                     "\": creating ", dir.string()));
      }
      fd.reset(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
      if (fd.get() < 0 && errno != ENOENT) break;
    }
    if (fd.get() < 0) {
      return errno_status(errno, detail::cat("checkpoint storage: put of \"", path,
                                              "\": creating ", tmp.string()));
    }
    auto fail = [&](Status s) {
      fd.reset();
      ::unlink(tmp.c_str());
      return s;
    };
    StatusOr<Sha256Digest> digest = fill(fd.get(), tmp.string());
    if (!digest.ok()) return fail(digest.status());
    std::string trailer = make_trailer(length, *digest);
    Status w = write_all(fd.get(), trailer.data(), trailer.size(), tmp.string());
    if (!w.ok()) return fail(w);
    if (::fsync(fd.get()) != 0) {
      return fail(errno_status(errno, detail::cat("checkpoint storage: fsync of ", tmp.string())));
    }
    fd.reset();
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
      return fail(errno_status(errno, detail::cat("checkpoint storage: put of \"", path,
                                                   "\": renaming into place")));
    }
    return fsync_dir(dir);
  }

  fs::path root_;
};

}  // namespace

StatusOr<std::unique_ptr<CheckpointStorage>> make_local_checkpoint_storage(
    const LocalCheckpointStorageOptions& options) {
  if (options.directory.empty()) {
    return absl::InvalidArgumentError("local checkpoint storage: empty directory");
  }
  std::error_code ec;
  fs::path root = fs::absolute(fs::path(options.directory), ec).lexically_normal();
  if (ec) {
    return absl::InvalidArgumentError(
        detail::cat("local checkpoint storage: bad directory ", options.directory));
  }
  if (root.has_relative_path() && !root.has_filename()) root = root.parent_path();
  fs::create_directories(root, ec);
  std::error_code type_ec;
  const bool is_dir = fs::is_directory(root, type_ec);
  if (ec && !is_dir) {
    // A path under a regular file (ENOTDIR), or a file at the path itself.
    std::error_code exists_ec;
    if (ec == std::errc::not_a_directory || ec == std::errc::file_exists ||
        fs::exists(root, exists_ec)) {
      return absl::FailedPreconditionError(
          detail::cat("local checkpoint storage: ", root.string(),
                      " is not a directory (or one of its parents is a file)"));
    }
    return absl::PermissionDeniedError(detail::cat(
        "local checkpoint storage: cannot create ", root.string(), ": ", ec.message()));
  }
  if (!is_dir) {
    return absl::FailedPreconditionError(
        detail::cat("local checkpoint storage: ", root.string(), " is not a directory"));
  }
  remove_stale_temp_files(root);
  return std::unique_ptr<CheckpointStorage>(new LocalCheckpointStorage(std::move(root)));
}

}  // namespace meterstream
