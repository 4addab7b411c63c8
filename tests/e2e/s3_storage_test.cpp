// The S3 checkpoint storage against moto_server (checkpoint/checkpoint_storage.hpp).
//
// The shared moto_server comes from MS_S3_ENDPOINT (scripts/test.sh starts
// it). That server accepts any signature, so the signing test starts its own
// moto_server and enforces IAM auth on it (docs/checkpoint_storage.md).
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/moto_server.hpp"
#include "common/s3_test_util.hpp"
#include "common/temp_dir.hpp"
#include "common/test_bytes.hpp"
#include "meterstream/checkpoint/checkpoint_storage.hpp"

namespace ms = meterstream;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using meterstream::test::check_no_credentials;
using meterstream::test::free_port;
using meterstream::test::kKeyId;
using meterstream::test::kSecret;
using meterstream::test::MotoServer;
using meterstream::test::open_s3;
using meterstream::test::s3_endpoint;
using meterstream::test::s3_options;
using meterstream::test::TempDir;
using meterstream::test::unique_bucket;

namespace {

using meterstream::test::pattern;
using meterstream::test::read_file;

// Runs a shell command, returns its stdout.
std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

std::string xml_value(const std::string& xml, const std::string& tag) {
  auto b = xml.find("<" + tag + ">");
  auto e = xml.find("</" + tag + ">");
  if (b == std::string::npos || e == std::string::npos) return "";
  b += tag.size() + 2;
  return xml.substr(b, e - b);
}

// An IAM query API call signed by curl's command line (moto's single server
// routes it to IAM by the service in the credential scope); returns the body.
std::string iam_call(const std::string& ep, const std::string& form) {
  return run("curl -sS --aws-sigv4 aws:amz:us-east-1:iam --user " + std::string(kKeyId) +
             ":bootstrap -X POST -H 'Content-Type: application/x-www-form-urlencoded' " + form +
             " " + ep + "/");
}

}  // namespace

TEST_CASE("s3 storage round trips objects", "[checkpoint][s3]") {
  auto storage = open_s3(s3_options(s3_endpoint(), unique_bucket("rt")));
  CHECK(storage->name().find("jobs/q1") != std::string::npos);
  CHECK(storage->name().find(kSecret) == std::string::npos);

  std::string binary = pattern(300000, 7);
  REQUIRE(storage->put("chk-1/_metadata", "{\"id\":1}").ok());
  REQUIRE(storage->put("shared/a b+c%=.sst", binary).ok());  // Needs encoding.
  REQUIRE(storage->put("empty", "").ok());
  CHECK(storage->get("chk-1/_metadata").value() == "{\"id\":1}");
  CHECK(storage->get("shared/a b+c%=.sst").value() == binary);
  CHECK(storage->get("empty").value().empty());
  CHECK(storage->exists("chk-1/_metadata").value());
  CHECK_FALSE(storage->exists("chk-2/_metadata").value());

  auto missing = storage->get("chk-2/_metadata");
  REQUIRE(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(missing.status().message().find("GetObject") != std::string::npos);
  CHECK(missing.status().message().find("jobs/q1/chk-2/_metadata") != std::string::npos);
  check_no_credentials(missing.status());

  CHECK(storage->list("").value() ==
        std::vector<std::string>{"chk-1/_metadata", "empty", "shared/a b+c%=.sst"});
  CHECK(storage->list("chk").value() == std::vector<std::string>{"chk-1/_metadata"});
  CHECK(storage->list("shared/a b").value() == std::vector<std::string>{"shared/a b+c%=.sst"});
  REQUIRE(storage->remove("chk-1/_metadata").ok());
  REQUIRE(storage->remove("chk-1/_metadata").ok());
  CHECK_FALSE(storage->exists("chk-1/_metadata").value());
}

TEST_CASE("s3 storage opens from an s3:// uri", "[checkpoint][s3]") {
  const std::string bucket = unique_bucket("uri");
  auto first = open_s3(s3_options(s3_endpoint(), bucket));
  REQUIRE(first->put("chk-1/_metadata", "m").ok());
  auto by_uri = ms::make_checkpoint_storage("s3://" + bucket + "/jobs/q1/",
                                            s3_options(s3_endpoint(), "ignored"));
  REQUIRE(by_uri.ok());
  CHECK((*by_uri)->name() == "s3://" + bucket + "/jobs/q1");
  CHECK((*by_uri)->get("chk-1/_metadata").value() == "m");
}

TEST_CASE("s3 storage lists more than 1000 keys across pages", "[checkpoint][s3]") {
  auto storage = open_s3(s3_options(s3_endpoint(), unique_bucket("list")));
  constexpr int kKeys = 1100;
  std::vector<std::thread> writers;
  std::atomic<int> failed{0};
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = w; i < kKeys; i += 4) {
        char name[32];
        std::snprintf(name, sizeof name, "shared/%05d.sst", i);
        if (!storage->put(name, std::to_string(i)).ok()) failed.fetch_add(1);
      }
    });
  }
  REQUIRE(storage->put("other/x", "x").ok());
  for (auto& t : writers) t.join();
  REQUIRE(failed.load() == 0);
  auto names = storage->list("shared/");
  REQUIRE(names.ok());
  REQUIRE(names->size() == static_cast<std::size_t>(kKeys));
  CHECK(names->front() == "shared/00000.sst");
  CHECK(names->back() == "shared/01099.sst");
  CHECK(std::is_sorted(names->begin(), names->end()));
  CHECK(storage->list("").value().size() == static_cast<std::size_t>(kKeys + 1));
}

TEST_CASE("s3 storage uploads large files in parts and streams them back",
          "[checkpoint][s3]") {
  auto o = s3_options(s3_endpoint(), unique_bucket("mpu"));
  o.multipart_threshold_bytes = std::size_t{5} << 20;
  o.part_size_bytes = std::size_t{5} << 20;
  auto storage = open_s3(o);

  TempDir tmp("s3-mpu");
  const fs::path& dir = tmp.path;
  const fs::path src = dir / "big.sst";
  {
    std::ofstream out(src, std::ios::binary);
    for (unsigned i = 0; i < 12; ++i) out << pattern(std::size_t{1} << 20, 50 + i);  // 3 parts.
  }
  const fs::path small = dir / "small.sst";
  std::ofstream(small, std::ios::binary) << pattern(100000, 9);

  REQUIRE(storage->put_file("shared/big.sst", src.string()).ok());
  REQUIRE(storage->put_file("shared/small.sst", small.string()).ok());
  const fs::path dst = dir / "restored.sst";
  REQUIRE(storage->get_file("shared/big.sst", dst.string()).ok());
  CHECK(fs::file_size(dst) == fs::file_size(src));
  CHECK(read_file(dst) == read_file(src));
  CHECK(storage->get("shared/small.sst").value() == read_file(small));
  CHECK(storage->list("shared/").value() ==
        std::vector<std::string>{"shared/big.sst", "shared/small.sst"});
}

TEST_CASE("s3 storage reports an object overwritten without its checksum as kDataLoss",
          "[checkpoint][s3]") {
  const std::string ep = s3_endpoint();
  const std::string bucket = unique_bucket("corrupt");
  auto storage = open_s3(s3_options(ep, bucket));
  REQUIRE(storage->put("chk-4/state.bin", pattern(5000, 4)).ok());
  REQUIRE(storage->get("chk-4/state.bin").ok());

  // A raw PUT of other bytes, without meterstream's checksum metadata, signed
  // by curl's command line with the same key (moto treats unsigned requests
  // as anonymous).
  CHECK(run("curl -sS -o /dev/null -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 --user " +
            std::string(kKeyId) + ":" + kSecret +
            " -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT "
            "-H 'Content-Type: application/octet-stream' --data-binary 'not the checkpoint' " +
            ep + "/" + bucket + "/jobs/q1/chk-4/state.bin") == "200");

  auto got = storage->get("chk-4/state.bin");
  REQUIRE(got.status().code() == absl::StatusCode::kDataLoss);
  CHECK(got.status().message().find("chk-4/state.bin") != std::string::npos);
  TempDir tmp("s3-corrupt");
  const fs::path out = tmp.path / "state.bin";
  ms::Status st = storage->get_file("chk-4/state.bin", out.string());
  CHECK(st.code() == absl::StatusCode::kDataLoss);
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("s3 storage fails with kUnavailable in bounded time when the server is down",
          "[checkpoint][s3]") {
  // Nothing listens: every attempt is refused at once.
  {
    auto o = s3_options("http://127.0.0.1:" + std::to_string(free_port()), "any");
    o.max_attempts = 4;
    o.initial_backoff = 50ms;
    o.request_timeout = 2000ms;
    auto s = ms::make_s3_checkpoint_storage(o);  // bounded: 4 attempts, then an error
    REQUIRE(s.status().code() == absl::StatusCode::kUnavailable);
    CHECK(s.status().message().find("HeadBucket") != std::string::npos);
    CHECK(s.status().message().find("4 attempts") != std::string::npos);
    check_no_credentials(s.status());
  }
  // A server that accepts connections and never answers: each attempt ends at
  // request_timeout, so the whole call ends within the options' own bound
  // (attempts x timeout + the backoffs), plus a margin for a busy machine.
  {
    const int port = free_port();
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = meterstream::test::loopback(port);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 16) == 0);  // the kernel accepts; nobody reads or answers
    auto o = s3_options("http://127.0.0.1:" + std::to_string(port), "any");
    o.max_attempts = 3;
    o.initial_backoff = 50ms;
    o.request_timeout = 1000ms;
    const auto bound = o.max_attempts * o.request_timeout + 50ms + 100ms;
    const auto started = std::chrono::steady_clock::now();
    auto s = ms::make_s3_checkpoint_storage(o);
    const auto took = std::chrono::steady_clock::now() - started;
    ::close(fd);
    INFO(s.status().ToString());
    REQUIRE(s.status().code() == absl::StatusCode::kUnavailable);
    CHECK(s.status().message().find("3 attempts") != std::string::npos);
    CHECK(took >= o.max_attempts * o.request_timeout);  // it did wait for each attempt
    CHECK(took < bound + 5s);
  }
}

TEST_CASE("s3 storage signs requests that moto verifies with IAM auth enforced",
          "[checkpoint][s3]") {
  s3_endpoint();  // The same prerequisites: moto_server must be installed.
  MotoServer moto("auth");
  const std::string ep = moto.endpoint();

  // While auth is not enforced yet: a user with an allow-all policy and a key.
  std::string r =
      iam_call(ep, "--data 'Action=CreateUser&UserName=meterstream&Version=2010-05-08'");
  REQUIRE(r.find("<UserName>meterstream</UserName>") != std::string::npos);
  r = iam_call(ep,
               "--data 'Action=PutUserPolicy&UserName=meterstream&PolicyName=all&"
               "Version=2010-05-08' --data-urlencode 'PolicyDocument={\"Version\":"
               "\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\","
               "\"Resource\":\"*\"}]}'");
  REQUIRE(r.find("PutUserPolicyResponse") != std::string::npos);
  r = iam_call(ep, "--data 'Action=CreateAccessKey&UserName=meterstream&Version=2010-05-08'");
  const std::string key_id = xml_value(r, "AccessKeyId");
  const std::string secret = xml_value(r, "SecretAccessKey");
  REQUIRE(!key_id.empty());
  REQUIRE(!secret.empty());
  // From now on every request must be signed with a known key: moto's
  // INITIAL_NO_AUTH_ACTION_COUNT, set to 0 at run time.
  REQUIRE(run("curl -sS -X POST -H 'Content-Type: text/plain' --data 0 " + ep +
              "/moto-api/reset-auth").find("ok") !=
          std::string::npos);

  auto good = s3_options(ep, unique_bucket("auth"));
  // No key prefix: moto checks a signature against the query string as
  // werkzeug re-renders it, which decodes "%2F", while curl signs the query
  // as sent and AWS wants '/' in a value encoded as "%2F"; so a ListObjectsV2
  // prefix with a '/' cannot pass moto's check (docs/checkpoint_storage.md).
  good.prefix.clear();
  good.access_key_id = key_id;
  good.secret_access_key = secret;
  good.multipart_threshold_bytes = std::size_t{5} << 20;
  good.part_size_bytes = std::size_t{5} << 20;
  auto storage = open_s3(good);  // HeadBucket and CreateBucket, signed.
  REQUIRE(storage->put("chk-1/_metadata", "signed").ok());
  CHECK(storage->get("chk-1/_metadata").value() == "signed");
  CHECK(storage->list("").value() == std::vector<std::string>{"chk-1/_metadata"});
  CHECK(storage->exists("chk-1/_metadata").value());
  // A multipart upload: the bare "uploads=" key and the part queries signed.
  TempDir tmp("s3-auth");
  const fs::path big = tmp.path / "big.sst";
  {
    std::ofstream out(big, std::ios::binary);
    for (unsigned i = 0; i < 11; ++i) out << pattern(std::size_t{1} << 20, 200 + i);
  }
  ms::Status mpu = storage->put_file("shared/big.sst", big.string());
  INFO(mpu.ToString());
  CHECK(mpu.ok());
  REQUIRE(storage->remove("chk-1/_metadata").ok());

  // An unsigned raw request is refused (moto answers 403 or 500): auth is
  // really enforced.
  CHECK(run("curl -s -o /dev/null -w '%{http_code}' " + ep + "/" + good.bucket +
            "/shared/big.sst") != "200");

  // The right key with a wrong secret: 403, kPermissionDenied, no secret in it.
  auto bad = good;
  bad.secret_access_key = "WRONGsecretWRONGsecretWRONGsecret0000000";
  bad.create_bucket_if_missing = false;
  auto refused = ms::make_s3_checkpoint_storage(bad);
  REQUIRE(refused.status().code() == absl::StatusCode::kPermissionDenied);
  CHECK(refused.status().message().find(good.bucket) != std::string::npos);
  check_no_credentials(refused.status(), bad.secret_access_key);
  check_no_credentials(refused.status(), secret);

  // The server goes away under an open storage: kUnavailable after retries.
  moto.stop();
  ms::Status down = storage->put("chk-2/_metadata", "x");
  CHECK(down.code() == absl::StatusCode::kUnavailable);
  CHECK(down.message().find("PutObject") != std::string::npos);
  check_no_credentials(down, secret);
}

namespace {

// The response headers of a HEAD of `key` in `bucket`, asking for the
// object's checksum (lower-case names, values trimmed).
std::map<std::string, std::string> head_with_checksum(const std::string& ep,
                                                      const std::string& bucket,
                                                      const std::string& key) {
  const std::string out =
      run("curl -sS -I --aws-sigv4 aws:amz:us-east-1:s3 --user " + std::string(kKeyId) + ":" +
          kSecret + " -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -H 'x-amz-checksum-mode: "
          "ENABLED' " + ep + "/" + bucket + "/" + key);
  std::map<std::string, std::string> headers;
  std::size_t pos = 0;
  while (pos < out.size()) {
    std::size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(pos, end - pos);
    pos = end + 1;
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r") + 1);
    headers[name] = value;
  }
  return headers;
}

// Base64 of the SHA-256 of `file`; with part_size > 0, S3's composite form:
// base64 of the SHA-256 of the parts' SHA-256 digests, then "-<parts>".
std::string sha256_base64(const fs::path& file, std::size_t part_size = 0) {
  std::string out = run(
      "python3 -c 'import base64, hashlib, sys\n"
      "d = open(sys.argv[1], \"rb\").read(); n = int(sys.argv[2])\n"
      "if n == 0: print(base64.b64encode(hashlib.sha256(d).digest()).decode())\n"
      "else:\n"
      "  parts = [d[i:i + n] for i in range(0, len(d), n)]\n"
      "  h = hashlib.sha256(b\"\".join(hashlib.sha256(p).digest() for p in parts)).digest()\n"
      "  print(base64.b64encode(h).decode() + \"-\" + str(len(parts)))' " +
      file.string() + " " + std::to_string(part_size));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// s3_fault_proxy.py on a free port in front of `upstream`, stopped on
// destruction.
class FaultProxy {
 public:
  FaultProxy(const std::string& upstream, const std::string& fault, int count)
      : port_(free_port()) {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      const std::string script = std::string(MS_SOURCE_DIR) + "/tests/e2e/s3_fault_proxy.py";
      const std::string port = std::to_string(port_);
      const std::string n = std::to_string(count);
      ::execlp("python3", "python3", script.c_str(), port.c_str(), upstream.c_str(),
               fault.c_str(), n.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!meterstream::test::port_answers(port_)) {
      REQUIRE(::waitpid(pid_, nullptr, WNOHANG) == 0);
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(50ms);
    }
  }
  ~FaultProxy() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  pid_t pid_ = -1;
};

}  // namespace

TEST_CASE("s3 storage sends the SHA-256 of every put and every part for S3 to verify",
          "[checkpoint][s3]") {
  const std::string ep = s3_endpoint();
  const std::string bucket = unique_bucket("checksum");
  auto o = s3_options(ep, bucket);
  o.multipart_threshold_bytes = std::size_t{5} << 20;
  o.part_size_bytes = std::size_t{5} << 20;
  auto storage = open_s3(o);
  TempDir tmp("s3-checksum");
  const fs::path small = tmp.path / "small.bin";
  std::ofstream(small, std::ios::binary) << pattern(70000, 3);
  const fs::path big = tmp.path / "big.sst";
  {
    std::ofstream out(big, std::ios::binary);
    for (unsigned i = 0; i < 12; ++i) out << pattern(std::size_t{1} << 20, 90 + i);  // 3 parts
  }
  REQUIRE(storage->put("chk-1/state", read_file(small)).ok());
  REQUIRE(storage->put_file("shared/small.sst", small.string()).ok());
  REQUIRE(storage->put_file("shared/big.sst", big.string()).ok());

  // The checksum S3 keeps is the one that came with the bytes.
  for (const char* key : {"jobs/q1/chk-1/state", "jobs/q1/shared/small.sst"}) {
    INFO(key);
    auto h = head_with_checksum(ep, bucket, key);
    CHECK(h["x-amz-checksum-sha256"] == sha256_base64(small));
  }
  // A multipart object: S3's checksum of the parts' checksums ("-<parts>"
  // appended by S3, not by moto 5.2). moto computes it from the bytes once
  // the upload declared SHA-256 (it does not check the parts' checksums, which
  // S3 does): this shows the declaration and that the parts are the ones cut.
  auto h = head_with_checksum(ep, bucket, "jobs/q1/shared/big.sst");
  const std::string composite = sha256_base64(big, o.part_size_bytes);
  CHECK((h["x-amz-checksum-sha256"] == composite ||
         h["x-amz-checksum-sha256"] + "-3" == composite));
}

TEST_CASE("s3 storage retries a CompleteMultipartUpload answered 200 with an error",
          "[checkpoint][s3]") {
  const std::string ep = s3_endpoint();
  TempDir tmp("s3-complete-error");
  const fs::path big = tmp.path / "big.sst";
  {
    std::ofstream out(big, std::ios::binary);
    for (unsigned i = 0; i < 11; ++i) out << pattern(std::size_t{1} << 20, 120 + i);
  }
  {
    FaultProxy proxy(ep, "complete-200-error", 2);
    auto o = s3_options(proxy.endpoint(), unique_bucket("complete"));
    o.multipart_threshold_bytes = std::size_t{5} << 20;
    o.part_size_bytes = std::size_t{5} << 20;
    o.max_attempts = 3;
    auto storage = open_s3(o);
    const ms::Status s = storage->put_file("shared/big.sst", big.string());
    INFO(s.ToString());
    REQUIRE(s.ok());
    const fs::path back = tmp.path / "back.sst";
    REQUIRE(storage->get_file("shared/big.sst", back.string()).ok());
    CHECK(read_file(back) == read_file(big));
  }
  {
    // More such answers than attempts: an error that says so, and no object.
    FaultProxy proxy(ep, "complete-200-error", 100);
    auto o = s3_options(proxy.endpoint(), unique_bucket("complete"));
    o.multipart_threshold_bytes = std::size_t{5} << 20;
    o.part_size_bytes = std::size_t{5} << 20;
    o.max_attempts = 2;
    auto storage = open_s3(o);
    const ms::Status s = storage->put_file("shared/big.sst", big.string());
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kUnavailable);
    CHECK(s.message().find("InternalError") != std::string::npos);
    CHECK(s.message().find("2 attempts") != std::string::npos);
    CHECK_FALSE(storage->exists("shared/big.sst").value());
  }
}
