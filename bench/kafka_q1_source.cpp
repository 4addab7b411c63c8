// kafka-q1's source: the produced workload events of a Kafka topic.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "q1_pipeline.hpp"

#include "meterstream/connectors/kafka/kafka_source.hpp"

namespace meterstream {

std::shared_ptr<Source<MeterReading>> make_kafka_q1_source(
    const Q1Params& params) {
  KafkaSourceOptions in;
  in.brokers = params.brokers;
  in.topics = {params.input_topic};
  in.group_id = params.input_group;
  // Read up to the end offsets found at the first start (Flink's
  // setBounded), at each start (a job down for a while catches up with what
  // was appended meanwhile, then ends), or forever.
  in.bounded = params.kafka_bounded != "no";
  in.bounded_end_at_each_start = params.kafka_bounded == "each-start";
  if (params.pace_events_per_s <= 0) {
    return kafka_source<MeterReading>(in, kafka_meter_reading());
  }
  // Paced: every 256th event waits until the process's count is due.
  struct Pace {
    std::int64_t per_s = 0;
    std::atomic<std::int64_t> n{0};
    std::once_flag started;
    std::chrono::steady_clock::time_point start;
  };
  auto pace = std::make_shared<Pace>();
  pace->per_s = params.pace_events_per_s;
  return kafka_source<MeterReading>(in, [pace](const KafkaRecordView& r) {
    std::call_once(pace->started,
                   [&] { pace->start = std::chrono::steady_clock::now(); });
    const std::int64_t n = pace->n.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n % 256 == 0) {
      std::this_thread::sleep_until(
          pace->start + std::chrono::microseconds(n * 1000000 / pace->per_s));
    }
    return decode_kafka_meter_reading(r);
  });
}

}  // namespace meterstream
