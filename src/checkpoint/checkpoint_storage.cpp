// What the checkpoint storages share: the URI factory, path checks, SHA-256.
#include "meterstream/checkpoint/checkpoint_storage.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <openssl/evp.h>

#include "absl/strings/str_cat.h"
#include "checkpoint/storage_util.hpp"

namespace meterstream {
namespace detail {

Status validate_object_path(std::string_view path) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        detail::cat("checkpoint storage: invalid path \"", path, "\": ", why));
  };
  if (path.empty()) return bad("empty");
  if (path.find('\0') != std::string_view::npos) return bad("contains a NUL byte");
  if (path.front() == '/') return bad("absolute (paths are relative to the storage root)");
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty()) return bad("empty component");
    if (part == "." || part == "..") return bad("\".\" or \"..\" component");
    if (part.substr(0, kTempPrefix.size()) == kTempPrefix) {
      return bad(detail::cat("component starts with \"", kTempPrefix,
                              "\" (reserved for temporary files)"));
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

struct Sha256::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { reset(); }
Sha256::~Sha256() = default;

void Sha256::reset() { EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr); }

void Sha256::update(const void* data, std::size_t size) {
  if (size > 0) EVP_DigestUpdate(impl_->ctx, data, size);
}

Sha256Digest Sha256::finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, out.data(), &len);
  reset();
  return out;
}

Sha256Digest sha256(std::string_view bytes) {
  Sha256 h;
  h.update(bytes);
  return h.finish();
}

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

std::string to_hex(const Sha256Digest& digest) {
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

}  // namespace detail

StatusOr<std::unique_ptr<CheckpointStorage>> make_checkpoint_storage(
    std::string_view uri, const S3CheckpointStorageOptions& s3_options) {
  constexpr std::string_view kS3 = "s3://";
  constexpr std::string_view kFile = "file://";
  if (uri.substr(0, kS3.size()) == kS3) {
    std::string_view rest = uri.substr(kS3.size());
    std::size_t slash = rest.find('/');
    S3CheckpointStorageOptions options = s3_options;
    options.bucket = std::string(rest.substr(0, slash));
    options.prefix =
        slash == std::string_view::npos ? std::string() : std::string(rest.substr(slash + 1));
    while (!options.prefix.empty() && options.prefix.back() == '/') options.prefix.pop_back();
    if (options.bucket.empty()) {
      return absl::InvalidArgumentError(
          detail::cat("checkpoint storage: no bucket in \"", uri, "\" (s3://bucket/prefix)"));
    }
    return make_s3_checkpoint_storage(options);
  }
  if (uri.substr(0, kFile.size()) == kFile) uri.remove_prefix(kFile.size());
  if (uri.find("://") != std::string_view::npos) {
    return absl::InvalidArgumentError(detail::cat(
        "checkpoint storage: unsupported URI \"", uri, "\" (a path, file:// or s3://)"));
  }
  LocalCheckpointStorageOptions options;
  options.directory = std::string(uri);
  return make_local_checkpoint_storage(options);
}

}  // namespace meterstream
