// The S3 checkpoint storage against moto_server (checkpoint/checkpoint_storage.hpp).
//
// The shared moto_server comes from MS_S3_ENDPOINT (scripts/test.sh starts
// it). That server accepts any signature, so the signing test starts its own
// moto_server and enforces IAM auth on it (docs/checkpoint_storage.md).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
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
