// The Kafka source (connectors/kafka/kafka_source.hpp) against librdkafka's
// mock cluster: records produced with a plain producer, read through the DSL,
// results compared exactly with the in-memory reference.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "bench/q1_baseline.hpp"
#include "bench/q1_pipeline.hpp"
#include "common/checkpoint_jobs.hpp"
#include "common/kafka_source_util.hpp"
#include "common/temp_dir.hpp"
#include "meterstream/connectors/generator/meter_reading_codec.hpp"
#include "meterstream/connectors/kafka/kafka_json.hpp"
#include "meterstream/connectors/kafka/kafka_mock_cluster.hpp"
#include "meterstream/connectors/kafka/kafka_source.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

ms::KafkaSourceOptions options_for(const ms::KafkaMockCluster& cluster, const std::string& topic) {
  ms::KafkaSourceOptions o;
  o.brokers = cluster.bootstrap_servers();
  o.topics = {topic};
  o.bounded = true;
  return o;
}

// A fresh topic with `partitions` partitions filled with `messages`.
void fill(ms::KafkaMockCluster& cluster, const std::string& topic, int partitions,
          const std::vector<ms::KafkaMessage>& messages) {
  ms::Status s = cluster.create_topic(topic, partitions);
  INFO(s.ToString());
  REQUIRE(s.ok());
  s = cluster.produce(topic, messages);
  INFO(s.ToString());
  REQUIRE(s.ok());
}

ms::Q1Params q1_params() {
  ms::Q1Params q;
  q.wm_every = 1000;
  return q;
}

// Runs Q1 over a bounded Kafka source to the end; returns its totals.
ms::Q1Totals run_q1(const ms::KafkaSourceOptions& o, int threads,
                    std::map<std::string, std::int64_t>* metrics = nullptr) {
  ms::Pipeline p;
  auto sink = std::make_shared<mt::TotalsSink>();
  mt::q1_windows(p.source(ms::kafka_source<ms::MeterReading>(o, ms::kafka_meter_reading())),
                 q1_params())
      .sink(sink);
  ms::JobOptions jo;
  jo.parallelism = threads;
  auto m = mt::run_to_end(p, jo);
  if (metrics != nullptr) *metrics = m;
  return sink->totals();
}

void check_totals(const ms::Q1Totals& got, const ms::Q1Totals& want) {
  CHECK(got.windows == want.windows);
  CHECK(got.total_count == want.total_count);
  CHECK(got.sum_wh == want.sum_wh);
  CHECK(got.digest == want.digest);
}

// Job::start()'s error for a source with options `o`.
ms::Status start_error(const ms::KafkaSourceOptions& o) {
  ms::Pipeline p;
  std::vector<ms::KafkaRecord> out;
  p.source(ms::kafka_source(o, ms::kafka_raw())).sink(ms::collect_into(out));
  ms::StatusOr<ms::Job> job = p.build();
  REQUIRE(job.ok());
  return job->run();
}

}  // namespace

TEST_CASE("Q1 from a 4-partition topic equals the in-memory result on 1 to 3 threads",
          "[kafka]") {
  auto cluster = mt::mock_cluster();
  const auto events = mt::kafka_workload(1, 1000, 100000, 0);
  fill(*cluster, "readings", 4, mt::as_messages(events, 4));
  const ms::Q1Totals want = ms::run_q1_baseline(events, q1_params());
  REQUIRE(want.total_count == events.size());  // --late-ppm 0: nothing late
  for (int threads : {1, 2, 3}) {
    INFO("threads " << threads);
    std::map<std::string, std::int64_t> m;
    check_totals(run_q1(options_for(*cluster, "readings"), threads, &m), want);
    CHECK(m["source_records"] == static_cast<std::int64_t>(events.size()));
    CHECK(m["source_undecodable"] == 0);
  }
}

TEST_CASE("explicit partitions read only those partitions, raw records keep their metadata",
          "[kafka]") {
  auto cluster = mt::mock_cluster();
  std::vector<ms::KafkaMessage> msgs;
  for (int i = 0; i < 30; ++i) {
    ms::KafkaMessage m;
    m.key = "k" + std::to_string(i);
    m.value = "v" + std::to_string(i);
    m.partition = i % 3;
    m.timestamp_ms = 1700000000000 + i;
    msgs.push_back(m);
  }
  fill(*cluster, "raw", 3, msgs);
  ms::KafkaSourceOptions o = options_for(*cluster, "raw");
  o.topics.clear();
  o.partitions = {{"raw", 2}, {"raw", 0}};
  ms::Pipeline p;
  std::vector<ms::KafkaRecord> out;
  p.source(ms::kafka_source(o, ms::kafka_raw())).sink(ms::collect_into(out));
  ms::JobOptions jo;
  jo.parallelism = 2;
  mt::run_to_end(p, jo);
  REQUIRE(out.size() == 20);
  std::set<std::string> values;
  for (const ms::KafkaRecord& r : out) {
    CHECK(r.topic == "raw");
    REQUIRE(r.partition != 1);
    const int i = std::stoi(r.value.substr(1));
    CHECK(i % 3 == r.partition);
    CHECK(r.key == "k" + std::to_string(i));
    CHECK(r.offset == i / 3);  // the partition's i/3-th record
    CHECK(r.timestamp_ms == 1700000000000 + i);
    values.insert(r.value);
  }
  CHECK(values.size() == 20);
}

TEST_CASE("start at latest in bounded mode reads nothing, and the job ends", "[kafka]") {
  auto cluster = mt::mock_cluster();
  const auto events = mt::kafka_workload(1, 100, 2000, 0);
  fill(*cluster, "latest", 2, mt::as_messages(events, 2));
  ms::KafkaSourceOptions o = options_for(*cluster, "latest");
  o.start = ms::KafkaStartOffset::latest();
  std::map<std::string, std::int64_t> m;
  const ms::Q1Totals t = run_q1(o, 2, &m);
  CHECK(t.windows == 0);
  CHECK(m["source_records"] == 0);
}

TEST_CASE("offsets are committed to the group after checkpoints, and committed() resumes there",
          "[kafka]") {
  auto cluster = mt::mock_cluster();
  const auto first = mt::kafka_workload(1, 100, 6000, 0);
  fill(*cluster, "grouped", 3, mt::as_messages(first, 3));
  ms::KafkaSourceOptions o = options_for(*cluster, "grouped");
  o.group_id = "q1-job";
  o.start = ms::KafkaStartOffset::committed();
  mt::TempDir first_dir("kafka-commit"), second_dir("kafka-commit");

  auto run = [&](const mt::TempDir& dir, std::int64_t expect_records) {
    ms::Pipeline p;
    std::vector<ms::MeterReading> out;
    p.source(ms::kafka_source<ms::MeterReading>(o, ms::kafka_meter_reading()))
        .sink(ms::collect_into(out));
    ms::JobOptions jo;
    jo.parallelism = 2;
    jo.checkpoint = ms::enable_checkpointing(20ms, mt::local_storage(dir.str("chk")));
    auto m = mt::run_to_end(p, jo);
    CHECK(m["source_records"] == expect_records);
    return out;
  };
  // The first run reads everything and commits the end offsets with its
  // final checkpoint.
  CHECK(run(first_dir, static_cast<std::int64_t>(first.size())).size() == first.size());
  // More records arrive; a new job (no checkpoint restored: a fresh
  // folder) starts at the committed offsets and reads only them.
  const auto more = mt::kafka_workload(2, 100, 900, 0);
  REQUIRE(cluster->produce("grouped", mt::as_messages(more, 3)).ok());
  const auto second = run(second_dir, static_cast<std::int64_t>(more.size()));
  std::multiset<std::uint64_t> got, want;
  for (const auto& r : second) got.insert(r.meter_id * 1000003 + r.seq);
  for (const auto& r : more) want.insert(r.meter_id * 1000003 + r.seq);
  CHECK(got.size() == want.size());
  CHECK((got == want));
}

TEST_CASE("a checkpointed Kafka job cut and restored writes every Q1 window exactly once",
          "[kafka]") {
  auto cluster = mt::mock_cluster();
  const auto events = mt::kafka_workload(1, 1000, 60000, 0);
  fill(*cluster, "cut", 3, mt::as_messages(events, 3));
  const ms::Q1Totals want = ms::run_q1_baseline(events, q1_params());
  mt::TempDir dir("kafka-cut");
  auto slow = std::make_shared<std::atomic<bool>>(true);
  auto count = std::make_shared<std::atomic<std::uint64_t>>(0);

  auto pipeline = [&](int threads) {
    (void)threads;
    ms::Pipeline p;
    const ms::Q1Params q = q1_params();
    p.source(ms::kafka_source<ms::MeterReading>(options_for(*cluster, "cut"),
                                                ms::kafka_meter_reading()))
        .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(
                             std::chrono::milliseconds(q.bound_ms))
                             .with_emit_every(q.wm_every),
                         &ms::MeterReading::ts_ms)
        .map([slow, count](const ms::MeterReading& r) {
          // About 0.6 s for the whole input while slow: time for checkpoints.
          if (slow->load() && count->fetch_add(1) % 100 == 99) std::this_thread::sleep_for(1ms);
          return r;
        })
        .key_by(&ms::MeterReading::meter_id)
        .window(ms::tumbling(std::chrono::milliseconds(q.window_ms)))
        .aggregate(ms::Q1Aggregate{})
        .map(ms::q1_result_line)
        .sink(mt::line_sink(dir.str("out")));
    return p;
  };
  auto job_options = [&](int threads) {
    ms::JobOptions jo;
    jo.parallelism = threads;
    jo.checkpoint = ms::enable_checkpointing(30ms, mt::local_storage(dir.str("chk")));
    jo.checkpoint.restore = ms::RestoreFrom::latest();
    return jo;
  };
  {
    ms::Job job = mt::build_job(pipeline(2), job_options(2));
    mt::run_and_cancel(job, 3, static_cast<std::int64_t>(events.size() / 4));
  }
  slow->store(false);
  // Records appended after the first start are past the bounded end that the
  // checkpoint keeps: the restored job must not read them.
  REQUIRE(cluster->produce("cut", mt::as_messages(mt::kafka_workload(9, 1000, 3000, 0), 3)).ok());
  // Restored on another thread count: the partitions' offsets come back.
  auto m = mt::run_to_end(pipeline(3), job_options(3));
  CHECK(m["source_records"] < static_cast<std::int64_t>(events.size()));
  mt::check_q1_committed(dir.str("out"), want);
}

TEST_CASE("undecodable records go to the side output with topic, partition, offset and reason",
          "[kafka]") {
  auto cluster = mt::mock_cluster();
  const auto events = mt::kafka_workload(1, 50, 500, 0);
  auto msgs = mt::as_messages(events, 2);
  // Every 100th record is cut short.
  std::set<std::pair<int, std::int64_t>> bad;
  std::vector<std::int64_t> next_offset(2, 0);
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const int part = msgs[i].partition;
    if (i % 100 == 7) {
      msgs[i].value.resize(5);
      bad.insert({part, next_offset[static_cast<std::size_t>(part)]});
    }
    ++next_offset[static_cast<std::size_t>(part)];
  }
  fill(*cluster, "dirty", 2, msgs);
  ms::Pipeline p;
  std::vector<ms::MeterReading> good;
  std::vector<std::string> dead;
  auto src = p.source(ms::kafka_source<ms::MeterReading>(options_for(*cluster, "dirty"),
                                                         ms::kafka_meter_reading()));
  src.undecodable().sink(ms::collect_into(dead));
  src.sink(ms::collect_into(good));
  ms::JobOptions jo;
  jo.parallelism = 2;
  auto m = mt::run_to_end(p, jo);
  CHECK(good.size() + dead.size() == msgs.size());
  CHECK(dead.size() == bad.size());
  CHECK(m["source_undecodable"] == static_cast<std::int64_t>(bad.size()));
  std::set<std::pair<int, std::int64_t>> seen;
  for (const std::string& d : dead) {
    INFO(d);
    // "kafka dirty/<partition>@<offset>: a MeterReading is 26 bytes, got 5"
    REQUIRE(d.rfind("kafka dirty/", 0) == 0);
    CHECK(d.find("26 bytes, got 5") != std::string::npos);
    const auto slash = d.find('/');
    const auto at = d.find('@');
    const auto colon = d.find(':');
    seen.insert({std::stoi(d.substr(slash + 1, at - slash - 1)),
                 std::stoll(d.substr(at + 1, colon - at - 1))});
  }
  CHECK(seen == bad);
}

namespace {
struct Reading {
  std::uint64_t meter = 0;
  std::int64_t ts = 0;
};
void from_json(const nlohmann::json& j, Reading& r) {
  j.at("meter").get_to(r.meter);
  j.at("ts").get_to(r.ts);
}
}  // namespace

TEST_CASE("JSON records decode through from_json, and bad JSON is undecodable", "[kafka]") {
  auto cluster = mt::mock_cluster();
  std::vector<ms::KafkaMessage> msgs(4);
  msgs[0].value = R"({"meter": 7, "ts": 1000})";
  msgs[1].value = "not json";
  msgs[2].value = R"({"meter": "x", "ts": 5})";
  msgs[3].value = R"({"meter": 9, "ts": 2000})";
  for (auto& m : msgs) m.partition = 0;
  fill(*cluster, "json", 1, msgs);
  ms::Pipeline p;
  std::vector<Reading> good;
  std::vector<std::string> dead;
  auto src = p.source(ms::kafka_source(options_for(*cluster, "json"), ms::kafka_json<Reading>()));
  src.undecodable().sink(ms::collect_into(dead));
  src.sink(ms::collect_into(good));
  mt::run_to_end(p, ms::JobOptions{});
  REQUIRE(good.size() == 2);
  CHECK(good[0].meter == 7);
  CHECK(good[1].ts == 2000);
  REQUIRE(dead.size() == 2);
  CHECK(dead[0].rfind("kafka json/0@1: not JSON", 0) == 0);
  CHECK(dead[1].rfind("kafka json/0@2: JSON does not convert", 0) == 0);
}

TEST_CASE("an idle partition stops holding the watermark back with idleness", "[kafka]") {
  auto cluster = mt::mock_cluster();
  // Readings go to partition 0 only; partition 1 stays empty.
  const auto events = mt::kafka_workload(1, 10, 2000, 0);
  auto msgs = mt::as_messages(events, 1);
  REQUIRE(cluster->create_topic("idle", 2).ok());
  ms::KafkaSourceOptions o = options_for(*cluster, "idle");
  o.bounded = false;  // the empty partition never ends
  ms::Pipeline p;
  auto sink = std::make_shared<mt::TotalsSink>();
  ms::Q1Params q = q1_params();
  q.bound_ms = 0;
  q.wm_every = 10;
  mt::q1_windows(p.source(ms::kafka_source<ms::MeterReading>(o, ms::kafka_meter_reading())), q,
                 100ms)
      .sink(sink);
  ms::JobOptions jo;
  jo.parallelism = 1;
  ms::Job job = mt::build_job(p, jo);
  REQUIRE(job.start().ok());
  // Readings trickle into partition 0 while the job runs, so that it is
  // active after the empty partition went idle: windows then fire. (Without
  // idleness partition 1 would hold the watermark at its minimum forever;
  // when both are idle at once nothing advances it either.)
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  std::size_t next = 0;
  while (sink->windows() == 0 && std::chrono::steady_clock::now() < deadline &&
         !job.finished() && next < msgs.size()) {
    const std::size_t n = std::min<std::size_t>(50, msgs.size() - next);
    REQUIRE(cluster->produce("idle", std::vector<ms::KafkaMessage>(
                                         msgs.begin() + static_cast<std::ptrdiff_t>(next),
                                         msgs.begin() + static_cast<std::ptrdiff_t>(next + n)))
                .ok());
    next += n;
    std::this_thread::sleep_for(20ms);
  }
  while (sink->windows() == 0 && std::chrono::steady_clock::now() < deadline && !job.finished()) {
    std::this_thread::sleep_for(10ms);
  }
  const std::uint64_t fired = sink->windows();
  const bool ended_early = job.finished();
  job.cancel();
  const ms::Status s = job.wait();
  INFO(s.ToString());
  CHECK(!ended_early);
  CHECK(s.code() == absl::StatusCode::kCancelled);
  CHECK(fired > 0);
}

TEST_CASE("an unreachable broker fails the start after the connect timeout, naming it",
          "[kafka]") {
  ms::KafkaSourceOptions o;
  o.brokers = "127.0.0.1:1";
  o.topics = {"t"};
  o.connect_timeout = 500ms;
  const ms::Status s = start_error(o);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(s.message()).find("127.0.0.1:1") != std::string::npos);
  CHECK(std::string(s.message()).find("500 ms") != std::string::npos);
}

TEST_CASE("a missing topic or partition fails the start, naming it", "[kafka]") {
  auto cluster = mt::mock_cluster();
  REQUIRE(cluster->create_topic("present", 2).ok());
  ms::KafkaSourceOptions o = options_for(*cluster, "absent");
  ms::Status s = start_error(o);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kNotFound);
  CHECK(std::string(s.message()).find("'absent'") != std::string::npos);

  o.topics.clear();
  o.partitions = {{"present", 1}, {"present", 5}};
  s = start_error(o);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kNotFound);
  CHECK(std::string(s.message()).find("present-5") != std::string::npos);
}

TEST_CASE("a bad librdkafka property fails the start with the property and librdkafka's message",
          "[kafka]") {
  auto cluster = mt::mock_cluster();
  REQUIRE(cluster->create_topic("t", 1).ok());
  ms::KafkaSourceOptions o = options_for(*cluster, "t");
  o.properties["no.such.property"] = "1";
  ms::Status s = start_error(o);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("no.such.property") != std::string::npos);
  CHECK(std::string(s.message()).find("No such configuration property") != std::string::npos);

  o.properties.clear();
  o.properties["fetch.max.bytes"] = "lots";
  s = start_error(o);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("fetch.max.bytes") != std::string::npos);

  o.properties.clear();
  o.properties["group.id"] = "mine";
  s = start_error(o);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("group.id") != std::string::npos);

  o.properties.clear();
  o.start = ms::KafkaStartOffset::committed();
  s = start_error(o);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("group_id") != std::string::npos);
}
