// Temporary folders for tests. TempDir: a fresh folder, made by mkdtemp()
// under the system's temporary folder (std::filesystem::temp_directory_path():
// $TMPDIR, else /tmp), removed with everything in it when it goes out of
// scope. TempPath: a path that does not exist yet, in a TempDir of its own.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <catch2/catch.hpp>

namespace meterstream::test {

struct TempDir {
  // The folder, which exists (empty) from construction on.
  std::filesystem::path path;

  // `what` names the folder: <temp>/meterstream-<what>-XXXXXX.
  explicit TempDir(const std::string& what = "test") {
    std::string pattern =
        (std::filesystem::temp_directory_path() / ("meterstream-" + what + "-XXXXXX")).string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The folder's path, or that of `sub` in it (not created).
  std::string str(const std::string& sub = "") const {
    return sub.empty() ? path.string() : (path / sub).string();
  }
};

// A path that does not exist yet, for code that must create it itself (a
// state backend's folder, a snapshot's), in a fresh TempDir removed with
// everything in it when the TempPath goes out of scope.
struct TempPath {
  explicit TempPath(const std::string& what = "test") : dir(what), path(dir.str(what)) {}

  TempDir dir;
  // <dir>/<what>.
  std::string path;
};

}  // namespace meterstream::test
