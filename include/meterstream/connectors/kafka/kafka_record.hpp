// KafkaRecord: one Kafka message with its bytes, as the Kafka source's
// kafka_raw() deserializer gives it and as a Kafka sink's serializer may
// return it (docs/kafka.md). A plain value type; no thread-safety concerns.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "meterstream/core/time.hpp"

namespace meterstream {

struct KafkaHeader {
  std::string name;
  std::string value;
};

struct KafkaRecord {
  // Where the record was read (kafka_raw()); ignored by the sink, which
  // writes to its own topic and partitioner.
  // Default: "", 0, 0.
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;

  // The message key; a sink ignores it when has_key is false (a keyless
  // message). kafka_raw() sets has_key when the record has a non-empty key.
  // Default: "", false.
  std::string key;
  bool has_key = false;

  // The message value.
  // Default: "".
  std::string value;

  // Headers written by a sink (kafka_raw() leaves them empty).
  // Default: none.
  std::vector<KafkaHeader> headers;

  // The record timestamp read by kafka_raw() (kMinTimestamp: none); ignored
  // by the sink.
  // Default: kMinTimestamp.
  Timestamp timestamp_ms = kMinTimestamp;
};

}  // namespace meterstream
