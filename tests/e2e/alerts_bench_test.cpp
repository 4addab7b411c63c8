// `meterstream-bench alerts` (WORKLOAD.md Query Q3) against a Redis server the
// test starts itself: after a run, the alert:* keys are exactly the expected
// alerts (count and digest of WORKLOAD.md's table row) and the agg:* fields
// give Q2's windows, counts, sums and digest (computed by the baseline).
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "bench/q1.hpp"
#include "bench/q1_baseline.hpp"
#include "common/redis_server.hpp"
#include "common/temp_dir.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"

namespace ms = meterstream;
namespace t = meterstream::test;

namespace {

const std::string kBench = std::string(MS_BINARY_DIR) + "/bench/meterstream-bench";

nlohmann::json run_json(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  INFO(cmd << "\nexit " << rc << ", stdout: " << out);
  REQUIRE(rc == 0);
  REQUIRE(!out.empty());
  REQUIRE(out.find('\n') == out.size() - 1);  // one line
  return nlohmann::json::parse(out);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, sep)) parts.push_back(part);
  return parts;
}

}  // namespace

TEST_CASE("meterstream-bench alerts writes WORKLOAD.md Q3's alerts and Q2's windows to Redis",
          "[e2e][redis][tools]") {
  t::TempDir dir("alerts-bench");
  t::OwnRedisServer server(dir.str());
  const t::RedisAddress a = server.address();

  // WORKLOAD.md Q3's table row, unpaced (the paced run is the same job).
  const std::string flags = "--seed 5 --meters 20000 --events 300000 --dup-ppm 20000";
  const nlohmann::json j = run_json(kBench + " alerts --redis " + a.host + ":" +
                                    std::to_string(a.port) + " --rate 0 " + flags);
  CHECK(j["alerts"].get<std::uint64_t>() == 31);
  CHECK(j["alert_digest"].get<std::uint64_t>() == 7974854313925049997ULL);
  CHECK(j["alert_latency_max_ms"].get<double>() >= j["alert_latency_p99_ms"].get<double>());

  ms::SmartMeterWorkload w;
  w.seed = 5;
  w.meters = 20000;
  w.events = 300000;
  w.dup_ppm = 20000;
  const std::vector<ms::MeterReading> events = ms::generate_smart_meter_events(w);
  ms::Q1Params q;
  q.dedup = true;
  const ms::Q1Totals expected = ms::run_q1_baseline(events, q);
  CHECK(j["windows"].get<std::uint64_t>() == expected.windows);
  CHECK(j["digest"].get<std::uint64_t>() == expected.digest);
  CHECK(j["duplicates_dropped"].get<std::uint64_t>() == expected.duplicates_dropped);

  t::RedisClient redis(a);
  // The alert:* keys, read from Redis: "<meter>:<seq>" -> "<ts_ms>,<voltage_dv>,<ingest_us>".
  std::uint64_t alerts = 0, alert_digest = 0;
  for (const auto& [id, content] : redis.dump("alert:")) {
    INFO("alert:" << id << " = " << content);
    REQUIRE(content.rfind("string ", 0) == 0);  // dump(): "<type> <value>"
    const std::vector<std::string> key = split(id, ':');
    const std::vector<std::string> v = split(content.substr(7), ',');
    REQUIRE(key.size() == 2);
    REQUIRE(v.size() == 3);
    CHECK(std::stoll(v[1]) < 2000);
    CHECK(std::stoll(v[2]) > 1600000000000000LL);  // a wall clock in microseconds
    ++alerts;
    alert_digest += ms::fmix64(ms::fmix64(ms::fmix64(std::stoull(key[0])) ^ std::stoull(key[1])) ^
                               static_cast<std::uint64_t>(std::stoll(v[0])));
  }
  CHECK(alerts == 31);
  CHECK(alert_digest == 7974854313925049997ULL);

  // The agg:* hashes: field <start> = "<count>,<sum_wh>,<min_v>,<max_v>".
  ms::Q1Totals got;
  for (const auto& [meter, content] : redis.dump("agg:")) {
    if (meter.find(':') != std::string::npos) continue;  // the upserts' version hashes
    std::vector<std::string> lines = split(content, '\n');  // dump(): "hash", then f=v
    REQUIRE(!lines.empty());
    REQUIRE(lines.front() == "hash");
    lines.erase(lines.begin());
    for (const std::string& line : lines) {
      const std::size_t eq = line.find('=');
      REQUIRE(eq != std::string::npos);
      const std::vector<std::string> v = split(line.substr(eq + 1), ',');
      INFO("agg:" << meter << " " << line);
      REQUIRE(v.size() == 4);
      got.add_window(std::stoull(meter), std::stoll(line.substr(0, eq)), std::stoull(v[0]),
                     std::stoull(v[1]), static_cast<std::uint32_t>(std::stoul(v[2])),
                     static_cast<std::uint32_t>(std::stoul(v[3])));
    }
  }
  CHECK(got.windows == expected.windows);
  CHECK(got.total_count == expected.total_count);
  CHECK(got.sum_wh == expected.sum_wh);
  CHECK(got.digest == expected.digest);
}
