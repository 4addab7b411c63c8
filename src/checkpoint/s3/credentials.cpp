// S3 credentials (s3/credentials.hpp).
#include "checkpoint/s3/credentials.hpp"

#include <cstdlib>
#include <fstream>

#include "checkpoint/storage_util.hpp"

namespace meterstream::detail::s3 {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

// Reads [profile] of an AWS shared credentials file (INI).
bool read_credentials_file(const std::string& file, const std::string& profile,
                           Credentials* out) {
  std::ifstream in(file);
  if (!in) return false;
  std::string line;
  bool in_section = false;
  Credentials c;
  while (std::getline(in, line)) {
    std::string_view l = detail::trim(line);
    if (l.empty() || l[0] == '#' || l[0] == ';') continue;
    if (l.front() == '[') {
      std::string_view name = l.substr(1, l.find(']') == std::string_view::npos
                                              ? std::string_view::npos
                                              : l.find(']') - 1);
      in_section = detail::trim(name) == profile;
      continue;
    }
    if (!in_section) continue;
    std::size_t eq = l.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = detail::trim(l.substr(0, eq));
    std::string value(detail::trim(l.substr(eq + 1)));
    if (key == "aws_access_key_id")
      c.access_key_id = value;
    else if (key == "aws_secret_access_key")
      c.secret_access_key = value;
    else if (key == "aws_session_token")
      c.session_token = value;
  }
  if (c.access_key_id.empty() || c.secret_access_key.empty()) return false;
  *out = std::move(c);
  return true;
}

}  // namespace

StatusOr<Credentials> resolve_credentials(const S3CheckpointStorageOptions& o) {
  if (!o.access_key_id.empty()) {
    if (o.secret_access_key.empty()) {
      return absl::InvalidArgumentError(
          "S3 checkpoint storage: access_key_id is set but secret_access_key "
          "is empty");
    }
    return Credentials{o.access_key_id, o.secret_access_key, o.session_token};
  }
  if (env("AWS_ACCESS_KEY_ID") != nullptr &&
      env("AWS_SECRET_ACCESS_KEY") != nullptr) {
    const char* token = env("AWS_SESSION_TOKEN");
    return Credentials{env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"),
                       token != nullptr ? token : ""};
  }
  std::string file;
  if (const char* f = env("AWS_SHARED_CREDENTIALS_FILE")) {
    file = f;
  } else if (const char* home = env("HOME")) {
    file = detail::cat(home, "/.aws/credentials");
  }
  const char* profile = env("AWS_PROFILE");
  Credentials c;
  if (!file.empty() &&
      read_credentials_file(file, profile != nullptr ? profile : "default",
                            &c)) {
    return c;
  }
  return absl::UnauthenticatedError(
      detail::cat("S3 checkpoint storage: no credentials: set them in "
                  "S3CheckpointStorageOptions, in "
                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or in the [",
                  profile != nullptr ? profile : "default", "] profile of ",
                  file.empty() ? std::string("~/.aws/credentials") : file));
}

}  // namespace meterstream::detail::s3
