// Internal to the RocksDB state backend: the state directory, checked and
// claimed before RocksDB opens it (so that a refused directory is left
// untouched), and its layout marker.
#pragma once

#include <string>

#include "meterstream/core/status.hpp"

namespace meterstream::detail {

// The file that records the layout version (kRocksDBStateLayoutVersion).
inline constexpr const char* kLayoutFile = "MS_LAYOUT";

// Checks that `path` is (or can become) a writable directory, creating it.
Status prepare_directory(const std::string& path, bool create_if_missing);

// Checks that the directory holds meterstream state of this layout version,
// or nothing. Reads only.
Status check_layout(const std::string& path, bool create_if_missing);

// Writes the layout marker (through a temporary file and a rename).
Status write_layout_marker(const std::string& path);

// kFailedPrecondition: the directory is used by another process or backend.
Status in_use_error(const std::string& path, const std::string& detail);

// Whether a RocksDB error message is about its LOCK file.
bool is_lock_error(const std::string& message);

// A claim on a state directory within this process, and a check that no
// other process holds RocksDB's lock on it. RocksDB locks its directory, but
// DB::Open rotates the info LOG before it takes the lock; checking first keeps
// a refused directory untouched.
class DirectoryClaim {
 public:
  DirectoryClaim() = default;
  DirectoryClaim(const DirectoryClaim&) = delete;
  DirectoryClaim& operator=(const DirectoryClaim&) = delete;
  ~DirectoryClaim();

  // kFailedPrecondition naming the holder when another backend of this
  // process or another process has `path`.
  Status acquire(const std::string& path);

 private:
  std::string claimed_;  // canonical path, when acquired
};

}  // namespace meterstream::detail
