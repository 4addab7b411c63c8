// `meterstream-bench kafka-consume`: the consume-only pass of the Kafka
// benchmark (bench/kafka_throughput.sh). It reads a topic of MeterReadings
// through the library's Kafka source, bounded to the end offsets found at
// start, under read_committed, decodes every value, and only counts them: the
// ceiling that a Kafka job (kafka-q1) is measured against in the same run.
//
//   meterstream-bench kafka-consume --brokers B --topic T [--threads N]
//   {"events":..,"undecodable":..,"sum_wh":..,"proc_s":..,"events_per_s":..,
//    "peak_rss_mb":..}
//
// `proc_s` is the job's wall time (start, metadata and offset look-ups
// included, as for kafka-q1). Thread-safety: one call at a time.
#pragma once

#include <string>
#include <vector>

namespace meterstream::bench {

// Runs the sub-command on `args` (the arguments after "kafka-consume");
// prints the JSON line on stdout, errors on stderr; returns the exit code
// (0, 1 failure, 2 usage or a missing topic).
int run_kafka_consume(const std::vector<std::string>& args, const char* usage);

}  // namespace meterstream::bench
