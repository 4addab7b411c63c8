// The real Kafka broker of the e2e tests and small librdkafka helpers to
// prepare and inspect topics independently of meterstream's own connectors.
//
// scripts/test.sh starts one broker (scripts/kafka-broker) for the whole run
// and exports MS_KAFKA_BROKERS (its bootstrap address), MS_KAFKA_BROKER_DIR
// and MS_KAFKA_BROKER_SCRIPT (for chaos tests that kill and restart it).
// kafka_brokers() fails the test, saying how to start one, when it is unset.
// Every test makes topics and groups of its own (unique_kafka_name()).
//
// The helpers fail the current test (Catch2 REQUIRE/FAIL) on any error, with
// librdkafka's message. They are for tests only: slow and simple.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <librdkafka/rdkafka.h>
#include <unistd.h>

namespace meterstream::test {

// The shared broker's bootstrap address (MS_KAFKA_BROKERS); fails the test,
// saying how to start one, when it is not set.
inline std::string kafka_brokers() {
  const char* b = std::getenv("MS_KAFKA_BROKERS");
  if (b == nullptr || *b == '\0') {
    FAIL(
        "MS_KAFKA_BROKERS is not set. Run the tests with scripts/test.sh, or "
        "start a broker: "
        "`export MS_KAFKA_BROKERS=$(scripts/kafka-broker start /tmp/ms-kafka)` "
        "`export MS_KAFKA_BROKER_DIR=/tmp/ms-kafka "
        "MS_KAFKA_BROKER_SCRIPT=$PWD/scripts/kafka-broker` (stop it with "
        "`scripts/kafka-broker stop /tmp/ms-kafka`)");
  }
  return b;
}

// "ms-<what>-<pid>-<random>-<n>": a topic, group or transactional id that no
// other test of this run, nor of an earlier run on the same broker, uses.
inline std::string unique_kafka_name(const std::string& what) {
  static std::atomic<int> n{0};
  static const std::uint32_t run = std::random_device{}();
  return "ms-" + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(run) + "-" + std::to_string(n++);
}

// Owns an rd_kafka_t.
struct KafkaHandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaHandleDeleter>;

// Owns an rd_kafka_topic_partition_list_t.
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList =
    std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

// A producer or consumer on `brokers` with the given properties (librdkafka
// names), failing the test naming a property librdkafka rejects.
inline KafkaHandle make_kafka(
    rd_kafka_type_t type, const std::string& brokers,
    const std::map<std::string, std::string>& props = {}) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::map<std::string, std::string> all = {{"bootstrap.servers", brokers}};
  for (const auto& [k, v] : props) all[k] = v;
  for (const auto& [k, v] : all) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      FAIL("librdkafka rejects " << k << "=" << v << ": " << err);
    }
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    FAIL("rd_kafka_new: " << err);
  }
  return KafkaHandle(rk);
}

// The number of partitions of `topic`, or -1 when the broker does not know
// it (yet). Fails the test when the metadata request fails.
inline int kafka_partition_count(rd_kafka_t* rk, const std::string& topic) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &md, 10000);
  REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
  int count = -1;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    if (topic != t.topic || t.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    count = t.partition_cnt;
    for (int p = 0; p < t.partition_cnt; ++p) {
      if (t.partitions[p].leader < 0) count = -1;  // not ready
    }
  }
  rd_kafka_metadata_destroy(md);
  return count;
}

// Creates `topic` with `partitions` partitions (replication factor 1, the
// given topic configs) and waits until every partition has a leader.
inline void create_kafka_topic(
    const std::string& brokers, const std::string& topic, int partitions,
    const std::map<std::string, std::string>& configs = {}) {
  using namespace std::chrono_literals;
  KafkaHandle rk = make_kafka(RD_KAFKA_PRODUCER, brokers);
  char err[512];
  rd_kafka_NewTopic_t* nt =
      rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  REQUIRE(nt != nullptr);
  for (const auto& [k, v] : configs) {
    REQUIRE(rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str()) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk.get());
  rd_kafka_CreateTopics(rk.get(), &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 60000);
  rd_kafka_NewTopic_destroy(nt);
  std::string error;
  if (ev == nullptr) {
    error = "no answer within 60 s";
  } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = rd_kafka_event_error_string(ev);
  } else {
    const rd_kafka_CreateTopics_result_t* res =
        rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t** results =
        rd_kafka_CreateTopics_result_topics(res, &n);
    if (n != 1) {
      error = "expected one topic result";
    } else if (rd_kafka_topic_result_error(results[0]) !=
               RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = rd_kafka_topic_result_error_string(results[0]);
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  if (!error.empty()) FAIL("creating topic " << topic << ": " << error);
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (kafka_partition_count(rk.get(), topic) != partitions) {
    if (std::chrono::steady_clock::now() > deadline) {
      FAIL("topic " << topic << " has no leader for all " << partitions
                    << " partitions within 60 s");
    }
    std::this_thread::sleep_for(100ms);
  }
}

// A record to produce. An empty key is sent as a null key; partition -1
// lets librdkafka's partitioner choose; timestamp 0 means "now".
struct KafkaRawRecord {
  std::string key;
  std::string value;
  std::int32_t partition = RD_KAFKA_PARTITION_UA;
  std::int64_t timestamp = 0;
};

// Waits for every outstanding message of producer `rk`; fails the test on
// time-out (delivery errors are reported to the producer's callback).
inline void flush_kafka_producer(rd_kafka_t* rk) {
  const rd_kafka_resp_err_t err = rd_kafka_flush(rk, 60000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    FAIL("flush: " << rd_kafka_err2str(err));
}

// Produces `records` to `topic` with an idempotent producer (acks=all) and
// waits until all are acknowledged; fails the test naming the first
// delivery error.
inline void produce_kafka_records(const std::string& brokers,
                                  const std::string& topic,
                                  const std::vector<KafkaRawRecord>& records) {
  struct Errors {
    std::atomic<int> count{0};
    std::string first;
  };
  Errors errors;
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err,
                            sizeof err) == RD_KAFKA_CONF_OK);
  REQUIRE(rd_kafka_conf_set(conf, "enable.idempotence", "true", err,
                            sizeof err) == RD_KAFKA_CONF_OK);
  rd_kafka_conf_set_opaque(conf, &errors);
  rd_kafka_conf_set_dr_msg_cb(
      conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
        auto* e = static_cast<Errors*>(opaque);
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && e->count++ == 0) {
          e->first = rd_kafka_err2str(m->err);
        }
      });
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  REQUIRE(raw != nullptr);
  KafkaHandle rk(raw);
  for (const KafkaRawRecord& r : records) {
    for (;;) {
      const rd_kafka_resp_err_t e = rd_kafka_producev(
          rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
          RD_KAFKA_V_PARTITION(r.partition),
          RD_KAFKA_V_KEY(r.key.empty() ? nullptr : r.key.data(), r.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_TIMESTAMP(r.timestamp), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk.get(), 100);
        continue;
      }
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        FAIL("produce to " << topic << ": " << rd_kafka_err2str(e));
      break;
    }
    rd_kafka_poll(rk.get(), 0);
  }
  flush_kafka_producer(rk.get());
  if (errors.count > 0) {
    FAIL(errors.count << " record(s) to " << topic
                      << " not delivered; first: " << errors.first);
  }
}

// Produces `records` to `topic` in one transaction of a transactional
// producer with id `transactional_id` (transaction timeout 10 s), then
// commits it, aborts it, or (kLeaveOpen) leaves it open and returns the
// producer, whose destruction (or the timeout) ends it. Fails the test on
// any error.
enum class KafkaTxnEnd { kCommit, kAbort, kLeaveOpen };
inline KafkaHandle produce_kafka_transaction(
    const std::string& brokers, const std::string& transactional_id,
    const std::string& topic, const std::vector<KafkaRawRecord>& records,
    KafkaTxnEnd end) {
  KafkaHandle p = make_kafka(RD_KAFKA_PRODUCER, brokers,
                             {{"transactional.id", transactional_id},
                              {"transaction.timeout.ms", "10000"}});
  auto check = [&](rd_kafka_error_t* e, const char* what) {
    if (e != nullptr) {
      const std::string msg = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      FAIL(what << " (" << transactional_id << "): " << msg);
    }
  };
  check(rd_kafka_init_transactions(p.get(), 60000), "init_transactions");
  check(rd_kafka_begin_transaction(p.get()), "begin_transaction");
  for (const KafkaRawRecord& r : records) {
    const rd_kafka_resp_err_t e = rd_kafka_producev(
        p.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
        RD_KAFKA_V_PARTITION(r.partition),
        RD_KAFKA_V_KEY(r.key.empty() ? nullptr : r.key.data(), r.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_TIMESTAMP(r.timestamp), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
      FAIL("produce to " << topic << ": " << rd_kafka_err2str(e));
  }
  switch (end) {
    case KafkaTxnEnd::kCommit:
      check(rd_kafka_commit_transaction(p.get(), 60000), "commit_transaction");
      break;
    case KafkaTxnEnd::kAbort:
      // Flushed first, so that the aborted records are in the log.
      flush_kafka_producer(p.get());
      check(rd_kafka_abort_transaction(p.get(), 60000), "abort_transaction");
      break;
    case KafkaTxnEnd::kLeaveOpen:
      flush_kafka_producer(p.get());
      break;
  }
  return p;
}

// One record as read back.
struct KafkaReadRecord {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string key;
  std::string value;
  std::int64_t timestamp = 0;
};

enum class KafkaIsolation { kReadCommitted, kReadUncommitted };

// Where consume_kafka_topic() stops: at the high watermark found at the
// call, waiting under read_committed until open transactions end (their
// commit markers are written after commit_transaction() returns, and again
// by the coordinator after a broker restart), or at the end as the
// consumer's isolation level sees it at the call (the last stable offset
// under read_committed: an open transaction's records are not read).
enum class KafkaReadUntil { kHighWatermark, kLastStable };

// Reads every partition of `topic` from its beginning to the end chosen by
// `until` and returns the records in partition order, then offset order.
// Fails the test when the end is not reached within `timeout`.
inline std::vector<KafkaReadRecord> consume_kafka_topic(
    const std::string& brokers, const std::string& topic,
    KafkaIsolation isolation,
    KafkaReadUntil until = KafkaReadUntil::kHighWatermark,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(60000)) {
  const char* level = isolation == KafkaIsolation::kReadCommitted
                          ? "read_committed"
                          : "read_uncommitted";
  KafkaHandle rk = make_kafka(RD_KAFKA_CONSUMER, brokers,
                              {{"group.id", unique_kafka_name("reader")},
                               {"enable.auto.commit", "false"},
                               {"enable.partition.eof", "true"},
                               {"isolation.level", level}});
  const int partitions = kafka_partition_count(rk.get(), topic);
  if (partitions < 0)
    FAIL("topic " << topic << " does not exist (or has no leader)");

  // The end offsets are asked under read_uncommitted for the high
  // watermark, under the consumer's level for the last stable offset.
  KafkaHandle probe = make_kafka(
      RD_KAFKA_CONSUMER, brokers,
      {{"isolation.level",
        until == KafkaReadUntil::kHighWatermark ? "read_uncommitted" : level}});
  std::map<std::int32_t, std::int64_t> end;
  PartitionList assignment(rd_kafka_topic_partition_list_new(partitions));
  for (std::int32_t p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    // Retried: a broker that has just restarted answers "not leader" for a
    // moment.
    rd_kafka_resp_err_t err;
    const auto query_deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while ((err = rd_kafka_query_watermark_offsets(probe.get(), topic.c_str(),
                                                   p, &low, &high, 10000)) !=
               RD_KAFKA_RESP_ERR_NO_ERROR &&
           std::chrono::steady_clock::now() < query_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      FAIL("end offset of " << topic << "[" << p
                            << "]: " << rd_kafka_err2str(err));
    }
    end[p] = high;
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), p)
        ->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  probe.reset();
  REQUIRE(rd_kafka_assign(rk.get(), assignment.get()) ==
          RD_KAFKA_RESP_ERR_NO_ERROR);

  std::map<std::int32_t, std::vector<KafkaReadRecord>> by_partition;
  std::map<std::int32_t, bool> at_end;
  for (std::int32_t p = 0; p < partitions; ++p) at_end[p] = end[p] == 0;
  auto all_at_end = [&] {
    for (const auto& [p, done] : at_end) {
      if (!done) return false;
    }
    return true;
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!all_at_end()) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::string state;
      for (const auto& [p, done] : at_end) {
        state += " [" + std::to_string(p) + "] end " + std::to_string(end[p]) +
                 (done ? " reached" : " not reached");
      }
      FAIL("reading " << topic << " did not reach its end within "
                      << timeout.count() << " ms:" << state);
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 200);
    if (m == nullptr) continue;
    const std::int32_t p = m->partition;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // Reported at the end as the broker saw it: past the end found above
      // (or equal), since the end only grows.
      if (m->offset >= end[p]) at_end[p] = true;
    } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Transient errors (a broker restarting) are retried by librdkafka
      // until `timeout`; these are not.
      const bool fatal = m->err == RD_KAFKA_RESP_ERR__FATAL ||
                         m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
      const std::string msg = rd_kafka_message_errstr(m);
      rd_kafka_message_destroy(m);
      if (fatal) FAIL("reading " << topic << ": " << msg);
      continue;
    } else {
      if (m->offset < end[p]) {
        KafkaReadRecord r;
        r.partition = p;
        r.offset = m->offset;
        if (m->key != nullptr)
          r.key.assign(static_cast<const char*>(m->key), m->key_len);
        if (m->payload != nullptr) {
          r.value.assign(static_cast<const char*>(m->payload), m->len);
        }
        r.timestamp = rd_kafka_message_timestamp(m, nullptr);
        by_partition[p].push_back(std::move(r));
      }
      if (m->offset + 1 >= end[p]) at_end[p] = true;
    }
    rd_kafka_message_destroy(m);
  }
  std::vector<KafkaReadRecord> out;
  for (auto& [p, records] : by_partition) {
    for (KafkaReadRecord& r : records) out.push_back(std::move(r));
  }
  return out;
}

// A group's committed offset of one partition: offset -1001
// (RD_KAFKA_OFFSET_INVALID) when the group has none.
struct KafkaCommitted {
  std::int64_t offset = RD_KAFKA_OFFSET_INVALID;
  std::string metadata;
};

// The committed offsets (and their metadata strings) of `group` for the
// given partitions of `topic`, read with rd_kafka_committed().
inline std::map<std::int32_t, KafkaCommitted> kafka_committed_offsets(
    const std::string& brokers, const std::string& group,
    const std::string& topic, const std::vector<std::int32_t>& partitions) {
  KafkaHandle rk =
      make_kafka(RD_KAFKA_CONSUMER, brokers,
                 {{"group.id", group}, {"enable.auto.commit", "false"}});
  PartitionList list(
      rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
  for (std::int32_t p : partitions) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  }
  const rd_kafka_resp_err_t err =
      rd_kafka_committed(rk.get(), list.get(), 30000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    FAIL("committed offsets of group " << group << ": "
                                       << rd_kafka_err2str(err));
  }
  std::map<std::int32_t, KafkaCommitted> out;
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      FAIL("committed offset of group " << group << " for " << topic << "["
                                        << tp.partition
                                        << "]: " << rd_kafka_err2str(tp.err));
    }
    KafkaCommitted c;
    c.offset = tp.offset;
    if (tp.metadata != nullptr) {
      c.metadata.assign(static_cast<const char*>(tp.metadata),
                        tp.metadata_size);
    }
    out[tp.partition] = std::move(c);
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

}  // namespace meterstream::test
