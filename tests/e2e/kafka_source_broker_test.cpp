// The Kafka source against a real broker (MS_KAFKA_BROKERS, started by
// scripts/kafka-broker): what librdkafka's mock cluster does not implement,
// read_committed over transactions and offsets committed to the group.
// Topics and records are made here with librdkafka's own producer and admin
// API, and the group's offsets read back with rd_kafka_committed().
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "meterstream/connectors/kafka/kafka_source.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

std::string brokers() {
  const char* b = std::getenv("MS_KAFKA_BROKERS");
  if (b == nullptr || *b == '\0') {
    FAIL("MS_KAFKA_BROKERS is not set: run the tests with scripts/test.sh, or start a broker "
         "with `export MS_KAFKA_BROKERS=$(scripts/kafka-broker start /tmp/ms-kafka)` (stop it "
         "with `scripts/kafka-broker stop /tmp/ms-kafka`)");
  }
  return b;
}

// A topic name no earlier run used.
std::string fresh_topic(const std::string& what) {
  static std::atomic<int> n{0};
  return "ms-src-" + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000) +
         "-" + std::to_string(n++);
}

rd_kafka_t* client(rd_kafka_type_t type, const std::vector<std::pair<std::string, std::string>>& props) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", brokers().c_str(), err, sizeof err) ==
          RD_KAFKA_CONF_OK);
  for (const auto& [k, v] : props) {
    INFO(k << ": " << err);
    REQUIRE(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK);
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  INFO(err);
  REQUIRE(rk != nullptr);
  return rk;
}

void create_topic(const std::string& topic, int partitions) {
  rd_kafka_t* rk = client(RD_KAFKA_PRODUCER, {});
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, nullptr, 0);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  REQUIRE(ev != nullptr);
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev);
  REQUIRE(res != nullptr);
  size_t cnt = 0;
  const rd_kafka_topic_result_t** tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
  REQUIRE(cnt == 1);
  INFO(rd_kafka_topic_result_error_string(tr[0]));
  REQUIRE(rd_kafka_topic_result_error(tr[0]) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_destroy(rk);
}

void produce(rd_kafka_t* rk, const std::string& topic, int partition, const std::string& value) {
  REQUIRE(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
}

void check_error(rd_kafka_error_t* e) {
  if (e == nullptr) return;
  const std::string text = rd_kafka_error_string(e);
  rd_kafka_error_destroy(e);
  FAIL(text);
}

std::vector<ms::KafkaRecord> read_all(const ms::KafkaSourceOptions& o, int threads) {
  ms::Pipeline p;
  std::vector<ms::KafkaRecord> out;
  p.source(ms::kafka_source(o, ms::kafka_raw())).sink(ms::collect_into(out));
  ms::JobOptions jo;
  jo.parallelism = threads;
  mt::run_to_end(p, jo);
  return out;
}

}  // namespace

TEST_CASE("read_committed skips an aborted transaction and bounded mode ends past its markers",
          "[e2e][kafka]") {
  const std::string topic = fresh_topic("txn");
  create_topic(topic, 2);
  rd_kafka_t* rk = client(RD_KAFKA_PRODUCER,
                          {{"transactional.id", topic + "-producer"},
                           {"transaction.timeout.ms", "10000"}});
  check_error(rd_kafka_init_transactions(rk, 30000));
  auto txn = [&](const std::string& prefix, bool commit) {
    check_error(rd_kafka_begin_transaction(rk));
    for (int i = 0; i < 10; ++i) produce(rk, topic, i % 2, prefix + std::to_string(i));
    // On the broker before the abort (abort_transaction() purges what is
    // still queued in the producer, which would leave nothing to skip).
    REQUIRE(rd_kafka_flush(rk, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
    check_error(commit ? rd_kafka_commit_transaction(rk, 30000)
                       : rd_kafka_abort_transaction(rk, 30000));
  };
  txn("committed-a-", true);
  txn("aborted-", false);
  txn("committed-b-", true);  // each partition ends with a commit marker
  rd_kafka_destroy(rk);

  ms::KafkaSourceOptions o;
  o.brokers = brokers();
  o.topics = {topic};
  o.bounded = true;
  const auto committed = read_all(o, 2);
  std::set<std::string> values;
  for (const auto& r : committed) values.insert(r.value);
  CHECK(committed.size() == 20);
  CHECK(values.size() == 20);
  for (const std::string& v : values) CHECK(v.rfind("committed-", 0) == 0);

  // The aborted records are in the topic: read_uncommitted sees them.
  o.read_committed = false;
  CHECK(read_all(o, 1).size() == 30);
}

TEST_CASE("offsets are committed to the consumer group after checkpoints", "[e2e][kafka]") {
  const std::string topic = fresh_topic("group");
  create_topic(topic, 3);
  rd_kafka_t* rk = client(RD_KAFKA_PRODUCER, {});
  for (int i = 0; i < 300; ++i) produce(rk, topic, i % 3, "v" + std::to_string(i));
  REQUIRE(rd_kafka_flush(rk, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);

  mt::TempDir dir("kafka-group");
  ms::KafkaSourceOptions o;
  o.brokers = brokers();
  o.topics = {topic};
  o.bounded = true;
  o.group_id = topic + "-group";
  ms::Pipeline p;
  std::vector<ms::KafkaRecord> out;
  p.source(ms::kafka_source(o, ms::kafka_raw())).sink(ms::collect_into(out));
  ms::JobOptions jo;
  jo.parallelism = 2;
  jo.checkpoint = ms::enable_checkpointing(20ms, mt::local_storage(dir.str("chk")));
  mt::run_to_end(p, jo);
  CHECK(out.size() == 300);

  rd_kafka_t* consumer = client(RD_KAFKA_CONSUMER, {{"group.id", o.group_id}});
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(3);
  for (int i = 0; i < 3; ++i) rd_kafka_topic_partition_list_add(list, topic.c_str(), i);
  REQUIRE(rd_kafka_committed(consumer, list, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int i = 0; i < 3; ++i) {
    INFO("partition " << i);
    CHECK(list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK(list->elems[i].offset == 100);  // the end: lag 0 once the job is done
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(consumer);
}

TEST_CASE("start at a timestamp reads the records from that time on", "[e2e][kafka]") {
  const std::string topic = fresh_topic("time");
  create_topic(topic, 2);
  rd_kafka_t* rk = client(RD_KAFKA_PRODUCER, {});
  const std::int64_t t0 = 1700000000000;
  for (int i = 0; i < 40; ++i) {
    const std::string value = std::to_string(i);
    REQUIRE(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(i % 2),
                              RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                              RD_KAFKA_V_TIMESTAMP(t0 + i * 1000),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  REQUIRE(rd_kafka_flush(rk, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);

  ms::KafkaSourceOptions o;
  o.brokers = brokers();
  o.topics = {topic};
  o.bounded = true;
  o.start = ms::KafkaStartOffset::timestamp(std::chrono::milliseconds(t0 + 25000));
  const auto records = read_all(o, 2);
  std::set<int> got;
  for (const auto& r : records) {
    got.insert(std::stoi(r.value));
    CHECK(r.timestamp_ms >= t0 + 25000);
  }
  std::set<int> want;
  for (int i = 25; i < 40; ++i) want.insert(i);
  CHECK(records.size() == 15);
  CHECK((got == want));
}
