// Helpers of the Kafka source tests: the workload as Kafka messages, Q1 from
// a Kafka source, results folded into Q1Totals.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "bench/q1_pipeline.hpp"
#include "meterstream/connectors/generator/meter_reading_codec.hpp"
#include "meterstream/connectors/kafka/kafka_mock_cluster.hpp"
#include "meterstream/connectors/kafka/kafka_source.hpp"
#include "meterstream/meterstream.hpp"

namespace meterstream::test {

// The workload's events with `late_ppm`, generated in order.
inline std::vector<MeterReading> kafka_workload(std::uint64_t seed, std::uint64_t meters,
                                                std::uint64_t events, std::uint32_t late_ppm) {
  SmartMeterWorkload w;
  w.seed = seed;
  w.meters = meters;
  w.events = events;
  w.late_ppm = late_ppm;
  std::vector<MeterReading> out;
  SmartMeterGenerator gen(w);
  MeterReading r;
  while (gen.next(&r)) out.push_back(r);
  return out;
}

// The events as messages: key = meter id (the codec's 8-byte key), value =
// the codec's 26 bytes, partition = meter id % partitions, timestamp = ts_ms.
inline std::vector<KafkaMessage> as_messages(const std::vector<MeterReading>& events,
                                             int partitions) {
  std::vector<KafkaMessage> out;
  out.reserve(events.size());
  for (const MeterReading& r : events) {
    KafkaMessage m;
    m.key = encode_meter_key(r.meter_id);
    m.value = encode_meter_reading(r);
    m.partition = static_cast<std::int32_t>(r.meter_id % static_cast<std::uint64_t>(partitions));
    m.timestamp_ms = r.ts_ms;
    out.push_back(std::move(m));
  }
  return out;
}

inline std::unique_ptr<KafkaMockCluster> mock_cluster() {
  auto c = KafkaMockCluster::start(1);
  INFO(c.status().ToString());
  REQUIRE(c.ok());
  return *std::move(c);
}

// Fired Q1 windows folded into totals, from every worker.
class TotalsSink final : public Sink<Q1Result> {
 public:
  std::string name() const override { return "q1-totals"; }
  StatusOr<std::unique_ptr<SinkWriter<Q1Result>>> create_writer(int, int) override {
    return std::unique_ptr<SinkWriter<Q1Result>>(std::make_unique<Writer>(this));
  }
  Q1Totals totals() const {
    std::lock_guard<std::mutex> lock(mu_);
    return totals_;
  }
  std::uint64_t windows() const { return totals().windows; }

 private:
  class Writer final : public SinkWriter<Q1Result> {
   public:
    explicit Writer(TotalsSink* sink) : sink_(sink) {}
    Status write(const RecordBatch<Q1Result>& batch) override {
      std::lock_guard<std::mutex> lock(sink_->mu_);
      for (const Q1Result& r : batch.values) {
        sink_->totals_.add_window(r.key, r.start, r.value.count, r.value.sum_wh, r.value.min_v,
                                  r.value.max_v);
      }
      return Status();
    }
    Status close() override { return Status(); }

   private:
    TotalsSink* sink_;
  };

  mutable std::mutex mu_;
  Q1Totals totals_;
};

// Q1 over a source of MeterReading (Q1's watermarks: bound B, every E
// records), into `sink`.
template <typename SourceStreamT>
auto q1_windows(SourceStreamT readings, const Q1Params& q,
                std::chrono::milliseconds idleness = std::chrono::milliseconds(0)) {
  auto strategy = WatermarkStrategy::bounded_out_of_orderness(std::chrono::milliseconds(q.bound_ms))
                      .with_emit_every(q.wm_every);
  if (idleness.count() > 0) strategy = strategy.with_idleness(idleness);
  return readings.with_watermarks(strategy, &MeterReading::ts_ms)
      .key_by(&MeterReading::meter_id)
      .window(tumbling(std::chrono::milliseconds(q.window_ms)))
      .aggregate(Q1Aggregate{});
}

}  // namespace meterstream::test
