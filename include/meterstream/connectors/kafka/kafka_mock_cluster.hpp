// An in-process Kafka cluster for demos and tests: librdkafka's mock cluster,
// plus a plain producer to fill its topics.
//
// What it does not guarantee (librdkafka 2.0.2): transactions are accepted
// but not implemented (read_committed sees aborted records, transactional
// offset commits are dropped, no fencing); a partition keeps only about
// 5 MiB or 100,000 messages (older ones are dropped); looking an offset up by
// timestamp finds nothing (KafkaStartOffset::timestamp() starts at the end).
// Exactly-once is tested against a real broker (scripts/kafka-broker).
//
// Thread-safety: produce() and create_topic() may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "meterstream/core/status.hpp"
#include "meterstream/core/time.hpp"

namespace meterstream {

// A record to produce.
struct KafkaMessage {
  std::string key;    // empty: no key
  std::string value;
  // The partition; -1: chosen from the key by librdkafka's default partitioner
  // (the same key goes to the same partition).
  std::int32_t partition = -1;
  // The record's create time; kMinTimestamp: now.
  Timestamp timestamp_ms = kMinTimestamp;
};

class KafkaMockCluster {
 public:
  // Starts a cluster of `brokers` brokers on loopback ports.
  static StatusOr<std::unique_ptr<KafkaMockCluster>> start(int brokers = 1);

  KafkaMockCluster() = default;
  KafkaMockCluster(const KafkaMockCluster&) = delete;
  KafkaMockCluster& operator=(const KafkaMockCluster&) = delete;
  // Stops the cluster; clients still connected to it then see it as down.
  virtual ~KafkaMockCluster() = default;

  // bootstrap.servers of the cluster ("127.0.0.1:port,...").
  virtual std::string bootstrap_servers() const = 0;

  // Creates `topic` with `partitions` partitions (kAlreadyExists when it exists).
  virtual Status create_topic(const std::string& topic, int partitions) = 0;

  // Produces `messages` to `topic`, in order per partition, and waits until
  // every one is acknowledged (kUnavailable naming the first failure).
  virtual Status produce(const std::string& topic, const std::vector<KafkaMessage>& messages) = 0;
};

}  // namespace meterstream
