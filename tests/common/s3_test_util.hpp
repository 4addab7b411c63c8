// Helpers for the tests that use S3 checkpoint storage on moto_server
// (tests/e2e/): the shared server's endpoint, example credentials, a bucket
// name of their own per call, storage options and opening. A moto_server of
// a test's own is in moto_server.hpp.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include <catch2/catch.hpp>

#include "meterstream/checkpoint/checkpoint_storage.hpp"

namespace meterstream::test {

// AWS's documented example credentials: easy to recognise in a message.
inline constexpr const char* kKeyId = "AKIAIOSFODNN7EXAMPLE";
inline constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

// The shared moto_server (MS_S3_ENDPOINT); fails the test, saying how to
// start one, when it is not set.
inline std::string s3_endpoint() {
  const char* e = std::getenv("MS_S3_ENDPOINT");
  if (e == nullptr || *e == '\0') {
    FAIL("MS_S3_ENDPOINT is not set. Run the tests with scripts/test.sh, or start moto: "
         "`moto_server -H 127.0.0.1 -p 5000 &` then "
         "`export MS_S3_ENDPOINT=http://127.0.0.1:5000`");
  }
  return e;
}

// "ms-<what>-<pid>-<n>": a bucket no other call of this process or other
// test process uses.
inline std::string unique_bucket(const char* what) {
  static std::atomic<int> n{0};
  return std::string("ms-") + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(n++);
}

// Options for `bucket` at `endpoint` under the prefix "jobs/q1", with the
// example credentials, creating the bucket if it is missing.
inline S3CheckpointStorageOptions s3_options(
    const std::string& endpoint, const std::string& bucket,
    std::chrono::milliseconds initial_backoff = std::chrono::milliseconds(20)) {
  S3CheckpointStorageOptions o;
  o.endpoint = endpoint;
  o.bucket = bucket;
  o.prefix = "jobs/q1";
  o.access_key_id = kKeyId;
  o.secret_access_key = kSecret;
  o.create_bucket_if_missing = true;
  o.initial_backoff = initial_backoff;
  return o;
}

// Opens an S3 checkpoint storage, failing the test on error.
inline std::shared_ptr<CheckpointStorage> open_s3(const S3CheckpointStorageOptions& o) {
  auto s = make_s3_checkpoint_storage(o);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::shared_ptr<CheckpointStorage>(std::move(s).value());
}

// Credentials must never leak into a message.
inline void check_no_credentials(const Status& s, const std::string& secret = kSecret) {
  INFO(s.ToString());
  CHECK(s.ToString().find(secret) == std::string::npos);
  CHECK(s.ToString().find("Authorization") == std::string::npos);
  CHECK(s.ToString().find("Signature=") == std::string::npos);
}

}  // namespace meterstream::test
