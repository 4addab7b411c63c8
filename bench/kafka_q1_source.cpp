// kafka-q1's source: the produced workload events of a Kafka topic.
#include <memory>

#include "q1_pipeline.hpp"
#include "meterstream/connectors/kafka/kafka_source.hpp"

namespace meterstream {

std::shared_ptr<Source<MeterReading>> make_kafka_q1_source(const Q1Params& params) {
  KafkaSourceOptions in;
  in.brokers = params.brokers;
  in.topics = {params.input_topic};
  in.group_id = params.input_group;
  // Read up to the end offsets found at the first start (Flink's
  // setBounded), at each start (a job down for a while catches up with what
  // was appended meanwhile, then ends), or forever.
  in.bounded = params.kafka_bounded != "no";
  in.bounded_end_at_each_start = params.kafka_bounded == "each-start";
  return kafka_source<MeterReading>(in, kafka_meter_reading());
}

}  // namespace meterstream
