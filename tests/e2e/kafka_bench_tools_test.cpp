// meterstream-bench's Kafka tools against the real broker: `produce` writes
// exactly the generator's events, keyed and partitioned as documented, and
// `verify` computes Q1's totals of a topic of output lines under
// read_committed (docs/kafka.md "Bench tools"). The topics are read back
// with the test helper's own librdkafka consumer.

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "bench/kafka_tools.hpp"
#include "common/kafka_broker.hpp"
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "meterstream/connectors/generator/meter_reading_codec.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"

namespace ms = meterstream;
namespace t = meterstream::test;

namespace {

const std::string kBench =
    std::string(MS_BINARY_DIR) + "/bench/meterstream-bench";

// Runs a command; returns its stdout and sets `*rc` to its exit status.
std::string run(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

nlohmann::json run_json(const std::string& cmd) {
  int rc = 0;
  const std::string out = run(cmd, &rc);
  INFO(cmd << "\nexit " << rc << ", stdout: " << out);
  REQUIRE(rc == 0);
  REQUIRE(!out.empty());
  REQUIRE(out.back() == '\n');
  REQUIRE(out.find('\n') == out.size() - 1);  // one line
  return nlohmann::json::parse(out);
}

ms::SmartMeterWorkload small_workload() {
  ms::SmartMeterWorkload w;
  w.seed = 3;
  w.meters = 40;
  w.hot_factor = 5;
  w.events = 5000;
  w.dup_ppm = 20000;
  w.late_ppm = 20000;
  w.anomaly_ppm = 5000;
  return w;
}

std::string workload_flags(const ms::SmartMeterWorkload& w) {
  return " --seed " + std::to_string(w.seed) + " --meters " +
         std::to_string(w.meters) + " --events " + std::to_string(w.events) +
         " --hot-factor " + std::to_string(w.hot_factor) + " --dup-ppm " +
         std::to_string(w.dup_ppm) + " --late-ppm " +
         std::to_string(w.late_ppm) + " --anomaly-ppm " +
         std::to_string(w.anomaly_ppm);
}

}  // namespace

TEST_CASE(
    "produce writes the generator's events, keyed, to their partitions in "
    "order",
    "[e2e][kafka][tools]") {
  const std::string brokers = t::kafka_brokers();
  const std::string topic = t::unique_kafka_name("produce");
  const ms::SmartMeterWorkload w = small_workload();
  constexpr int kPartitions = 3;

  const nlohmann::json result = run_json(
      kBench + " produce --brokers " + brokers + " --topic " + topic +
      " --partitions " + std::to_string(kPartitions) + workload_flags(w));
  CHECK(result["events"] == w.events);
  CHECK(result["topic"] == topic);
  CHECK(result["partitions"] == kPartitions);
  CHECK(result["events_per_s"].get<double>() > 0);

  // The generator's events, split by the documented partition of their key,
  // each partition in generator order.
  std::map<std::int32_t, std::vector<ms::MeterReading>> expected;
  for (const ms::MeterReading& r : ms::generate_smart_meter_events(w)) {
    expected[ms::bench::kafka_default_partition(
                 ms::encode_meter_key(r.meter_id), kPartitions)]
        .push_back(r);
  }
  REQUIRE(expected.size() == kPartitions);  // every partition gets events

  const auto records = t::consume_kafka_topic(
      brokers, topic, t::KafkaIsolation::kReadUncommitted);
  REQUIRE(records.size() == w.events);
  std::map<std::int32_t, std::vector<ms::MeterReading>> actual;
  std::uint64_t bad = 0;
  for (const t::KafkaReadRecord& rec : records) {
    ms::MeterReading r;
    std::uint64_t key_id = 0;
    if (!ms::decode_meter_reading(rec.value, &r) ||
        !ms::decode_meter_key(rec.key, &key_id) || key_id != r.meter_id ||
        rec.timestamp != r.ts_ms) {
      ++bad;
      continue;
    }
    actual[rec.partition].push_back(r);
  }
  CHECK(bad == 0);
  for (std::int32_t p = 0; p < kPartitions; ++p) {
    INFO("partition " << p);
    CHECK(actual[p].size() == expected[p].size());
    CHECK(actual[p] == expected[p]);
  }

  // Producing again to the same topic with another partition count is refused.
  int rc = 0;
  run(kBench + " produce --brokers " + brokers + " --topic " + topic +
          " --partitions 5 --events 10 2>&1",
      &rc);
  CHECK(rc == 2);
  ms::bench::ProduceOptions again;
  again.brokers = brokers;
  again.topic = topic;
  again.partitions = 5;
  again.workload.events = 10;
  const auto refused = ms::bench::produce_workload(again);
  CHECK(refused.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(refused.status().message().find(topic) != std::string::npos);
}

TEST_CASE("verify counts committed windows, repeats and undecodable records",
          "[e2e][kafka][tools]") {
  const std::string brokers = t::kafka_brokers();
  const std::string topic = t::unique_kafka_name("verify");
  t::create_kafka_topic(brokers, topic, 2);

  // Committed: windows a, b (with a trailing newline), a again, c; one bad
  // line and one empty value. Aborted: window d, which must not count.
  const std::vector<t::KafkaRawRecord> committed = {
      {"", "7,1700000040000,3,300,2250,2350", 0},
      {"", "8,1700000040000,2,120,1800,2300\n", 1},
      {"", "7,1700000040000,3,300,2250,2350", 1},
      {"", "9,1700000100000,1,55,2299,2299", 0},
      {"", "9,1700000100000,1,55", 0},
      {"", "", 1},
  };
  t::produce_kafka_transaction(brokers, t::unique_kafka_name("txid"), topic,
                               {committed.begin(), committed.begin() + 3},
                               t::KafkaTxnEnd::kCommit);
  t::produce_kafka_transaction(brokers, t::unique_kafka_name("txid"), topic,
                               {{"", "10,1700000100000,4,4000,2300,2300", 0}},
                               t::KafkaTxnEnd::kAbort);
  t::produce_kafka_transaction(brokers, t::unique_kafka_name("txid"), topic,
                               {committed.begin() + 3, committed.end()},
                               t::KafkaTxnEnd::kCommit);

  ms::Q1Totals expected;
  expected.add_window(7, 1700000040000, 3, 300, 2250, 2350);
  expected.add_window(8, 1700000040000, 2, 120, 1800, 2300);
  expected.add_window(7, 1700000040000, 3, 300, 2250, 2350);
  expected.add_window(9, 1700000100000, 1, 55, 2299, 2299);

  const nlohmann::json j =
      run_json(kBench + " verify --brokers " + brokers + " --topic " + topic);
  CHECK(j["windows"] == 4);
  CHECK(j["total_count"] == expected.total_count);
  CHECK(j["sum_wh"] == expected.sum_wh);
  CHECK(j["digest"] == expected.digest);
  CHECK(j["repeated"] == 1);
  CHECK(j["undecodable"] == 2);
  CHECK(j["records"] == 6);
  CHECK(j["partitions"] == 2);

  // A missing topic is a usage error naming it.
  int rc = 0;
  const std::string missing = t::unique_kafka_name("missing");
  const std::string out = run(
      kBench + " verify --brokers " + brokers + " --topic " + missing + " 2>&1",
      &rc);
  CHECK(rc == 2);
  CHECK(out.find(missing) != std::string::npos);
}

TEST_CASE(
    "verify waits for an open transaction, and says so when it outlasts the "
    "bound",
    "[e2e][kafka][tools]") {
  const std::string brokers = t::kafka_brokers();
  const std::string topic = t::unique_kafka_name("verify-open");
  t::create_kafka_topic(brokers, topic, 1);
  t::produce_kafka_transaction(brokers, t::unique_kafka_name("txid"), topic,
                               {{"", "1,0,1,1,1,1"}}, t::KafkaTxnEnd::kCommit);
  t::KafkaHandle open = t::produce_kafka_transaction(
      brokers, t::unique_kafka_name("txid"), topic, {{"", "2,0,1,1,1,1"}},
      t::KafkaTxnEnd::kLeaveOpen);

  ms::bench::VerifyOptions o;
  o.brokers = brokers;
  o.topic = topic;
  o.timeout = std::chrono::seconds(2);
  const auto held = ms::bench::verify_kafka_output(o);
  CHECK(held.status().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(held.status().message().find(topic) != std::string::npos);

  // Committed meanwhile: the end found at start is reached.
  rd_kafka_error_t* e = rd_kafka_commit_transaction(open.get(), 60000);
  INFO((e ? rd_kafka_error_string(e) : "committed"));
  REQUIRE(e == nullptr);
  o.timeout = std::chrono::seconds(60);
  const auto check = ms::bench::verify_kafka_output(o);
  REQUIRE(check.ok());
  CHECK(check->totals.windows == 2);
  CHECK(check->records == 2);
  CHECK(check->repeated == 0);
}
