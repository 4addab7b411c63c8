// Checkpoint storage: where checkpoints live (a local folder or S3).
//
// A CheckpointStorage is a flat store of immutable objects addressed by a
// relative path ("job-1/shared/000042.sst", "job-1/chk-7/_metadata"), like an
// S3 bucket: there are no directories, only paths, and list() takes a string
// prefix. The checkpoint coordinator writes shared files and one metadata file
// per checkpoint through it; it knows nothing of checkpoints itself.
//
// Guarantees of every implementation:
//   - put() and put_file() are atomic: a reader sees the whole old object or
//     the whole new one, never a part (local: temporary file, fsync, rename;
//     S3: a PUT or a completed multipart upload is atomic by itself).
//   - Every object carries a SHA-256 of its bytes, written with it and
//     verified on every read: an object whose bytes do not match (or that has
//     no checksum, so was not written by this class) reads as kDataLoss with
//     a message naming the path.
//   - Errors never contain credentials (secrets, session tokens, signatures).
//
// Paths: relative, '/'-separated, not empty, no "." or ".." component, no
// empty component, no NUL byte; anything else is kInvalidArgument.
//
// The formats and the S3 requests are described in docs/checkpoint_storage.md.
//
// Thread-safety: every method of a CheckpointStorage may be called from any
// thread concurrently. Concurrent put()s of one path leave one of them whole.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "meterstream/core/status.hpp"

namespace meterstream {

// An object store for checkpoints. Obtain one from a make_*_checkpoint_storage
// factory below.
class CheckpointStorage {
 public:
  CheckpointStorage() = default;
  virtual ~CheckpointStorage() = default;
  CheckpointStorage(const CheckpointStorage&) = delete;
  CheckpointStorage& operator=(const CheckpointStorage&) = delete;

  // A short description for logs: "local:/var/chk", "s3://bucket/prefix".
  // Never contains credentials.
  virtual std::string name() const = 0;

  // Writes `bytes` as the object at `path`, replacing any object there.
  // Atomic (see above). kInvalidArgument for a bad path; kUnavailable when the
  // store could not be reached (S3, after retries); kPermissionDenied when
  // writing is refused.
  virtual Status put(std::string_view path, std::string_view bytes) = 0;

  // Reads the object at `path`, verifying its checksum. kNotFound when there
  // is none; kDataLoss when its bytes do not match its checksum.
  virtual StatusOr<std::string> get(std::string_view path) = 0;

  // Whether an object exists at `path` (its bytes are not read or verified).
  virtual StatusOr<bool> exists(std::string_view path) = 0;

  // The paths of all objects whose path starts with `prefix` (a string prefix,
  // not a directory: "chk-1" lists "chk-1/a" and "chk-10/a"), sorted
  // bytewise. An empty prefix lists everything.
  virtual StatusOr<std::vector<std::string>> list(std::string_view prefix) = 0;

  // Removes the object at `path`. Removing a missing object is OK.
  virtual Status remove(std::string_view path) = 0;

  // Like put(), with the bytes of the local file `local_file`, which are
  // streamed: the file is never held in memory whole (S3: a multipart upload
  // above S3CheckpointStorageOptions::multipart_threshold_bytes).
  // kNotFound when local_file cannot be opened.
  virtual Status put_file(std::string_view path, const std::string& local_file) = 0;

  // Like get(), into the local file `local_file`, streamed. The file is
  // written under a temporary name and renamed when its checksum has been
  // verified, so `local_file` is either the whole verified object or left as
  // it was.
  virtual Status get_file(std::string_view path, const std::string& local_file) = 0;
};

// Options of the local folder storage.
struct LocalCheckpointStorageOptions {
  // The root folder; created (with its parents) when missing. Required.
  std::string directory;
};

// Opens the local folder storage. Objects are files under the root (the path
// is the relative file name), each ending with a 48-byte trailer that holds
// its length and SHA-256 (docs/checkpoint_storage.md).
//
// kInvalidArgument for an empty directory; kFailedPrecondition when it is not
// a directory; kPermissionDenied when it cannot be created.
StatusOr<std::unique_ptr<CheckpointStorage>> make_local_checkpoint_storage(
    const LocalCheckpointStorageOptions& options);

// Options of the S3 storage.
struct S3CheckpointStorageOptions {
  // The S3 endpoint, "http://127.0.0.1:9000" (moto, MinIO). Empty: AWS,
  // "https://s3.<region>.amazonaws.com". Default: empty.
  std::string endpoint;

  // The signing region. Default: "us-east-1".
  std::string region = "us-east-1";

  // The bucket. Required.
  std::string bucket;

  // A key prefix prepended to every path ("jobs/meters"; a '/' is added
  // between it and the path). Default: empty.
  std::string prefix;

  // Path-style URLs (endpoint/bucket/key) rather than virtual-hosted ones
  // (bucket.endpoint/key). Default: true.
  bool path_style = true;

  // Credentials. When access_key_id is empty, all three come from the
  // environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
  // then from the [default] profile of ~/.aws/credentials (or of the file
  // that AWS_SHARED_CREDENTIALS_FILE names). Default: empty.
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;

  // Files larger than this are uploaded by put_file() in parts. Default: 16 MiB.
  std::size_t multipart_threshold_bytes = std::size_t{16} << 20;

  // The size of each part of a multipart upload; S3 needs at least 5 MiB
  // (except for the last part). Default: 8 MiB.
  std::size_t part_size_bytes = std::size_t{8} << 20;

  // Attempts per request (the first one included) on 5xx, 429, SlowDown,
  // timeouts and connection errors. At least 1. Default: 5.
  int max_attempts = 5;

  // The backoff before the second attempt; it doubles at each further one (at
  // most 20 s), with jitter: a random wait in [backoff/2, backoff].
  // Default: 100 ms.
  std::chrono::milliseconds initial_backoff{100};

  // The time limit of one request (one attempt). Default: 30 s.
  std::chrono::milliseconds request_timeout{30000};

  // Creates the bucket at open when it does not exist (for tests and local
  // setups; production buckets are made by their owners). Default: false.
  bool create_bucket_if_missing = false;
};

// Opens the S3 storage (libcurl, AWS Signature Version 4). Makes one request
// (HeadBucket; CreateBucket when create_bucket_if_missing and it is missing),
// so that a bad endpoint, bucket or credentials fail here.
//
// kInvalidArgument for an empty bucket, a bad endpoint, part_size_bytes below
// 5 MiB or max_attempts < 1; kUnauthenticated when no credentials are found;
// kNotFound when the bucket does not exist; kPermissionDenied when access is
// refused; kUnavailable when the endpoint cannot be reached.
StatusOr<std::unique_ptr<CheckpointStorage>> make_s3_checkpoint_storage(
    const S3CheckpointStorageOptions& options);

// Opens the storage that `uri` names: "s3://bucket/prefix" is S3 (bucket and
// prefix from the URI, everything else from `s3_options`), "file:///abs/dir"
// or a plain path is a local folder.
//
// Example:
//   ms::S3CheckpointStorageOptions s3;
//   s3.endpoint = "http://127.0.0.1:9000";
//   MS_ASSIGN_OR_RETURN(auto storage,
//                       ms::make_checkpoint_storage("s3://chk/job-1", s3));
StatusOr<std::unique_ptr<CheckpointStorage>> make_checkpoint_storage(
    std::string_view uri, const S3CheckpointStorageOptions& s3_options = {});

}  // namespace meterstream
