// The Kafka tools of meterstream-bench (docs/kafka.md "Bench tools"),
// written with librdkafka directly so that they check the library's Kafka
// connectors independently:
//
// - produce_workload() writes the smart-meter workload's events, in
//   generator order, to a topic: key = meter id (8 bytes big-endian), value =
//   the 26-byte MeterReading encoding (meter_reading_codec.hpp), record
//   timestamp = ts_ms, partition = Kafka's default partitioner for keyed
//   records (murmur2 of the key, positive, modulo the partition count; the
//   Java client's and librdkafka's `murmur2_random`). Idempotent producer,
//   acks=all: events of one partition are in the log in generator order.
// - verify_kafka_output() reads a topic of Q1 output windows, one per record
//   whose value is the line `meter_id,start,count,sum_wh,min_v,max_v`, under
//   read_committed, and computes Q1's totals over it.
//
// Thread-safety: each call uses its own librdkafka handles.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/core/status.hpp"

namespace meterstream::bench {

// Kafka's default partition of a keyed record: murmur2(key) & 0x7fffffff,
// modulo `partitions` (org.apache.kafka.common.utils.Utils.murmur2 with seed
// 0x9747b28c, which librdkafka's murmur2 partitioners implement too).
std::int32_t kafka_default_partition(std::string_view key,
                                     std::int32_t partitions);

struct ProduceOptions {
  // Bootstrap servers ("host:port[,host:port]").
  std::string brokers;
  // The topic; created with `partitions` partitions when missing.
  std::string topic;
  // Partitions of a topic to create; an existing topic must have as many.
  // Default: 1
  std::int32_t partitions = 1;
  // The events to write.
  SmartMeterWorkload workload;
  // Generates but does not write the first `skip` events: with --events N
  // --skip S the topic gets events S..N-1 of the workload, so that two calls
  // (--events S, then --events N --skip S) append the N events in order
  // (the generator's first S events do not depend on N). Default: 0
  std::uint64_t skip = 0;
  // How long to wait for the broker to answer a metadata request at start.
  // Default: 30 s
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(30);
};

struct ProduceResult {
  std::uint64_t events = 0;
  // Wall time from the first event generated to the last acknowledged.
  double proc_s = 0;
};

// Creates the topic if missing and writes every event of the workload.
// Errors: kUnavailable when the broker does not answer, kFailedPrecondition
// when the topic exists with another partition count, kInvalidArgument for
// a bad option, kDataLoss naming the first delivery error when any event
// was not acknowledged.
StatusOr<ProduceResult> produce_workload(const ProduceOptions& options);

// {"events","topic","partitions","proc_s","events_per_s"}.
nlohmann::ordered_json produce_json(const ProduceOptions& options,
                                    const ProduceResult& result);

struct VerifyOptions {
  std::string brokers;
  std::string topic;
  // How long to wait, in all, for the last stable offset of every partition
  // to reach the high watermark found at start (an open transaction holds
  // it back) and for the records to be read.
  // Default: 120 s
  std::chrono::milliseconds timeout = std::chrono::seconds(120);
  // As in ProduceOptions.
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(30);
};

// What verify_kafka_output() found.
struct KafkaOutputCheck {
  // windows, total_count, sum_wh and digest over the well-formed records,
  // repeated ones included (as check_q1_output()).
  Q1Totals totals;
  // Well-formed records whose (meter_id, start) an earlier record had.
  std::uint64_t repeated = 0;
  // Records whose value is not a well-formed line (a single trailing '\n'
  // is allowed), a null value included.
  std::uint64_t undecodable = 0;
  // Records read (committed data records; markers and aborted data are not
  // records).
  std::uint64_t records = 0;
  std::int32_t partitions = 0;
};

// Reads every partition of the topic from the beginning to the high
// watermark found at the start, under read_committed. Errors: kUnavailable
// when the broker does not answer, kNotFound naming a missing topic,
// kDeadlineExceeded naming the partition whose end was not reached in time.
StatusOr<KafkaOutputCheck> verify_kafka_output(const VerifyOptions& options);

// {"windows","total_count","sum_wh","digest","repeated","undecodable",
// "records","partitions"}.
nlohmann::ordered_json kafka_verify_json(const KafkaOutputCheck& check);

}  // namespace meterstream::bench
