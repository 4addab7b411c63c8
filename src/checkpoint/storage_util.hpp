// Helpers shared by the checkpoint storages (src/checkpoint/): path checks and
// SHA-256 (OpenSSL's libcrypto). Not API.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#include "meterstream/core/status.hpp"

namespace meterstream::detail {

// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view): these convert at the boundary.
inline absl::string_view av(std::string_view s) { return {s.data(), s.size()}; }

template <typename T>
decltype(auto) cat_arg(const T& v) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    return av(v);
  } else {
    return (v);
  }
}

// absl::StrCat / absl::StrAppend that also take std::string_view.
template <typename... A>
std::string cat(const A&... a) {
  return absl::StrCat(cat_arg(a)...);
}
template <typename... A>
void append(std::string* out, const A&... a) {
  absl::StrAppend(out, cat_arg(a)...);
}

// ASCII whitespace trimmed from both ends; ASCII lower case.
std::string_view trim(std::string_view s);
std::string lower(std::string_view s);

// The name of temporary files of the local storage starts with this; paths
// with a component that starts with it are rejected.
inline constexpr std::string_view kTempPrefix = ".ms-tmp-";

// kInvalidArgument unless `path` is a valid object path (see
// checkpoint_storage.hpp).
Status validate_object_path(std::string_view path);

// The file at the root of a local storage that a job locks (flock) while it
// writes checkpoints there; list() never reports it.
inline constexpr std::string_view kLockFile = ".ms-lock";

// Implemented by the storages that can keep a second writer out (the local
// folder); the coordinator finds it with dynamic_cast.
class ExclusiveStorage {
 public:
  virtual ~ExclusiveStorage() = default;
  // Makes this caller the storage's only writer until the returned handle is
  // destroyed. kFailedPrecondition naming the holder's pid when another job
  // (in this process or another) holds it.
  virtual StatusOr<std::shared_ptr<void>> lock_for_writer() = 0;
};

using Sha256Digest = std::array<unsigned char, 32>;

// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Starts over.
  void reset();
  void update(const void* data, std::size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  Sha256Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

Sha256Digest sha256(std::string_view bytes);
std::string to_hex(const Sha256Digest& digest);
std::string to_hex(std::string_view bytes);

}  // namespace meterstream::detail
