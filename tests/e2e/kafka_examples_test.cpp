// The Kafka examples as a user runs them.
//
// examples/kafka_meter_aggregates.cpp: against
// the real broker (MS_KAFKA_BROKERS), on a topic that `meterstream-bench
// produce` filled with the workload and that holds a few undecodable records
// too, killed inside its first transaction commit and run again. The output
// topic, read under read_committed by `meterstream-bench verify` and by
// tests/e2e/kafka_verify.py, must be Q2's result (`meterstream-bench dedup`
// of the same workload), every window once; the dead-letter topic must name
// every undecodable record with its offset. And with --mock (no broker) the
// example runs end to end and says it is not exactly once there.
//
// examples/smart_meter --brokers B --topic T: on a one-partition topic written
// by `meterstream-bench produce`, the demo's totals are `meterstream-bench q1`
// (and, with --dedup, `dedup`) of the same workload.

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "common/kafka_broker.hpp"
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace t = meterstream::test;

namespace {

const std::string kBench =
    std::string(MS_BINARY_DIR) + "/bench/meterstream-bench";
const std::string kExample =
    std::string(MS_BINARY_DIR) + "/examples/kafka_meter_aggregates";

struct Run {
  std::string out;
  bool exited = false;
  int code = -1;   // when exited
  int signal = 0;  // when killed
};

// Runs a shell command; stdout captured, stderr passed through.
Run run(const std::string& cmd) {
  Run r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.exited = WIFEXITED(status);
  if (r.exited) r.code = WEXITSTATUS(status);
  // popen runs `sh -c`: a command killed by a signal shows as 128 + signal.
  if (r.exited && r.code > 128) r.signal = r.code - 128;
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

nlohmann::json run_json(const std::string& cmd) {
  const Run r = run(cmd);
  INFO(cmd << "\nexit " << r.code << ", stdout: " << r.out);
  REQUIRE(r.exited);
  REQUIRE(r.code == 0);
  return nlohmann::json::parse(r.out);
}

// The number after `label` in the example's summary ("  label   123").
long long summary_value(const std::string& out, const std::string& label) {
  const std::regex re("\\n  " + label + " +([0-9]+)");
  std::smatch m;
  INFO("summary line '" << label << "' in:\n" << out);
  REQUIRE(std::regex_search(out, m, re));
  return std::stoll(m[1].str());
}

const char* kWorkload =
    " --seed 7 --meters 300 --events 30000 --hot-factor 20 --dup-ppm 20000 "
    "--late-ppm 20000";

std::string temp_dir(const std::string& what) {
  const auto dir =
      std::filesystem::temp_directory_path() / t::unique_kafka_name(what);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace

TEST_CASE(
    "kafka_meter_aggregates writes Q2's windows exactly once and the "
    "undecodable records to "
    "the dead-letter topic, across a kill in the transaction commit",
    "[e2e][kafka][slow][tools]") {
  const std::string brokers = t::kafka_brokers();
  const std::string input = t::unique_kafka_name("agg-in");
  const std::string output = t::unique_kafka_name("agg-out");
  const std::string dead = t::unique_kafka_name("agg-dead");
  const std::string group = t::unique_kafka_name("agg-group");
  const std::string prefix = t::unique_kafka_name("agg-txn");
  const std::string checkpoints = temp_dir("agg-chk");
  // One input partition: late records are part of the test, and with one
  // partition which records are late does not depend on timing
  // (docs/kafka.md, determinism).
  t::create_kafka_topic(brokers, input, 1);
  t::create_kafka_topic(brokers, output, 3);
  t::create_kafka_topic(brokers, dead, 1);

  // Undecodable records before and after the workload: offsets 0, 1 and
  // 30000 + 2.
  t::produce_kafka_records(brokers, input,
                           {{"", "not a reading", 0, 1700000000000},
                            {"k", std::string(25, '\1'), 0, 1700000000000}});
  const nlohmann::json produced =
      run_json(kBench + " produce --brokers " + brokers + " --topic " + input +
               " --partitions 1" + kWorkload);
  REQUIRE(produced["events"] == 30000);
  t::produce_kafka_records(brokers, input,
                           {{"", std::string(27, 'x'), 0, 1700000000000}});
  const std::set<std::int64_t> bad_offsets = {0, 1, 30002};

  const std::string cmd = kExample + " --brokers " + brokers + " --input " +
                          input + " --output " + output + " --dead-letter " +
                          dead + " --group " + group + " --prefix " + prefix +
                          " --checkpoint-dir " + checkpoints +
                          " --bounded --threads 2 --checkpoint-interval-ms 300";
  // The first run kills itself inside its first commit_transaction (the
  // sink's test hook): that transaction is either committed or aborted, and
  // the restart must find out which from Kafka.
  const Run killed = run("MS_CHECKPOINT_KILL_AT=kafka-commit:1 " + cmd);
  INFO("first run:\n" << killed.out);
  REQUIRE(killed.signal == 9);
  const Run done = run(cmd);
  INFO("second run:\n" << done.out);
  REQUIRE(done.exited);
  REQUIRE(done.code == 0);
  CHECK(summary_value(done.out, "transactions committed") >= 1);

  // The windows: Q2 of the same workload, each once.
  const nlohmann::json want = run_json(kBench + " dedup" + kWorkload);
  const nlohmann::json got =
      run_json(kBench + " verify --brokers " + brokers + " --topic " + output);
  CHECK(got["repeated"] == 0);
  CHECK(got["undecodable"] == 0);
  for (const char* key : {"windows", "total_count", "sum_wh", "digest"}) {
    INFO(key);
    CHECK(got[key] == want[key]);
  }
  CHECK(got["records"] == want["windows"]);
  // The same, independently (confluent-kafka's own librdkafka).
  const std::string expect = checkpoints + "/verify.json";
  {
    FILE* f = std::fopen(expect.c_str(), "w");
    REQUIRE(f != nullptr);
    const std::string text = got.dump() + "\n";
    REQUIRE(std::fwrite(text.data(), 1, text.size(), f) == text.size());
    std::fclose(f);
  }
  const Run py = run("python3 " + std::string(MS_SOURCE_DIR) +
                     "/tests/e2e/kafka_verify.py --brokers " + brokers +
                     " --topic " + output + " --expect-json " + expect);
  INFO("kafka_verify.py: " << py.out);
  CHECK(py.exited);
  CHECK(py.code == 0);

  // The input offsets were committed to the group inside the transactions:
  // the last one is the end of the input.
  const auto committed = t::kafka_committed_offsets(brokers, group, input, {0});
  CHECK(committed.at(0).offset == 30003);

  // The dead-letter topic: every undecodable record, with its topic,
  // partition, offset and a reason (at least once: the killed run may have
  // written some already).
  const auto letters =
      t::consume_kafka_topic(brokers, dead, t::KafkaIsolation::kReadCommitted);
  std::map<std::int64_t, int> seen;
  const std::regex re("kafka " + input + "/0@([0-9]+): (.+)");
  for (const t::KafkaReadRecord& r : letters) {
    std::smatch m;
    INFO("dead letter '" << r.value << "', key '" << r.key << "'");
    REQUIRE(std::regex_match(r.value, m, re));
    const std::int64_t offset = std::stoll(m[1].str());
    CHECK(r.key == input + "/0@" + m[1].str());
    ++seen[offset];
  }
  std::set<std::int64_t> offsets;
  for (const auto& [offset, n] : seen) offsets.insert(offset);
  CHECK(offsets == bad_offsets);
  std::filesystem::remove_all(checkpoints);
}

TEST_CASE(
    "kafka_meter_aggregates --mock runs on the mock cluster and says it is not "
    "exactly once",
    "[e2e][kafka][tools]") {
  const std::string checkpoints = temp_dir("agg-mock");
  const Run r =
      run(kExample +
          " --mock --events 20000 --meters 100 --threads 2 --checkpoint-dir " +
          checkpoints);
  INFO(r.out);
  REQUIRE(r.exited);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("AT LEAST ONCE") != std::string::npos);
  // Dedup does not depend on how the 4 partitions interleave (a meter's
  // readings are all in one partition, in order): its count is Q2's.
  const nlohmann::json want =
      run_json(kBench + " dedup --meters 100 --events 20000");
  CHECK(summary_value(r.out, "events") == 20000);
  CHECK(summary_value(r.out, "undecodable") == 3);
  CHECK(summary_value(r.out, "duplicates") ==
        want["duplicates_dropped"].get<long long>());
  CHECK(summary_value(r.out, "transactions committed") == 0);
  CHECK(summary_value(r.out, "windows") > 0);
  std::filesystem::remove_all(checkpoints);
}

TEST_CASE(
    "smart_meter --brokers --topic reads a produced topic and prints the "
    "generator's Q1 and Q2",
    "[e2e][kafka][tools]") {
  const std::string brokers = t::kafka_brokers();
  const std::string topic = t::unique_kafka_name("demo-in");
  const std::string workload =
      " --seed 11 --meters 400 --events 40000 --hot-factor 30";
  run_json(kBench + " produce --brokers " + brokers + " --topic " + topic +
           " --partitions 1" + workload);
  const std::string demo = std::string(MS_BINARY_DIR) +
                           "/examples/smart_meter --brokers " + brokers +
                           " --topic " + topic + " --threads 2";
  for (const bool dedup : {false, true}) {
    INFO("dedup " << dedup);
    const Run r = run(demo + (dedup ? " --dedup" : ""));
    INFO(r.out);
    REQUIRE(r.exited);
    REQUIRE(r.code == 0);
    const nlohmann::json want =
        run_json(kBench + (dedup ? " dedup" : " q1") + workload);
    CHECK(summary_value(r.out, "events") == 40000);
    CHECK(summary_value(r.out, "windows") == want["windows"].get<long long>());
    CHECK(summary_value(r.out, "late") ==
          want["late_dropped"].get<long long>());
    CHECK(summary_value(r.out, "total_count") ==
          want["total_count"].get<long long>());
    CHECK(std::to_string(summary_value(r.out, "sum_wh")) ==
          want["sum_wh"].dump());
    CHECK(r.out.find("  digest        " + want["digest"].dump() + "\n") !=
          std::string::npos);
    if (dedup) {
      CHECK(summary_value(r.out, "duplicates") ==
            want["duplicates_dropped"].get<long long>());
    }
  }
}
