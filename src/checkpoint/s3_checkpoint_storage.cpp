// The S3 checkpoint storage (checkpoint/checkpoint_storage.hpp; requests and
// formats are described in docs/checkpoint_storage.md).
//
// Design notes:
//   - libcurl signs every request with its built-in AWS SigV4
//     (CURLOPT_AWS_SIGV4). Measured with curl 7.88 against moto and recorded
//     in DESIGN.md: curl signs the payload hash that x-amz-content-sha256
//     gives (it cannot hash a streamed body itself), so that header is always
//     sent; an explicit Content-Type keeps curl from adding one after
//     signing; curl 7.88 signs the query string as written, so queries are
//     built here in canonical form (keys sorted, values percent-encoded, bare
//     keys as "uploads="); Expect: is left to curl on streamed uploads.
//   - Integrity: the SHA-256 of every object's bytes is stored in its user
//     metadata (x-amz-meta-ms-sha256) and checked on every read. In-memory
//     puts also sign that hash as the payload hash, so S3 checks the bytes it
//     receives; streamed uploads hash the file in a first pass (the metadata
//     must be sent before the bytes), with the SHA-256 of each part, which
//     each UploadPart signs as its payload hash and sends as
//     x-amz-checksum-sha256 (as single puts do): S3 refuses a part or a put
//     whose bytes do not match, so corruption on the way fails the upload.
//   - CompleteMultipartUpload may answer 200 with an <Error> body (S3 sends
//     the status before it has finished): that is retried like a 5xx unless
//     the error is one that a retry cannot fix.
//   - Credentials live in this object only: they go to curl as user name and
//     password, are never put in a URL, and every error message is scrubbed
//     of them before it leaves (the server's message could echo them).
//   - Easy handles are pooled so that connections are reused (curl keeps
//     its connection cache in the handle).
//
// The parts, each in src/checkpoint/s3/: signing.hpp (SigV4's canonical
// URL forms), xml.hpp (S3's XML), credentials.hpp (where keys come from),
// transfer.hpp (one request over curl, retries, outcomes as Status); this
// file is the storage: which requests make a put, a get, a multipart upload.
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "checkpoint/s3/credentials.hpp"
#include "checkpoint/s3/signing.hpp"
#include "checkpoint/s3/transfer.hpp"
#include "checkpoint/s3/xml.hpp"
#include "checkpoint/storage_util.hpp"
#include "meterstream/checkpoint/checkpoint_storage.hpp"

namespace meterstream {
namespace {

using detail::Sha256;
using detail::s3::Body;
using detail::s3::make_query;
using detail::s3::Request;
using detail::s3::Response;
using detail::s3::xml_escape;
using detail::s3::xml_value;
using detail::s3::xml_values;
namespace s3 = detail::s3;

constexpr std::string_view kChecksumHeader = "x-amz-meta-ms-sha256";
// S3 verifies this SHA-256 of a request's body (a put, a part) on arrival.
constexpr std::string_view kSha256ChecksumHeader = "x-amz-checksum-sha256";
constexpr std::size_t kMinPartSize = std::size_t{5} << 20;
constexpr std::uint64_t kMaxParts = 10000;

class S3CheckpointStorage final : public CheckpointStorage {
 public:
  S3CheckpointStorage(S3CheckpointStorageOptions options, s3::Credentials credentials,
                      std::string scheme, std::string host)
      : options_(std::move(options)),
        client_(options_, std::move(credentials), std::move(scheme), std::move(host)) {
    while (!options_.prefix.empty() && options_.prefix.back() == '/') options_.prefix.pop_back();
    while (!options_.prefix.empty() && options_.prefix.front() == '/') options_.prefix.erase(0, 1);
  }

  std::string name() const override {
    return options_.prefix.empty() ? detail::cat("s3://", options_.bucket)
                                   : detail::cat("s3://", options_.bucket, "/", options_.prefix);
  }

  // HeadBucket, and CreateBucket when asked to and the bucket is missing.
  Status open() {
    Request head;
    head.op = "HeadBucket";
    head.method = "HEAD";
    head.payload_hash = empty_hash();
    Response r = client_.perform(head);
    if (r.curl == CURLE_OK && r.http == 404 && options_.create_bucket_if_missing) {
      std::string config;
      if (options_.region != "us-east-1") {
        config = detail::cat(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            "<LocationConstraint>",
            xml_escape(options_.region), "</LocationConstraint></CreateBucketConfiguration>");
      }
      Body body;
      body.memory = config;
      Request create;
      create.op = "CreateBucket";
      create.method = "PUT";
      create.body = &body;
      create.content_type = "application/xml";
      create.payload_hash = detail::to_hex(detail::sha256(config));
      Response c = client_.perform(create);
      // BucketAlreadyOwnedByYou: a concurrent creator won; fine.
      if (c.curl == CURLE_OK && c.http == 409 &&
          xml_value(c.body, "Code") == "BucketAlreadyOwnedByYou") {
        return absl::OkStatus();
      }
      return client_.to_status(create, c);
    }
    return client_.to_status(head, r);
  }

  Status put(std::string_view path, std::string_view bytes) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    std::string hash = detail::to_hex(detail::sha256(bytes));
    Body body;
    body.memory = bytes;
    Request req = object_request("PutObject", "PUT", path);
    req.body = &body;
    req.payload_hash = hash;
    req.headers.push_back(detail::cat(kChecksumHeader, ": ", hash));
    add_checksum_headers(&req, detail::sha256(bytes));
    return client_.to_status(req, client_.perform(req));
  }

  StatusOr<std::string> get(std::string_view path) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    Request req = object_request("GetObject", "GET", path);
    Response r = client_.perform(req);
    MS_RETURN_IF_ERROR(client_.to_status(req, r));
    MS_RETURN_IF_ERROR(verify(path, r, detail::to_hex(detail::sha256(r.body))));
    return std::move(r.body);
  }

  Status get_file(std::string_view path, const std::string& local_file) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    const std::string tmp = detail::cat(local_file, ".ms-tmp-", ::getpid(), "-",
                                         counter_.fetch_add(1));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::ErrnoToStatus(errno, detail::cat("S3 checkpoint storage: get_file of \"",
                                                     path, "\": creating ", tmp));
    }
    Sha256 hash;
    Request req = object_request("GetObject", "GET", path);
    req.sink_fd = fd;
    req.sink_hash = &hash;
    req.stream = true;
    Response r = client_.perform(req, [&] {
      // Each attempt starts the file and the hash over.
      if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) return false;
      hash.reset();
      return true;
    });
    Status s = client_.to_status(req, r);
    if (s.ok()) s = verify(path, r, detail::to_hex(hash.finish()));
    if (s.ok() && ::fsync(fd) != 0) {
      s = absl::ErrnoToStatus(errno, detail::cat("S3 checkpoint storage: fsync of ", tmp));
    }
    ::close(fd);
    if (s.ok() && ::rename(tmp.c_str(), local_file.c_str()) != 0) {
      s = absl::ErrnoToStatus(errno, detail::cat("S3 checkpoint storage: renaming ", tmp,
                                                  " to ", local_file));
    }
    if (!s.ok()) ::unlink(tmp.c_str());
    return s;
  }

  StatusOr<bool> exists(std::string_view path) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    Request req = object_request("HeadObject", "HEAD", path);
    Response r = client_.perform(req);
    if (r.curl == CURLE_OK && r.http == 404) return false;
    MS_RETURN_IF_ERROR(client_.to_status(req, r));
    return true;
  }

  StatusOr<std::vector<std::string>> list(std::string_view prefix) override {
    const std::string key_prefix =
        options_.prefix.empty() ? std::string() : detail::cat(options_.prefix, "/");
    std::vector<std::string> out;
    std::string token;
    while (true) {
      std::vector<std::pair<std::string, std::string>> params = {
          {"list-type", "2"}, {"prefix", detail::cat(key_prefix, prefix)}};
      if (!token.empty()) params.emplace_back("continuation-token", token);
      Request req;
      req.op = "ListObjectsV2";
      req.method = "GET";
      req.query = make_query(std::move(params));
      req.payload_hash = empty_hash();
      req.key_for_errors = detail::cat(key_prefix, prefix, "*");
      Response r = client_.perform(req);
      MS_RETURN_IF_ERROR(client_.to_status(req, r));
      for (std::string& key : xml_values(r.body, "Key")) {
        if (key.compare(0, key_prefix.size(), key_prefix) == 0) out.push_back(key.substr(key_prefix.size()));
      }
      if (xml_value(r.body, "IsTruncated") != "true") break;
      std::string next = xml_value(r.body, "NextContinuationToken");
      if (next.empty() || next == token) {
        return absl::InternalError(detail::cat(
            "S3 ListObjectsV2 ", name(), ": truncated listing without a new continuation token"));
      }
      token = std::move(next);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  Status remove(std::string_view path) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    Request req = object_request("DeleteObject", "DELETE", path);
    Response r = client_.perform(req);
    if (r.curl == CURLE_OK && r.http == 404) return absl::OkStatus();
    return client_.to_status(req, r);
  }

  Status put_file(std::string_view path, const std::string& local_file) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    int fd = ::open(local_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::ErrnoToStatus(errno, detail::cat("S3 checkpoint storage: put_file of \"",
                                                     path, "\": opening ", local_file));
    }
    Status s = put_fd(path, fd, local_file);
    ::close(fd);
    return s;
  }

 private:
  static const std::string& empty_hash() {
    static const std::string kEmpty = detail::to_hex(detail::sha256({}));
    return kEmpty;
  }

  // A request on the object at `path`, with an empty payload's hash; callers
  // sending a body replace payload_hash.
  Request object_request(const char* op, const char* method, std::string_view path) const {
    Request req;
    req.op = op;
    req.method = method;
    req.key = full_key(path);
    req.payload_hash = empty_hash();
    return req;
  }

  std::string full_key(std::string_view path) const {
    return options_.prefix.empty() ? std::string(path) : detail::cat(options_.prefix, "/", path);
  }





  Status verify(std::string_view path, const Response& r, const std::string& actual) const {
    auto it = r.headers.find(std::string(kChecksumHeader));
    if (it == r.headers.end()) {
      return absl::DataLossError(detail::cat("S3 checkpoint storage: object \"", path, "\" (s3://",
                                              options_.bucket, "/", full_key(path),
                                              ") has no checksum (", kChecksumHeader,
                                              "): not written by meterstream, or overwritten"));
    }
    if (detail::lower(it->second) != actual) {
      return absl::DataLossError(detail::cat("S3 checkpoint storage: object \"", path, "\" (s3://",
                                              options_.bucket, "/", full_key(path),
                                              ") is corrupt: its SHA-256 does not match"));
    }
    return absl::OkStatus();
  }







  // S3 checks a body against x-amz-checksum-sha256 and refuses it with
  // BadDigest when they differ, so corruption on the way is found at upload,
  // not at read-back (x-amz-sdk-checksum-algorithm names the algorithm, as
  // the AWS SDKs send it).
  static void add_checksum_headers(Request* req, const detail::Sha256Digest& digest) {
    req->headers.push_back(detail::cat(kSha256ChecksumHeader, ": ", base64(digest)));
    req->headers.push_back("x-amz-sdk-checksum-algorithm: SHA256");
  }

  static std::string base64(const detail::Sha256Digest& digest) {
    return absl::Base64Escape(
        absl::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
  }

  // A server that echoes a checksum (S3 does) must echo ours.
  Status check_echo(const Request& req, const Response& r,
                    const detail::Sha256Digest& digest) const {
    auto it = r.headers.find(std::string(kSha256ChecksumHeader));
    if (it == r.headers.end() || it->second == base64(digest)) return absl::OkStatus();
    return absl::DataLossError(client_.scrub(detail::cat("S3 ", req.op, " ", client_.where(req),
                                                 ": the server computed another SHA-256 (",
                                                 it->second, ") than the one sent")));
  }

  Status put_fd(std::string_view path, int fd, const std::string& local_file) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      return absl::ErrnoToStatus(errno, detail::cat("S3 checkpoint storage: stat of ", local_file));
    }
    auto size = static_cast<std::uint64_t>(st.st_size);
    const bool multipart = size > options_.multipart_threshold_bytes;
    std::uint64_t part_size = multipart ? options_.part_size_bytes : std::max<std::uint64_t>(size, 1);
    if ((size + part_size - 1) / part_size > kMaxParts) part_size = (size + kMaxParts - 1) / kMaxParts;
    // First pass: the checksum, which the metadata carries, and that of each
    // part (of the whole file when it goes in one PUT), which S3 verifies.
    Sha256 hash;
    Sha256 part_hash;
    std::vector<detail::Sha256Digest> part_digests;
    {
      std::vector<char> buf(std::size_t{1} << 20);
      std::uint64_t done = 0;
      std::uint64_t part_left = std::min(part_size, size);
      while (done < size) {
        const std::size_t want =
            static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), part_left));
        ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          return absl::AbortedError(detail::cat("S3 checkpoint storage: put_file of \"", path,
                                                 "\": reading ", local_file, " failed"));
        }
        hash.update(buf.data(), static_cast<std::size_t>(n));
        part_hash.update(buf.data(), static_cast<std::size_t>(n));
        done += static_cast<std::uint64_t>(n);
        part_left -= static_cast<std::uint64_t>(n);
        if (part_left == 0) {
          part_digests.push_back(part_hash.finish());
          part_hash.reset();
          part_left = std::min(part_size, size - done);
        }
      }
    }
    if (part_digests.empty()) part_digests.push_back(detail::sha256(""));
    const std::string checksum = detail::to_hex(hash.finish());
    const std::string meta = detail::cat(kChecksumHeader, ": ", checksum);

    if (!multipart) {
      Body body;
      body.from_file = true;
      body.fd = fd;
      body.length = size;
      Request req = object_request("PutObject", "PUT", path);
      req.body = &body;
      req.payload_hash = checksum;  // S3 checks the bytes it receives.
      req.headers.push_back(meta);
      add_checksum_headers(&req, part_digests[0]);
      req.stream = true;
      Response r = client_.perform(req);
      MS_RETURN_IF_ERROR(client_.to_status(req, r));
      return check_echo(req, r, part_digests[0]);
    }

    const std::string key = full_key(path);

    Request create = object_request("CreateMultipartUpload", "POST", path);
    create.query = make_query({{"uploads", ""}});
    create.headers.push_back(meta);
    // Every part then carries its SHA-256, which S3 checks on arrival.
    create.headers.push_back("x-amz-checksum-algorithm: SHA256");
    Response cr = client_.perform(create);
    MS_RETURN_IF_ERROR(client_.to_status(create, cr));
    const std::string upload_id = xml_value(cr.body, "UploadId");
    if (upload_id.empty()) {
      return absl::InternalError(detail::cat("S3 CreateMultipartUpload ", client_.where(create),
                                              ": no UploadId in the response"));
    }

    auto abort_upload = [&](Status failure) {
      Request abort = object_request("AbortMultipartUpload", "DELETE", path);
      abort.query = make_query({{"uploadId", upload_id}});
      client_.perform(abort);  // Best effort: the failure that caused it is what counts.
      return failure;
    };

    std::string complete =
        "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
    std::uint64_t offset = 0;
    for (int part = 1; offset < size; ++part) {
      Body body;
      body.from_file = true;
      body.fd = fd;
      body.offset = offset;
      body.length = std::min<std::uint64_t>(part_size, size - offset);
      Request up;
      up.op = "UploadPart";
      up.method = "PUT";
      up.key = key;
      up.query = make_query({{"partNumber", std::to_string(part)}, {"uploadId", upload_id}});
      up.body = &body;
      const detail::Sha256Digest& digest = part_digests[static_cast<std::size_t>(part - 1)];
      up.payload_hash = detail::to_hex(digest);  // signed, and checked by S3
      add_checksum_headers(&up, digest);
      up.stream = true;
      Response ur = client_.perform(up);
      Status s = client_.to_status(up, ur);
      if (s.ok()) s = check_echo(up, ur, digest);
      if (!s.ok()) return abort_upload(s);
      auto etag = ur.headers.find("etag");
      if (etag == ur.headers.end() || etag->second.empty()) {
        return abort_upload(absl::InternalError(
            detail::cat("S3 UploadPart ", client_.where(up), ": no ETag for part ", part)));
      }
      detail::append(&complete, "<Part><PartNumber>", part, "</PartNumber><ETag>",
                      xml_escape(etag->second), "</ETag><ChecksumSHA256>", base64(digest),
                      "</ChecksumSHA256></Part>");
      offset += body.length;
    }
    detail::append(&complete, "</CompleteMultipartUpload>");

    Body body;
    body.memory = complete;
    Request done;
    done.op = "CompleteMultipartUpload";
    done.method = "POST";
    done.key = key;
    done.query = make_query({{"uploadId", upload_id}});
    done.body = &body;
    done.content_type = "application/xml";
    done.payload_hash = detail::to_hex(detail::sha256(complete));
    Status s = client_.to_status(done, client_.perform(done));
    if (!s.ok()) return abort_upload(s);
    return absl::OkStatus();
  }

  S3CheckpointStorageOptions options_;
  s3::S3Client client_;  // after options_, which it refers to
  std::atomic<std::uint64_t> counter_{0};
};


}  // namespace

StatusOr<std::unique_ptr<CheckpointStorage>> make_s3_checkpoint_storage(
    const S3CheckpointStorageOptions& options) {
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

  if (options.bucket.empty()) {
    return absl::InvalidArgumentError("S3 checkpoint storage: empty bucket");
  }
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError("S3 checkpoint storage: max_attempts must be at least 1");
  }
  if (options.part_size_bytes < kMinPartSize) {
    return absl::InvalidArgumentError(detail::cat(
        "S3 checkpoint storage: part_size_bytes is ", options.part_size_bytes,
        ", S3 needs at least 5 MiB"));
  }
  if (options.request_timeout.count() <= 0) {
    return absl::InvalidArgumentError("S3 checkpoint storage: request_timeout must be positive");
  }
  std::string scheme = "https";
  std::string host = detail::cat("s3.", options.region, ".amazonaws.com");
  if (!options.endpoint.empty()) {
    std::string_view e = options.endpoint;
    std::size_t sep = e.find("://");
    if (sep == std::string_view::npos || (e.substr(0, sep) != "http" && e.substr(0, sep) != "https")) {
      return absl::InvalidArgumentError(detail::cat(
          "S3 checkpoint storage: endpoint \"", e, "\" is not http://host[:port] or https://..."));
    }
    scheme = std::string(e.substr(0, sep));
    host = std::string(e.substr(sep + 3));
    while (!host.empty() && host.back() == '/') host.pop_back();
    if (host.empty() || host.find('/') != std::string::npos || host.find('@') != std::string::npos) {
      return absl::InvalidArgumentError(detail::cat(
          "S3 checkpoint storage: endpoint \"", e, "\" must be scheme://host[:port] only"));
    }
  }
  MS_ASSIGN_OR_RETURN(s3::Credentials credentials, s3::resolve_credentials(options));
  auto storage = std::make_unique<S3CheckpointStorage>(options, std::move(credentials),
                                                       std::move(scheme), std::move(host));
  MS_RETURN_IF_ERROR(storage->open());
  return std::unique_ptr<CheckpointStorage>(std::move(storage));
}

}  // namespace meterstream
