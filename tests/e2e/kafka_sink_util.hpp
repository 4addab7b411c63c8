// Helpers of the Kafka sink tests: the real broker named by MS_KAFKA_BROKERS
// (scripts/test.sh starts it), topics, and reading a topic to its end under
// read_committed, with librdkafka directly (independent of the sink).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <librdkafka/rdkafka.h>

namespace meterstream::test {

// The brokers of the real Kafka broker; fails the test, saying how to start
// one, when MS_KAFKA_BROKERS is not set.
inline std::string kafka_brokers() {
  const char* b = std::getenv("MS_KAFKA_BROKERS");
  if (b == nullptr || *b == '\0') {
    FAIL(
        "MS_KAFKA_BROKERS is not set: these tests need a real Kafka broker "
        "(transactions); "
        "start one with `scripts/kafka-broker start /tmp/kb` and export "
        "MS_KAFKA_BROKERS=<the address it prints> (scripts/test.sh does both)");
  }
  return b;
}

// A topic name unique to this process and call.
inline std::string unique_topic(const std::string& base) {
  static int n = 0;
  return base + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n) +
         "-" +
         std::to_string(
             std::chrono::steady_clock::now().time_since_epoch().count() %
             100000);
}

inline void create_topic(
    const std::string& brokers, const std::string& topic, int partitions,
    const std::map<std::string, std::string>& config = {}) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err,
                            sizeof err) == RD_KAFKA_CONF_OK);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  REQUIRE(rk != nullptr);
  rd_kafka_NewTopic_t* nt =
      rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  for (const auto& [k, v] : config)
    rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  REQUIRE(ev != nullptr);
  const rd_kafka_CreateTopics_result_t* res =
      rd_kafka_event_CreateTopics_result(ev);
  size_t n = 0;
  const rd_kafka_topic_result_t** topics =
      rd_kafka_CreateTopics_result_topics(res, &n);
  REQUIRE(n == 1);
  INFO("creating " << topic << ": "
                   << (rd_kafka_topic_result_error_string(topics[0])
                           ? rd_kafka_topic_result_error_string(topics[0])
                           : ""));
  REQUIRE(rd_kafka_topic_result_error(topics[0]) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_destroy(rk);
}

// Every message value of `topic` (all partitions, in partition order) up to
// its end, as a read_committed (or read_uncommitted) consumer sees it.
inline std::vector<std::string> read_topic(const std::string& brokers,
                                           const std::string& topic,
                                           bool committed = true) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const char* k, const char* v) {
    REQUIRE(rd_kafka_conf_set(conf, k, v, err, sizeof err) == RD_KAFKA_CONF_OK);
  };
  set("bootstrap.servers", brokers.c_str());
  set("group.id", ("reader-" + topic).c_str());
  set("enable.auto.commit", "false");
  set("enable.partition.eof", "true");
  set("isolation.level", committed ? "read_committed" : "read_uncommitted");
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  REQUIRE(rk != nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  REQUIRE(rd_kafka_metadata(rk, 0, rkt, &md, 10000) ==
          RD_KAFKA_RESP_ERR_NO_ERROR);
  const int partitions = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  REQUIRE(rd_kafka_assign(rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<std::vector<std::string>> by_partition(
      static_cast<std::size_t>(partitions));
  int eof = 0;
  std::vector<bool> at_end(static_cast<std::size_t>(partitions), false);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (eof < partitions && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 500);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (!at_end[static_cast<std::size_t>(m->partition)]) {
        at_end[static_cast<std::size_t>(m->partition)] = true;
        ++eof;
      }
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      by_partition[static_cast<std::size_t>(m->partition)].emplace_back(
          static_cast<const char*>(m->payload), m->len);
    } else {
      INFO(rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  REQUIRE(eof == partitions);
  std::vector<std::string> out;
  for (auto& v : by_partition) out.insert(out.end(), v.begin(), v.end());
  return out;
}

}  // namespace meterstream::test
