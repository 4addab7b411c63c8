// S3 requests over libcurl (s3/transfer.hpp).
#include "checkpoint/s3/transfer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/str_replace.h"
#include "checkpoint/s3/signing.hpp"
#include <unistd.h>

namespace meterstream::detail::s3 {
namespace {

constexpr std::size_t kMaxErrorBody = 64 << 10;
constexpr std::chrono::milliseconds kMaxBackoff{20000};

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
  } else if (std::size_t colon = line.find(':');
             colon != std::string_view::npos) {
    std::string name = detail::lower(detail::trim(line.substr(0, colon)));
    t->response->headers[name] =
        std::string(detail::trim(line.substr(colon + 1)));
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
    if (t->request->sink_hash != nullptr)
      t->request->sink_hash->update(data, bytes);
    return bytes;
  }
  std::string& body = t->response->body;
  if (body.size() < kMaxErrorBody || (code >= 200 && code < 300))
    body.append(data, bytes);
  return bytes;
}

std::size_t on_read(char* buffer, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<TransferState*>(user);
  const Body& body = *t->request->body;
  std::uint64_t left = body.size() - t->read_pos;
  std::size_t want =
      static_cast<std::size_t>(std::min<std::uint64_t>(left, size * n));
  if (want == 0) return 0;
  if (!body.from_file) {
    std::memcpy(buffer, body.memory.data() + t->read_pos, want);
  } else {
    ssize_t got;
    do {
      got = ::pread(body.fd, buffer, want,
                    static_cast<off_t>(body.offset + t->read_pos));
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

}  // namespace

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
  return r.http >= 200 && r.http < 300 &&
         r.body.find("<Error>") != std::string::npos;
}

// Errors of CompleteMultipartUpload that the same request will meet again.
bool permanent_embedded_error(const std::string& code) {
  return code == "InvalidPart" || code == "InvalidPartOrder" ||
         code == "NoSuchUpload" || code == "EntityTooSmall" ||
         code == "InvalidRequest" || code == "AccessDenied" ||
         code == "InvalidArgument";
}

bool retriable_http(const Response& r) {
  if (r.http >= 500 || r.http == 429) return true;
  std::string code = xml_value(r.body, "Code");
  return code == "SlowDown" || code == "RequestTimeout" ||
         code == "Throttling" || code == "ThrottlingException" ||
         code == "RequestTimeTooSkewed";
}

S3Client::S3Client(const S3CheckpointStorageOptions& options,
                   Credentials credentials, std::string scheme,
                   std::string host)
    : options_(options),
      credentials_(std::move(credentials)),
      scheme_(std::move(scheme)),
      host_(std::move(host)),
      sigv4_(sigv4_scope(options.region)) {}

S3Client::~S3Client() {
  for (CURL* c : pool_) curl_easy_cleanup(c);
}

std::string S3Client::url(const Request& req) const {
  std::string out =
      options_.path_style
          ? detail::cat(scheme_, "://", host_, "/",
                        uri_encode(options_.bucket, false))
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
std::string S3Client::scrub(std::string s) const {
  for (const std::string* secret :
       {&credentials_.secret_access_key, &credentials_.session_token,
        &credentials_.access_key_id}) {
    if (secret->size() >= 4)
      s = absl::StrReplaceAll(s, {{*secret, "<redacted>"}});
  }
  return s;
}

std::string S3Client::where(const Request& req) const {
  const std::string& key =
      req.key_for_errors.empty() ? req.key : req.key_for_errors;
  return key.empty() ? detail::cat("s3://", options_.bucket)
                     : detail::cat("s3://", options_.bucket, "/", key);
}

Status S3Client::to_status(const Request& req, const Response& r) const {
  std::string prefix = detail::cat("S3 ", req.op, " ", where(req), " at ",
                                   scheme_, "://", host_, ": ");
  std::string tries =
      r.attempts > 1 ? detail::cat(" (after ", r.attempts, " attempts)") : "";
  if (r.curl != CURLE_OK) {
    std::string msg = scrub(detail::cat(prefix, curl_easy_strerror(r.curl),
                                        r.curl_error.empty() ? "" : ": ",
                                        r.curl_error, tries));
    if (r.sink_failed)
      return absl::InternalError(
          detail::cat(msg, ": writing the local file failed"));
    if (retriable_curl(r.curl)) return absl::UnavailableError(msg);
    return absl::InternalError(msg);
  }
  if (r.http >= 200 && r.http < 300) {
    // CompleteMultipartUpload may fail with a 200 and an error body.
    if (req.method == "POST" && embedded_error(r)) {
      const std::string code = xml_value(r.body, "Code");
      std::string msg =
          scrub(detail::cat(prefix, "error in a 200 response: ", code, ": ",
                            xml_value(r.body, "Message"), tries));
      if (permanent_embedded_error(code))
        return absl::FailedPreconditionError(msg);
      return absl::UnavailableError(msg);
    }
    return absl::OkStatus();
  }
  std::string code = xml_value(r.body, "Code");
  std::string message = xml_value(r.body, "Message");
  if (message.size() > 300)
    message = detail::cat(message.substr(0, 300), "...");
  std::string msg =
      scrub(detail::cat(prefix, "HTTP ", r.http, code.empty() ? "" : " ", code,
                        message.empty() ? "" : ": ", message, tries));
  switch (r.http) {
    case 400:
      return absl::InvalidArgumentError(msg);
    case 401:
      return absl::UnauthenticatedError(msg);
    case 403:
      return absl::PermissionDeniedError(msg);
    case 404:
      return absl::NotFoundError(msg);
    case 409:
    case 412:
      return absl::FailedPreconditionError(msg);
    default:
      if (retriable_http(r)) return absl::UnavailableError(msg);
      return absl::UnknownError(msg);
  }
}

CURL* S3Client::acquire() {
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

void S3Client::release(CURL* c) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  pool_.push_back(c);
}

std::chrono::milliseconds S3Client::backoff(int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto d = options_.initial_backoff;
  for (int i = 1; i < attempt && d < kMaxBackoff; ++i) d *= 2;
  d = std::min(d, kMaxBackoff);
  auto half = d.count() / 2;
  std::uniform_int_distribution<long long> dist(
      half, std::max<long long>(half, d.count()));
  return std::chrono::milliseconds(dist(rng));
}

void S3Client::attempt_once(const Request& req, Response* r) {
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
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   std::min<long>(timeout_ms, 10000));
  if (req.stream) {
    // A large transfer may take longer than the timeout; it is cut when no
    // byte moved for that long.
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                     std::max<long>(1, timeout_ms / 1000));
  } else {
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  }

  curl_slist* headers = nullptr;
  auto add = [&](const std::string& h) {
    headers = curl_slist_append(headers, h.c_str());
  };
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
    curl_easy_setopt(
        c, CURLOPT_INFILESIZE_LARGE,
        static_cast<curl_off_t>(req.body != nullptr ? req.body->size() : 0));
    if (req.method == "POST")
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
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
  if (r->curl == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->http);
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

}  // namespace meterstream::detail::s3
