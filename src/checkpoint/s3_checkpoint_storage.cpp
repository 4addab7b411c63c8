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
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "checkpoint/storage_util.hpp"
#include "meterstream/checkpoint/checkpoint_storage.hpp"

namespace meterstream {
namespace {

using detail::Sha256;

constexpr std::string_view kChecksumHeader = "x-amz-meta-ms-sha256";
// S3 verifies this SHA-256 of a request's body (a put, a part) on arrival.
constexpr std::string_view kSha256ChecksumHeader = "x-amz-checksum-sha256";
constexpr std::size_t kMinPartSize = std::size_t{5} << 20;
constexpr std::uint64_t kMaxParts = 10000;
constexpr std::size_t kMaxErrorBody = 64 << 10;
constexpr std::chrono::milliseconds kMaxBackoff{20000};

// ---- Small helpers ------------------------------------------------------------

// Percent-encodes like SigV4's canonical form: everything but A-Z a-z 0-9
// - _ . ~ (and '/' when keep_slash) as %XX with upper-case hex.
std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3 / 2);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

// A canonical query string from (key, value) pairs: sorted, encoded, and
// "key=" for a bare key.
std::string make_query(std::vector<std::pair<std::string, std::string>> params) {
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out.push_back('&');
    detail::append(&out, uri_encode(k, false), "=", uri_encode(v, false));
  }
  return out;
}

std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    std::size_t semi = s.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) {
      out.push_back('&');
      continue;
    }
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    std::uint32_t cp = 0;
    bool ok = true;
    if (ent == "amp") cp = '&';
    else if (ent == "lt") cp = '<';
    else if (ent == "gt") cp = '>';
    else if (ent == "quot") cp = '"';
    else if (ent == "apos") cp = '\'';
    else if (ent.size() > 1 && ent[0] == '#') {
      bool hex = ent[1] == 'x' || ent[1] == 'X';
      std::string num(ent.substr(hex ? 2 : 1));
      char* end = nullptr;
      unsigned long v = std::strtoul(num.c_str(), &end, hex ? 16 : 10);
      ok = !num.empty() && end != nullptr && *end == '\0' && v <= 0x10FFFF;
      cp = static_cast<std::uint32_t>(v);
    } else {
      ok = false;
    }
    if (!ok) {
      out.push_back('&');
      continue;
    }
    // UTF-8 encode the code point.
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    i = semi;
  }
  return out;
}

// The text of every element <tag>...</tag> in `xml` (unescaped), in order.
// S3's responses are flat enough that the tags we read (Key, UploadId,
// NextContinuationToken, Code, Message) are never nested in themselves;
// "<tag/>" reads as an empty value.
std::vector<std::string> xml_values(std::string_view xml, std::string_view tag) {
  std::vector<std::string> out;
  const std::string open = detail::cat("<", tag);
  const std::string close = detail::cat("</", tag, ">");
  std::size_t pos = 0;
  while ((pos = xml.find(open, pos)) != std::string_view::npos) {
    std::size_t after = pos + open.size();
    if (after >= xml.size()) break;
    char c = xml[after];
    if (c != '>' && c != ' ' && c != '/' && c != '\t' && c != '\n' && c != '\r') {
      pos = after;  // A longer tag name (<KeyCount> for <Key>).
      continue;
    }
    std::size_t gt = xml.find('>', after);
    if (gt == std::string_view::npos) break;
    if (xml[gt - 1] == '/') {
      out.emplace_back();
      pos = gt + 1;
      continue;
    }
    std::size_t end = xml.find(close, gt + 1);
    if (end == std::string_view::npos) break;
    out.push_back(xml_unescape(xml.substr(gt + 1, end - gt - 1)));
    pos = end + close.size();
  }
  return out;
}

std::string xml_value(std::string_view xml, std::string_view tag) {
  std::vector<std::string> v = xml_values(xml, tag);
  return v.empty() ? std::string() : std::move(v.front());
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
};

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
    if (key == "aws_access_key_id") c.access_key_id = value;
    else if (key == "aws_secret_access_key") c.secret_access_key = value;
    else if (key == "aws_session_token") c.session_token = value;
  }
  if (c.access_key_id.empty() || c.secret_access_key.empty()) return false;
  *out = std::move(c);
  return true;
}

StatusOr<Credentials> resolve_credentials(const S3CheckpointStorageOptions& o) {
  if (!o.access_key_id.empty()) {
    if (o.secret_access_key.empty()) {
      return absl::InvalidArgumentError(
          "S3 checkpoint storage: access_key_id is set but secret_access_key is empty");
    }
    return Credentials{o.access_key_id, o.secret_access_key, o.session_token};
  }
  if (env("AWS_ACCESS_KEY_ID") != nullptr && env("AWS_SECRET_ACCESS_KEY") != nullptr) {
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
  if (!file.empty() && read_credentials_file(file, profile != nullptr ? profile : "default", &c)) {
    return c;
  }
  return absl::UnauthenticatedError(detail::cat(
      "S3 checkpoint storage: no credentials: set them in S3CheckpointStorageOptions, in "
      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or in the [",
      profile != nullptr ? profile : "default", "] profile of ",
      file.empty() ? std::string("~/.aws/credentials") : file));
}

// ---- Requests -------------------------------------------------------------------

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
  std::string op;     // "GetObject", for errors.
  std::string method; // GET, PUT, HEAD, DELETE, POST.
  std::string key;    // Full object key; empty for the bucket itself.
  std::string query;  // Canonical (make_query).
  std::string payload_hash;
  std::string content_type = "application/octet-stream";
  std::vector<std::string> headers;
  const Body* body = nullptr;  // PUT and POST.
  int sink_fd = -1;            // A 2xx GET's body goes there (hashed into sink_hash).
  Sha256* sink_hash = nullptr;
  bool stream = false;         // A long transfer: a stall limit, not a total one.
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

struct TransferState {
  CURL* curl = nullptr;
  const Request* request = nullptr;
  Response* response = nullptr;
  std::uint64_t read_pos = 0;
};

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<TransferState*>(user);
  std::string_view line(data, size * n);
  if (line.substr(0, 5) == "HTTP/") {
    t->response->headers.clear();  // A new response (after 100 Continue).
  } else if (std::size_t colon = line.find(':'); colon != std::string_view::npos) {
    std::string name = detail::lower(detail::trim(line.substr(0, colon)));
    t->response->headers[name] = std::string(detail::trim(line.substr(colon + 1)));
  }
  return size * n;
}

std::size_t on_write(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<TransferState*>(user);
  std::size_t bytes = size * n;
  long code = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
  if (t->request->sink_fd >= 0 && code >= 200 && code < 300) {
    const char* p = data;
    std::size_t left = bytes;
    while (left > 0) {
      ssize_t w = ::write(t->request->sink_fd, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        t->response->sink_failed = true;
        return 0;  // Aborts the transfer (CURLE_WRITE_ERROR).
      }
      p += w;
      left -= static_cast<std::size_t>(w);
    }
    if (t->request->sink_hash != nullptr) t->request->sink_hash->update(data, bytes);
    return bytes;
  }
  std::string& body = t->response->body;
  if (body.size() < kMaxErrorBody || (code >= 200 && code < 300)) body.append(data, bytes);
  return bytes;
}

std::size_t on_read(char* buffer, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<TransferState*>(user);
  const Body& body = *t->request->body;
  std::uint64_t left = body.size() - t->read_pos;
  std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(left, size * n));
  if (want == 0) return 0;
  if (!body.from_file) {
    std::memcpy(buffer, body.memory.data() + t->read_pos, want);
  } else {
    ssize_t got;
    do {
      got = ::pread(body.fd, buffer, want, static_cast<off_t>(body.offset + t->read_pos));
    } while (got < 0 && errno == EINTR);
    if (got <= 0) return CURL_READFUNC_ABORT;
    want = static_cast<std::size_t>(got);
  }
  t->read_pos += want;
  return want;
}

int on_seek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<TransferState*>(user);
  if (origin != SEEK_SET || offset < 0 ||
      static_cast<std::uint64_t>(offset) > t->request->body->size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  t->read_pos = static_cast<std::uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

bool retriable_curl(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

// A 2xx response of a POST (CompleteMultipartUpload) whose body is an error.
bool embedded_error(const Response& r) {
  return r.http >= 200 && r.http < 300 && r.body.find("<Error>") != std::string::npos;
}

// Errors of CompleteMultipartUpload that the same request will meet again.
bool permanent_embedded_error(const std::string& code) {
  return code == "InvalidPart" || code == "InvalidPartOrder" || code == "NoSuchUpload" ||
         code == "EntityTooSmall" || code == "InvalidRequest" || code == "AccessDenied" ||
         code == "InvalidArgument";
}

bool retriable_http(const Response& r) {
  if (r.http >= 500 || r.http == 429) return true;
  std::string code = xml_value(r.body, "Code");
  return code == "SlowDown" || code == "RequestTimeout" || code == "Throttling" ||
         code == "ThrottlingException" || code == "RequestTimeTooSkewed";
}

class S3CheckpointStorage final : public CheckpointStorage {
 public:
  S3CheckpointStorage(S3CheckpointStorageOptions options, Credentials credentials,
                      std::string scheme, std::string host)
      : options_(std::move(options)),
        credentials_(std::move(credentials)),
        scheme_(std::move(scheme)),
        host_(std::move(host)),
        sigv4_(detail::cat("aws:amz:", options_.region, ":s3")) {
    while (!options_.prefix.empty() && options_.prefix.back() == '/') options_.prefix.pop_back();
    while (!options_.prefix.empty() && options_.prefix.front() == '/') options_.prefix.erase(0, 1);
  }

  ~S3CheckpointStorage() override {
    for (CURL* c : pool_) curl_easy_cleanup(c);
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
    Response r = perform(head);
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
      Response c = perform(create);
      // BucketAlreadyOwnedByYou: a concurrent creator won; fine.
      if (c.curl == CURLE_OK && c.http == 409 &&
          xml_value(c.body, "Code") == "BucketAlreadyOwnedByYou") {
        return absl::OkStatus();
      }
      return to_status(create, c);
    }
    return to_status(head, r);
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
    return to_status(req, perform(req));
  }

  StatusOr<std::string> get(std::string_view path) override {
    MS_RETURN_IF_ERROR(detail::validate_object_path(path));
    Request req = object_request("GetObject", "GET", path);
    Response r = perform(req);
    MS_RETURN_IF_ERROR(to_status(req, r));
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
    Response r = perform(req, [&] {
      // Each attempt starts the file and the hash over.
      if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) return false;
      hash.reset();
      return true;
    });
    Status s = to_status(req, r);
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
    Response r = perform(req);
    if (r.curl == CURLE_OK && r.http == 404) return false;
    MS_RETURN_IF_ERROR(to_status(req, r));
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
      Response r = perform(req);
      MS_RETURN_IF_ERROR(to_status(req, r));
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
    Response r = perform(req);
    if (r.curl == CURLE_OK && r.http == 404) return absl::OkStatus();
    return to_status(req, r);
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

  std::string url(const Request& req) const {
    std::string out = options_.path_style
                          ? detail::cat(scheme_, "://", host_, "/", uri_encode(options_.bucket, false))
                          : detail::cat(scheme_, "://", options_.bucket, ".", host_);
    if (!req.key.empty()) {
      detail::append(&out, "/", uri_encode(req.key, true));
    } else if (!options_.path_style || !req.query.empty()) {
      out.push_back('/');
    }
    if (!req.query.empty()) detail::append(&out, "?", req.query);
    return out;
  }

  // Removes credentials from a message that may have come from the server.
  std::string scrub(std::string s) const {
    for (const std::string* secret :
         {&credentials_.secret_access_key, &credentials_.session_token, &credentials_.access_key_id}) {
      if (secret->size() >= 4) s = absl::StrReplaceAll(s, {{*secret, "<redacted>"}});
    }
    return s;
  }

  std::string where(const Request& req) const {
    const std::string& key = req.key_for_errors.empty() ? req.key : req.key_for_errors;
    return key.empty() ? detail::cat("s3://", options_.bucket)
                       : detail::cat("s3://", options_.bucket, "/", key);
  }

  Status to_status(const Request& req, const Response& r) const {
    std::string prefix = detail::cat("S3 ", req.op, " ", where(req), " at ", scheme_, "://",
                                      host_, ": ");
    std::string tries = r.attempts > 1 ? detail::cat(" (after ", r.attempts, " attempts)") : "";
    if (r.curl != CURLE_OK) {
      std::string msg = scrub(detail::cat(prefix, curl_easy_strerror(r.curl),
                                           r.curl_error.empty() ? "" : ": ", r.curl_error, tries));
      if (r.sink_failed) return absl::InternalError(detail::cat(msg, ": writing the local file failed"));
      if (retriable_curl(r.curl)) return absl::UnavailableError(msg);
      return absl::InternalError(msg);
    }
    if (r.http >= 200 && r.http < 300) {
      // CompleteMultipartUpload may fail with a 200 and an error body.
      if (req.method == "POST" && embedded_error(r)) {
        const std::string code = xml_value(r.body, "Code");
        std::string msg = scrub(detail::cat(prefix, "error in a 200 response: ", code, ": ",
                                            xml_value(r.body, "Message"), tries));
        if (permanent_embedded_error(code)) return absl::FailedPreconditionError(msg);
        return absl::UnavailableError(msg);
      }
      return absl::OkStatus();
    }
    std::string code = xml_value(r.body, "Code");
    std::string message = xml_value(r.body, "Message");
    if (message.size() > 300) message = detail::cat(message.substr(0, 300), "...");
    std::string msg = scrub(detail::cat(prefix, "HTTP ", r.http, code.empty() ? "" : " ", code,
                                         message.empty() ? "" : ": ", message, tries));
    switch (r.http) {
      case 400: return absl::InvalidArgumentError(msg);
      case 401: return absl::UnauthenticatedError(msg);
      case 403: return absl::PermissionDeniedError(msg);
      case 404: return absl::NotFoundError(msg);
      case 409:
      case 412: return absl::FailedPreconditionError(msg);
      default:
        if (retriable_http(r)) return absl::UnavailableError(msg);
        return absl::UnknownError(msg);
    }
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

  CURL* acquire() {
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (!pool_.empty()) {
        CURL* c = pool_.back();
        pool_.pop_back();
        return c;
      }
    }
    return curl_easy_init();
  }

  void release(CURL* c) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    pool_.push_back(c);
  }

  std::chrono::milliseconds backoff(int attempt) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    auto d = options_.initial_backoff;
    for (int i = 1; i < attempt && d < kMaxBackoff; ++i) d *= 2;
    d = std::min(d, kMaxBackoff);
    auto half = d.count() / 2;
    std::uniform_int_distribution<long long> dist(half, std::max<long long>(half, d.count()));
    return std::chrono::milliseconds(dist(rng));
  }

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
      bool transient = r.curl != CURLE_OK ? (retriable_curl(r.curl) && !r.sink_failed)
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

  void attempt_once(const Request& req, Response* r) {
    CURL* c = acquire();
    if (c == nullptr) {
      r->curl = CURLE_FAILED_INIT;
      return;
    }
    curl_easy_reset(c);
    TransferState t;
    t.curl = c;
    t.request = &req;
    t.response = r;
    char error[CURL_ERROR_SIZE] = {0};

    const std::string target = url(req);
    curl_easy_setopt(c, CURLOPT_URL, target.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4_.c_str());
    curl_easy_setopt(c, CURLOPT_USERNAME, credentials_.access_key_id.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, credentials_.secret_access_key.c_str());
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    long timeout_ms = static_cast<long>(options_.request_timeout.count());
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min<long>(timeout_ms, 10000));
    if (req.stream) {
      // A large transfer may take longer than the timeout; it is cut when no
      // byte moved for that long.
      curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
      curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, std::max<long>(1, timeout_ms / 1000));
    } else {
      curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    }

    curl_slist* headers = nullptr;
    auto add = [&](const std::string& h) { headers = curl_slist_append(headers, h.c_str()); };
    add(detail::cat("x-amz-content-sha256: ", req.payload_hash));
    add(detail::cat("Content-Type: ", req.content_type));
    if (!credentials_.session_token.empty()) {
      add(detail::cat("x-amz-security-token: ", credentials_.session_token));
    }
    for (const std::string& h : req.headers) add(h);

    if (req.method == "HEAD") {
      curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (req.method == "PUT" || req.method == "POST") {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_READFUNCTION, &on_read);
      curl_easy_setopt(c, CURLOPT_READDATA, &t);
      curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, &on_seek);
      curl_easy_setopt(c, CURLOPT_SEEKDATA, &t);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                       static_cast<curl_off_t>(req.body != nullptr ? req.body->size() : 0));
      if (req.method == "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
    } else if (req.method != "GET") {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    static const Body kEmptyBody;
    Request with_body;
    if ((req.method == "PUT" || req.method == "POST") && req.body == nullptr) {
      with_body = req;
      with_body.body = &kEmptyBody;
      t.request = &with_body;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

    r->curl = curl_easy_perform(c);
    if (r->curl == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->http);
    r->curl_error = error;
    curl_slist_free_all(headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
    if (r->curl != CURLE_OK) {
      // A failed connection is not worth keeping.
      curl_easy_cleanup(c);
    } else {
      release(c);
    }
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
    return absl::DataLossError(scrub(detail::cat("S3 ", req.op, " ", where(req),
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
      Response r = perform(req);
      MS_RETURN_IF_ERROR(to_status(req, r));
      return check_echo(req, r, part_digests[0]);
    }

    const std::string key = full_key(path);

    Request create = object_request("CreateMultipartUpload", "POST", path);
    create.query = make_query({{"uploads", ""}});
    create.headers.push_back(meta);
    // Every part then carries its SHA-256, which S3 checks on arrival.
    create.headers.push_back("x-amz-checksum-algorithm: SHA256");
    Response cr = perform(create);
    MS_RETURN_IF_ERROR(to_status(create, cr));
    const std::string upload_id = xml_value(cr.body, "UploadId");
    if (upload_id.empty()) {
      return absl::InternalError(detail::cat("S3 CreateMultipartUpload ", where(create),
                                              ": no UploadId in the response"));
    }

    auto abort_upload = [&](Status failure) {
      Request abort = object_request("AbortMultipartUpload", "DELETE", path);
      abort.query = make_query({{"uploadId", upload_id}});
      perform(abort);  // Best effort: the failure that caused it is what counts.
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
      Response ur = perform(up);
      Status s = to_status(up, ur);
      if (s.ok()) s = check_echo(up, ur, digest);
      if (!s.ok()) return abort_upload(s);
      auto etag = ur.headers.find("etag");
      if (etag == ur.headers.end() || etag->second.empty()) {
        return abort_upload(absl::InternalError(
            detail::cat("S3 UploadPart ", where(up), ": no ETag for part ", part)));
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
    Status s = to_status(done, perform(done));
    if (!s.ok()) return abort_upload(s);
    return absl::OkStatus();
  }

  S3CheckpointStorageOptions options_;
  Credentials credentials_;
  std::string scheme_;
  std::string host_;  // host[:port], no trailing '/'.
  std::string sigv4_;
  std::mutex pool_mu_;
  std::vector<CURL*> pool_;
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
  MS_ASSIGN_OR_RETURN(Credentials credentials, resolve_credentials(options));
  auto storage = std::make_unique<S3CheckpointStorage>(options, std::move(credentials),
                                                       std::move(scheme), std::move(host));
  MS_RETURN_IF_ERROR(storage->open());
  return std::unique_ptr<CheckpointStorage>(std::move(storage));
}

}  // namespace meterstream
