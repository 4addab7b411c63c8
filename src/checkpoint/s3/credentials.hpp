// Where the S3 storage's credentials come from (src/checkpoint/s3/): the
// options, the environment, or an AWS shared credentials file. Not API.
#pragma once

#include <string>

#include "meterstream/checkpoint/checkpoint_storage.hpp"
#include "meterstream/core/status.hpp"

namespace meterstream::detail::s3 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
};

// The options' keys when access_key_id is set; else AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; else the profile
// (AWS_PROFILE, default "default") of AWS_SHARED_CREDENTIALS_FILE or
// ~/.aws/credentials. kInvalidArgument for a key id without a secret;
// kUnauthenticated when none has a key.
StatusOr<Credentials> resolve_credentials(const S3CheckpointStorageOptions& o);

}  // namespace meterstream::detail::s3
