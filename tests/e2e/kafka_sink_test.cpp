// The Kafka sink against a real broker (MS_KAFKA_BROKERS): exactly-once Q1
// output across failures and restores, fencing, the lease, option errors,
// at-least-once delivery, an oversized message.
#include "meterstream/connectors/kafka/kafka_sink.hpp"

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/checkpoint_jobs.hpp"
#include "e2e/kafka_sink_util.hpp"
#include <catch2/catch.hpp>

namespace meterstream::test {
namespace {

KafkaSinkOptions eo_options(const std::string& topic,
                            const std::string& prefix) {
  KafkaSinkOptions o;
  o.brokers = kafka_brokers();
  o.topic = topic;
  o.delivery = KafkaDelivery::kExactlyOnce;
  o.transactional_id_prefix = prefix;
  o.transaction_timeout = std::chrono::seconds(20);
  o.connect_timeout = std::chrono::seconds(20);
  return o;
}

JobOptions checkpointed(const std::string& dir, int threads,
                        RestoreFrom restore = RestoreFrom::latest()) {
  JobOptions o;
  o.parallelism = threads;
  o.checkpoint =
      enable_checkpointing(std::chrono::milliseconds(100), local_storage(dir));
  o.checkpoint.restore = restore;
  return o;
}

// Q1 of `row` over a paced source, each window a message of `sink`; the map
// throws once `*fail_after` reaches 0 (a failure while processing).
Pipeline q1_to_kafka(const WorkloadRow& row, const Pace& pace,
                     std::shared_ptr<Sink<std::string>> sink,
                     std::shared_ptr<std::atomic<std::int64_t>> fail_after) {
  const Q1Params q = row.params();
  Pipeline p;
  p.source(paced_source(row_events(row), pace))
      .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                           std::chrono::milliseconds(q.bound_ms))
                           .with_emit_every(q.wm_every),
                       &MeterReading::ts_ms)
      .key_by(&MeterReading::meter_id)
      .window(tumbling(std::chrono::milliseconds(q.window_ms)))
      .aggregate(Q1Aggregate{})
      .map([fail_after](const Q1Result& r) {
        if (fail_after && fail_after->fetch_sub(1) == 1) {
          throw std::runtime_error("injected failure while processing");
        }
        return q1_result_line(r);
      })
      .sink(sink);
  return p;
}

std::shared_ptr<Sink<std::string>> string_sink(const KafkaSinkOptions& o) {
  return kafka_sink<std::string>(o, [](const std::string& s) { return s; });
}

// Q1 over the messages of `topic` (read_committed), through check_q1_output.
bench::OutputCheck check_topic(const std::string& topic,
                               const std::string& dir) {
  const std::vector<std::string> lines = read_topic(kafka_brokers(), topic);
  fs::create_directories(dir);
  {
    std::ofstream out(dir + "/all.csv");
    for (const std::string& l : lines) out << l << '\n';
  }
  StatusOr<bench::OutputCheck> c = bench::check_q1_output(dir);
  REQUIRE(c.ok());
  return *c;
}

void require_start_error(const Pipeline& p, const JobOptions& o,
                         absl::StatusCode code,
                         const std::vector<std::string>& words) {
  StatusOr<Job> job = p.build(o);
  REQUIRE(job.ok());
  const Status s = job->start();
  INFO(s.ToString());
  REQUIRE(s.code() == code);
  for (const std::string& w : words)
    CHECK(s.message().find(w) != std::string_view::npos);
}

}  // namespace

TEST_CASE(
    "kafka sink exactly once: Q1 windows once across a cancel and a failure "
    "and restores",
    "[kafka][slow]") {
  const WorkloadRow& row = kQ1Rows[0];
  TempDir tmp;
  const std::string topic = unique_topic("eo-q1");
  create_topic(kafka_brokers(), topic, 3);
  const KafkaSinkOptions o = eo_options(topic, topic + "-job");
  Pace pace;

  {  // Run 1: cancelled (as a crash) after 2 checkpoints.
    Pipeline p = q1_to_kafka(row, pace, string_sink(o), nullptr);
    Job job = build_job(p, checkpointed(tmp.str("chk"), 2));
    const CutRun cut = run_and_cancel(job, 2, 20000);
    CHECK(cut.metrics.at("kafka_sink_transactions_committed") >= 2);
  }
  {  // Run 2: restored, then a failure while processing (other thread count).
    auto fail_after = std::make_shared<std::atomic<std::int64_t>>(5000);
    Pipeline p = q1_to_kafka(row, pace, string_sink(o), fail_after);
    Job job = build_job(p, checkpointed(tmp.str("chk"), 3));
    const Status s = job.run();
    INFO(s.ToString());
    REQUIRE(!s.ok());
    CHECK(s.message().find("injected failure") != std::string_view::npos);
  }
  {  // Run 3: restored, to the end.
    pace.slow->store(false);
    Pipeline p = q1_to_kafka(row, pace, string_sink(o), nullptr);
    const auto m = run_to_end(p, checkpointed(tmp.str("chk"), 1));
    CHECK(m.at("kafka_sink_transactions_committed") >= 1);
  }
  const bench::OutputCheck c = check_topic(topic, tmp.str("out"));
  CHECK(c.repeated == 0);
  CHECK(c.malformed == 0);
  CHECK(c.totals.windows == row.expected.windows);
  CHECK(c.totals.total_count == row.expected.total_count);
  CHECK(c.totals.sum_wh == row.expected.sum_wh);
  CHECK(c.totals.digest == row.expected.digest);
}

TEST_CASE("kafka sink exactly once: a restarted job fences its zombie",
          "[kafka][slow]") {
  const WorkloadRow& row = kQ1Rows[0];
  TempDir tmp;
  const std::string topic = unique_topic("eo-zombie");
  create_topic(kafka_brokers(), topic, 2);
  KafkaSinkOptions o = eo_options(topic, topic + "-job");
  o.lease = false;  // the zombie does not know it is one
  Pace slow;
  slow.pause = std::chrono::microseconds(3000);
  Pipeline zombie_p = q1_to_kafka(row, slow, string_sink(o), nullptr);
  Job zombie = build_job(zombie_p, checkpointed(tmp.str("chk-zombie"), 2));
  REQUIRE(zombie.start().ok());
  while (zombie.metrics()["kafka_sink_transactions_committed"] < 2) {
    REQUIRE(!zombie.finished());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // The new incarnation (its own checkpoints, from scratch) takes the ids.
  Pace fast;
  fast.slow->store(false);
  Pipeline p = q1_to_kafka(row, fast, string_sink(o), nullptr);
  Job job = build_job(p, checkpointed(tmp.str("chk"), 2, RestoreFrom::none()));
  REQUIRE(job.start().ok());
  const Status zs = zombie.wait();
  INFO("zombie: " << zs.ToString());
  REQUIRE(!zs.ok());
  CHECK(zs.message().find(topic) != std::string_view::npos);
  const Status s = job.wait();
  INFO(s.ToString());
  REQUIRE(s.ok());
}

TEST_CASE(
    "kafka sink exactly once: a second live job with the same prefix is "
    "refused",
    "[kafka][slow]") {
  const WorkloadRow& row = kQ1Rows[0];
  TempDir tmp;
  const std::string topic = unique_topic("eo-lease");
  create_topic(kafka_brokers(), topic, 1);
  const KafkaSinkOptions o = eo_options(topic, topic + "-job");
  Pace pace;
  Pipeline first_p = q1_to_kafka(row, pace, string_sink(o), nullptr);
  Job first = build_job(first_p, checkpointed(tmp.str("chk-1"), 2));
  REQUIRE(first.start().ok());

  Pipeline second_p = q1_to_kafka(row, pace, string_sink(o), nullptr);
  require_start_error(second_p, checkpointed(tmp.str("chk-2"), 2),
                      absl::StatusCode::kFailedPrecondition,
                      {"another job", topic + "-job.lease"});
  // The first job was not disturbed.
  pace.slow->store(false);
  const Status s = first.wait();
  INFO(s.ToString());
  REQUIRE(s.ok());
  const bench::OutputCheck c = check_topic(topic, tmp.str("out"));
  CHECK(c.repeated == 0);
  CHECK(c.totals.digest == row.expected.digest);
}

TEST_CASE("kafka sink: options are checked at start", "[kafka]") {
  TempDir tmp;
  KafkaSinkOptions o;
  o.brokers = "127.0.0.1:1";  // never contacted: the options fail first
  o.topic = "out";
  o.delivery = KafkaDelivery::kExactlyOnce;
  auto pipeline = [&](const KafkaSinkOptions& opts) {
    Pipeline p;
    p.source(from_vector(std::vector<std::string>{"a", "b"}))
        .sink(string_sink(opts));
    return p;
  };
  JobOptions every_10s = checkpointed(tmp.str("chk"), 1);
  every_10s.checkpoint.interval = std::chrono::seconds(10);

  SECTION("exactly once needs a transactional id prefix") {
    require_start_error(pipeline(o), every_10s,
                        absl::StatusCode::kInvalidArgument,
                        {"transactional_id_prefix"});
  }
  SECTION("the prefix's characters are checked") {
    o.transactional_id_prefix = "job one";
    require_start_error(pipeline(o), every_10s,
                        absl::StatusCode::kInvalidArgument,
                        {"'job one'", "[A-Za-z0-9._-]"});
  }
  SECTION(
      "a transaction timeout too short for the checkpoint interval is "
      "refused") {
    o.transactional_id_prefix = "job";
    o.transaction_timeout = std::chrono::seconds(15);
    require_start_error(
        pipeline(o), every_10s, absl::StatusCode::kInvalidArgument,
        {"transaction_timeout 15000 ms", "10000 ms", "20000 ms"});
  }
  SECTION("exactly once needs checkpointing") {
    o.transactional_id_prefix = "job";
    JobOptions none;
    none.parallelism = 1;
    require_start_error(pipeline(o), none, absl::StatusCode::kInvalidArgument,
                        {"needs checkpointing"});
  }
  SECTION("a bad librdkafka property is named with librdkafka's message") {
    o.transactional_id_prefix = "job";
    o.transaction_timeout = std::chrono::seconds(60);
    o.properties["linger.ms"] = "banana";
    require_start_error(pipeline(o), every_10s,
                        absl::StatusCode::kInvalidArgument,
                        {"'linger.ms'", "banana", "Invalid value"});
  }
  SECTION("an unknown librdkafka property is named") {
    o.delivery = KafkaDelivery::kAtLeastOnce;
    o.properties["no.such.property"] = "1";
    require_start_error(
        pipeline(o), every_10s, absl::StatusCode::kInvalidArgument,
        {"'no.such.property'", "No such configuration property"});
  }
}

TEST_CASE(
    "kafka sink: an unreachable broker and a missing topic fail the start",
    "[kafka]") {
  TempDir tmp;
  KafkaSinkOptions o;
  o.delivery = KafkaDelivery::kAtLeastOnce;
  o.connect_timeout = std::chrono::seconds(2);
  auto pipeline = [&] {
    Pipeline p;
    p.source(from_vector(std::vector<std::string>{"a"})).sink(string_sink(o));
    return p;
  };
  SECTION("unreachable") {
    o.brokers = "127.0.0.1:1";
    o.topic = "out";
    require_start_error(pipeline(), checkpointed(tmp.str("chk"), 1),
                        absl::StatusCode::kUnavailable,
                        {"127.0.0.1:1", "2000 ms"});
  }
  SECTION("missing topic") {
    o.brokers = kafka_brokers();
    o.topic = unique_topic("no-such-topic");
    require_start_error(pipeline(), checkpointed(tmp.str("chk"), 1),
                        absl::StatusCode::kNotFound,
                        {o.topic, "does not exist"});
  }
}

TEST_CASE(
    "kafka sink at least once delivers every record with keys and headers",
    "[kafka]") {
  TempDir tmp;
  const std::string topic = unique_topic("alo");
  create_topic(kafka_brokers(), topic, 4);
  KafkaSinkOptions o;
  o.brokers = kafka_brokers();
  o.topic = topic;
  o.delivery = KafkaDelivery::kAtLeastOnce;
  o.partitioner = [](std::string_view key, int partitions) {
    return static_cast<int>(std::stoi(std::string(key)) % partitions);
  };
  std::vector<std::int64_t> values;
  for (std::int64_t i = 0; i < 20000; ++i) values.push_back(i);
  Pipeline p;
  p.source(from_vector(values, 2))
      .sink(kafka_sink<std::int64_t>(o, [](std::int64_t v) {
        KafkaRecord r;
        r.key = std::to_string(v);
        r.has_key = true;
        r.value = "v" + std::to_string(v);
        r.headers.push_back({"source", "test"});
        return r;
      }));
  const auto m = run_to_end(p, checkpointed(tmp.str("chk"), 2));
  CHECK(m.at("kafka_sink_produce_errors") == 0);
  std::vector<std::string> got =
      read_topic(kafka_brokers(), topic, /*committed=*/false);
  std::multiset<std::string> seen(got.begin(), got.end());
  REQUIRE(got.size() == values.size());
  for (std::int64_t v : values) CHECK(seen.count("v" + std::to_string(v)) == 1);
}

TEST_CASE(
    "kafka sink exactly once: an oversized message fails the job and a raised "
    "limit loses "
    "nothing",
    "[kafka][slow]") {
  TempDir tmp;
  const std::string topic = unique_topic("eo-big");
  create_topic(kafka_brokers(), topic, 1);
  KafkaSinkOptions o = eo_options(topic, topic + "-job");
  o.properties["message.max.bytes"] = "4000";
  std::vector<std::string> values;
  for (int i = 0; i < 3000; ++i) values.push_back(std::to_string(i));
  values[2500] = std::string(10000, 'x');
  auto pipeline = [&](const KafkaSinkOptions& opts) {
    Pipeline p;
    p
        .source(paced_source(
            std::make_shared<const std::vector<std::string>>(values), Pace{}))
        .sink(string_sink(opts));
    return p;
  };
  {
    Pipeline p = pipeline(o);
    Job job = build_job(p, checkpointed(tmp.str("chk"), 1));
    const Status s = job.run();
    INFO(s.ToString());
    REQUIRE(!s.ok());
    CHECK(s.message().find(topic) != std::string_view::npos);
    CHECK(s.message().find("10000 bytes") != std::string_view::npos);
  }
  o.properties["message.max.bytes"] = "20000";
  {
    Pipeline p = pipeline(o);
    (void)run_to_end(p, checkpointed(tmp.str("chk"), 1));
  }
  const std::vector<std::string> got = read_topic(kafka_brokers(), topic);
  std::multiset<std::string> seen(got.begin(), got.end());
  CHECK(got.size() == values.size());
  for (const std::string& v : values) CHECK(seen.count(v) == 1);
}

}  // namespace meterstream::test
