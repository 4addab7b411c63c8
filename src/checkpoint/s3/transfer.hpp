// One S3 request over libcurl, with retries (src/checkpoint/s3/): the
// request and response types, the pool of easy handles, signing through
// CURLOPT_AWS_SIGV4, backoff with jitter, and the mapping of outcomes to
// Status codes. The storage (s3_checkpoint_storage.cpp) builds requests and
// knows what they mean; this knows how they travel. Not API.
//
// Thread-safety: an S3Client may perform requests from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "checkpoint/s3/credentials.hpp"
#include "checkpoint/s3/xml.hpp"
#include "checkpoint/storage_util.hpp"
#include <curl/curl.h>

#include "meterstream/checkpoint/checkpoint_storage.hpp"
#include "meterstream/core/status.hpp"

namespace meterstream::detail::s3 {

// Where a request body comes from: memory, or a byte range of a file.
struct Body {
  std::string_view memory;
  int fd = -1;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool from_file = false;

  std::uint64_t size() const { return from_file ? length : memory.size(); }
};

struct Request {
  std::string op;      // "GetObject", for errors.
  std::string method;  // GET, PUT, HEAD, DELETE, POST.
  std::string key;     // Full object key; empty for the bucket itself.
  std::string query;   // Canonical (make_query).
  std::string payload_hash;
  std::string content_type = "application/octet-stream";
  std::vector<std::string> headers;
  const Body* body = nullptr;  // PUT and POST.
  int sink_fd = -1;  // A 2xx GET's body goes there (hashed into sink_hash).
  Sha256* sink_hash = nullptr;
  bool stream = false;  // A long transfer: a stall limit, not a total one.
  std::string key_for_errors;  // What errors name when not `key` (a listing).
};

struct Response {
  long http = 0;
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  std::string body;  // Error bodies and small bodies (not a sink's).
  std::map<std::string, std::string> headers;  // Lower-case names.
  int attempts = 0;
  bool sink_failed = false;
};

// Transport errors worth another attempt (connection, timeout, reset).
bool retriable_curl(CURLcode c);
// A 2xx response of a POST (CompleteMultipartUpload) whose body is an error.
bool embedded_error(const Response& r);
// Errors of CompleteMultipartUpload that the same request will meet again.
bool permanent_embedded_error(const std::string& code);
// HTTP outcomes worth another attempt: 5xx, 429, throttling, clock skew.
bool retriable_http(const Response& r);

class S3Client {
 public:
  // `scheme` is http or https, `host` host[:port] without a trailing '/'.
  S3Client(const S3CheckpointStorageOptions& options, Credentials credentials,
           std::string scheme, std::string host);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  // One request, retried on transient failures. `before_attempt` resets a
  // sink; returning false ends the request.
  template <typename Reset>
  Response perform(const Request& req, Reset&& before_attempt) {
    Response r;
    for (int attempt = 1;; ++attempt) {
      r = Response{};
      r.attempts = attempt;
      if (!before_attempt()) {
        r.curl = CURLE_WRITE_ERROR;
        r.sink_failed = true;
        return r;
      }
      attempt_once(req, &r);
      bool transient =
          r.curl != CURLE_OK
              ? (retriable_curl(r.curl) && !r.sink_failed)
              : (r.http < 200 || r.http >= 300) && retriable_http(r);
      if (r.curl == CURLE_OK && req.method == "POST" && embedded_error(r)) {
        transient = !permanent_embedded_error(xml_value(r.body, "Code"));
      }
      if (!transient || attempt >= options_.max_attempts) return r;
      std::this_thread::sleep_for(backoff(attempt));
    }
  }

  Response perform(const Request& req) {
    return perform(req, [] { return true; });
  }

  // The outcome as a Status naming the operation, the object and the
  // endpoint, scrubbed of credentials.
  Status to_status(const Request& req, const Response& r) const;
  // Removes credentials from a message that may have come from the server.
  std::string scrub(std::string s) const;
  // "s3://bucket/key" of a request, for messages.
  std::string where(const Request& req) const;

 private:
  std::string url(const Request& req) const;
  CURL* acquire();
  void release(CURL* c);
  std::chrono::milliseconds backoff(int attempt);
  void attempt_once(const Request& req, Response* r);

  const S3CheckpointStorageOptions&
      options_;  // the storage's, which outlives this
  Credentials credentials_;
  std::string scheme_;
  std::string host_;
  std::string sigv4_;
  std::mutex pool_mu_;
  std::vector<CURL*> pool_;
};

}  // namespace meterstream::detail::s3
