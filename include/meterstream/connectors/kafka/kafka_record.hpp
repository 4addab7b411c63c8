// KafkaRecord: one Kafka message with its bytes, shared by the Kafka source
// (what kafka_raw() reads) and the Kafka sink (what a serializer may
// return), so that a stream read raw can be written back as it is.
//
// Thread-safety: a value type.
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
  // Where the record was read (source only; the sink writes to its options'
  // topic, into the partition its partitioner chooses).
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  // The message key. The source sets has_key when the record has a non-empty
  // key; the sink sends the key only when has_key is true.
  std::string key;
  bool has_key = false;
  std::string value;
  // The record's timestamp (create or log-append time) in ms since the
  // epoch; kMinTimestamp when it has none (source only).
  Timestamp timestamp_ms = kMinTimestamp;
  // Headers the sink sends (the source does not read headers).
  std::vector<KafkaHeader> headers;
};

}  // namespace meterstream
