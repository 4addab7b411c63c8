// meterstream-bench: runs the smart-meter benchmark queries of
// shared/bench/WORKLOAD.md and prints one JSON line of results on stdout.
//
//   meterstream-bench q1          [flags]   Q1 through the library's DSL
//   meterstream-bench q1-baseline [flags]   Q1 by the hand-written baseline loop
//   meterstream-bench check-output --output DIR
//                                           Q1's results from the committed
//                                           output of a crash-and-resume run
//   meterstream-bench produce --brokers B --topic T --partitions P [workload]
//                                           the workload's events into Kafka
//   meterstream-bench verify --brokers B --topic O
//                                           Q1's results from a Kafka topic
//                                           of output windows (read_committed)
//   meterstream-bench kafka-q1 --brokers B --input T --output-topic O ...
//                                           Q1 from a Kafka topic (bounded)
//                                           to a Kafka topic, exactly once
//
// The events are generated into memory first; only the query run is timed.
// Usage errors (unknown sub-command or flag, bad value) print a message on
// stderr and exit 2; a failed run exits 1 (2 when the run rejects its
// configuration, e.g. an unavailable state backend).

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "alerts.hpp"
#include "bench_util.hpp"
#include "join.hpp"
#include "kafka_consume.hpp"
#include "kafka_tools.hpp"
#include "output_check.hpp"
#include "q1_baseline.hpp"
#include "q1_pipeline.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/core/status.hpp"

namespace ms = meterstream;

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

constexpr const char* kUsage =
    "usage: meterstream-bench <q1|q1-baseline|dedup|dedup-baseline> [--seed S] [--meters K]\n"
    "         [--events N]\n"
    "         [--late-ppm P] [--dup-ppm P] [--anomaly-ppm P] [--hot-factor H]\n"
    "         [--window-ms W] [--bound-ms B] [--wm-every E]\n"
    "         [--threads T] [--state memory|rocksdb] [--state-dir DIR]\n"
    "         [--state-memory-mb M] [--source-threads 0|1]\n"
    "         [--checkpoint-dir DIR --checkpoint-interval-ms N [--output OUTDIR]\n"
    "          [--checkpoint-storage s3://BUCKET/PREFIX --s3-endpoint URL]\n"
    "          [--brokers B --output-topic O --transactional-id-prefix X]]\n"
    "Prints one JSON line: events, windows, late_dropped, total_count, sum_wh,\n"
    "digest, proc_s, events_per_s, peak_rss_mb. --salt N (DSL only) salts each meter\n"
    "over N salts (key_by().salted(N)); the digest is the unsalted one.\n"
    "dedup and dedup-baseline run query Q2 (drop retried (meter, seq), then Q1;\n"
    "plus --dedup-horizon N for the DSL's dedup_by_sequence) and add\n"
    "duplicates_dropped to the JSON.\n"
    "With --checkpoint-dir the run checkpoints every N ms (into DIR, or S3 with\n"
    "--checkpoint-storage; DIR is then the local working folder), resumes from\n"
    "the newest checkpoint found, and with --output writes each window exactly\n"
    "once as 'meter_id,start,count,sum_wh,min_v,max_v' into OUTDIR/*.csv; the\n"
    "JSON then covers this run only. With --output-topic (instead of --output)\n"
    "each window is one message of the Kafka topic O at B, exactly once (Kafka\n"
    "transactions; read it with isolation.level=read_committed).\n"
    "       meterstream-bench join|join-baseline [Q1's workload and window flags]\n"
    "         [--threads T] [--state memory|rocksdb] [--calib-versions V]\n"
    "         [--calib-period-ms P] [--calib-late-start-every L]\n"
    "Joins the readings with the calibration stream (docs/workload-calibration.md)\n"
    "by event time, then Q1 over the calibrated readings; the JSON adds\n"
    "calibration_records, joined, unmatched, versions_dropped.\n"
    "       meterstream-bench check-output --output DIR\n"
    "Reads the committed files DIR/*.csv (lines meter_id,start,count,sum_wh,min_v,max_v)\n"
    "and prints one JSON line: windows, total_count, sum_wh, digest, repeated,\n"
    "malformed, files.\n"
    "       meterstream-bench produce --brokers B --topic T [--partitions P] [--seed S]\n"
    "         [--meters K] [--events N] [--late-ppm P] [--dup-ppm P] [--anomaly-ppm P]\n"
    "         [--hot-factor H] [--skip S]\n"
    "Writes the workload's events (after the first S, with --skip) in generator order to topic T (created with P\n"
    "partitions, default 1, when missing): key = meter id (8 bytes big-endian),\n"
    "value = the 26-byte MeterReading encoding, timestamp = ts_ms, partition =\n"
    "Kafka's default (murmur2 of the key). Prints one JSON line: events, topic,\n"
    "partitions, proc_s, events_per_s.\n"
    "       meterstream-bench verify --brokers B --topic O [--timeout-s S]\n"
    "Reads O under read_committed up to the end offsets found at start (waiting up\n"
    "to S seconds, default 120, for open transactions), each value a line\n"
    "meter_id,start,count,sum_wh,min_v,max_v, and prints one JSON line: windows,\n"
    "total_count, sum_wh, digest, repeated, undecodable, records, partitions.\n"
    "       meterstream-bench kafka-q1 --brokers B --input T --output-topic O --group G\n"
    "         --transactional-id-prefix X --checkpoint-dir D --checkpoint-interval-ms N\n"
    "         [--threads T] [--state memory|rocksdb] [--state-dir DIR] [--state-memory-mb M]\n"
    "         [--window-ms W] [--bound-ms B] [--wm-every E]\n"
    "         [--delivery exactly_once|at_least_once|none]\n"
    "         [--restart-attempts A] [--restart-delay-ms MS]\n"
    "         [--bounded first-start|each-start|no] [--pace-events-per-s R]\n"
    "Runs Q1 over topic T (MeterReading values, event time ts_ms, read up to the end\n"
    "offsets found at the first start; each-start: at each start, restores included,\n"
    "so a resumed run catches up with what was appended; no: forever; consumer\n"
    "group G) and writes each fired window\n"
    "as one message 'meter_id,start,count,sum_wh,min_v,max_v' to O (exactly once by\n"
    "default: Kafka transactions, prefix X); checkpoints every N ms into D and resumes\n"
    "from the last committed checkpoint; with --restart-attempts a failed run restarts\n"
    "from it in-process. Exits 0 after the final commit. Prints one JSON line: events\n"
    "(read by this run), windows, late_dropped, total_count, sum_wh, digest, proc_s,\n"
    "events_per_s, peak_rss_mb, checkpoints, restarts, undecodable. --pace-events-per-s\n"
    "reads at most R events per second (chaos tests: the fault lands while it runs).\n"
    "       meterstream-bench kafka-consume --brokers B --topic T [--threads N]\n"
    "Reads T's MeterReadings through the Kafka source (bounded, read_committed) into\n"
    "a counting sink: the consume-only pass of bench/kafka_throughput.sh. Prints one\n"
    "JSON line: events, undecodable, sum_wh, proc_s, events_per_s, peak_rss_mb.\n"
    "       meterstream-bench alerts --redis HOST:PORT [--rate R] [--seed S] [--meters K]\n"
    "         [--events N] [--late-ppm P] [--dup-ppm P] [--anomaly-ppm P] [--hot-factor H]\n"
    "         [--window-ms W] [--bound-ms B] [--wm-every E] [--dedup-horizon N]\n"
    "         [--threads T] [--batch-size N]\n"
    "Query Q3: the events paced at R events/s (default 10000, 0 = unpaced), Q2's dedup,\n"
    "then SET NX alert:<meter_id>:<seq> '<ts_ms>,<voltage_dv>,<ingest_us>' for every\n"
    "reading below 2000 dV and HSET agg:<meter_id> <start> '<count>,<sum_wh>,<min_v>,<max_v>'\n"
    "(versioned upserts) for Q1's windows. Prints one JSON line: Q2's fields, alerts,\n"
    "alert_digest, alert_latency_p50_ms, alert_latency_p99_ms, alert_latency_max_ms\n"
    "(ingest to Redis acknowledging the write).\n";

const std::set<std::string> kQ1Flags = {
    "seed",     "meters",    "events",   "late-ppm", "dup-ppm", "anomaly-ppm", "hot-factor",
    "window-ms", "bound-ms", "wm-every", "threads",  "state",   "state-dir",
    "state-memory-mb", "source-threads", "salt", "checkpoint-dir", "checkpoint-interval-ms", "output",
    "checkpoint-storage", "s3-endpoint", "brokers", "output-topic", "transactional-id-prefix"};

// Q2 (dedup) takes Q1's flags and the dedup operator's own.
std::set<std::string> q2_flags() {
  std::set<std::string> flags = kQ1Flags;
  flags.insert("dedup-horizon");
  return flags;
}

bool is_q2(const std::string& command) {
  return command == "dedup" || command == "dedup-baseline";
}
bool is_baseline(const std::string& command) {
  return command == "q1-baseline" || command == "dedup-baseline";
}

struct Q1Config {
  ms::SmartMeterWorkload workload;
  ms::Q1Params params;
  int threads = 1;
  std::string state = "memory";
  std::string state_dir;
};

ms::StatusOr<Q1Config> parse_q1(const std::string& command,
                                const std::vector<std::string>& args) {
  MS_ASSIGN_OR_RETURN(ms::bench::Flags flags,
                      ms::bench::Flags::parse(args, is_q2(command) ? q2_flags() : kQ1Flags));
  Q1Config c;
  c.params.dedup = is_q2(command);
  MS_ASSIGN_OR_RETURN(std::uint64_t salt, flags.get_uint("salt", 1, 1, 1024));
  c.params.salt = static_cast<int>(salt);
  MS_ASSIGN_OR_RETURN(c.params.dedup_horizon,
                      flags.get_uint("dedup-horizon", c.params.dedup_horizon, 1,
                                     std::uint64_t{1} << 32));
  MS_RETURN_IF_ERROR(ms::bench::parse_workload_flags(flags, &c.workload));
  MS_RETURN_IF_ERROR(ms::bench::parse_window_flags(flags, &c.params));

  MS_ASSIGN_OR_RETURN(std::int64_t threads, flags.get_int("threads", 1, 1, 1024));
  c.threads = static_cast<int>(threads);
  MS_ASSIGN_OR_RETURN(c.state, flags.get_string("state", c.state, {"memory", "rocksdb"}));
  MS_ASSIGN_OR_RETURN(c.state_dir, flags.get_string("state-dir", c.state_dir));
  MS_ASSIGN_OR_RETURN(std::uint64_t source_threads, flags.get_uint("source-threads", 0, 0, 1));
  c.params.source_threads = source_threads == 1;
  MS_ASSIGN_OR_RETURN(c.params.state_memory_mb,
                      flags.get_uint("state-memory-mb", c.params.state_memory_mb, 1,
                                     std::uint64_t{1} << 20));
  MS_ASSIGN_OR_RETURN(c.params.checkpoint_dir, flags.get_string("checkpoint-dir", ""));
  MS_ASSIGN_OR_RETURN(c.params.checkpoint_interval_ms,
                      flags.get_int("checkpoint-interval-ms", 0, 0, std::int64_t{1} << 40));
  MS_ASSIGN_OR_RETURN(c.params.output_dir, flags.get_string("output", ""));
  MS_ASSIGN_OR_RETURN(c.params.checkpoint_storage, flags.get_string("checkpoint-storage", ""));
  MS_ASSIGN_OR_RETURN(c.params.s3_endpoint, flags.get_string("s3-endpoint", ""));
  MS_ASSIGN_OR_RETURN(c.params.brokers, flags.get_string("brokers", ""));
  MS_ASSIGN_OR_RETURN(c.params.output_topic, flags.get_string("output-topic", ""));
  MS_ASSIGN_OR_RETURN(c.params.transactional_id_prefix,
                      flags.get_string("transactional-id-prefix", ""));
  if (!c.params.output_topic.empty() &&
      (c.params.brokers.empty() || c.params.transactional_id_prefix.empty() ||
       !c.params.output_dir.empty())) {
    return absl::InvalidArgumentError(
        "--output-topic needs --brokers and --transactional-id-prefix, and excludes --output");
  }
  const bool any_checkpoint_flag = !c.params.checkpoint_dir.empty() ||
                                   c.params.checkpoint_interval_ms > 0 ||
                                   !c.params.output_dir.empty() ||
                                   !c.params.output_topic.empty() ||
                                   !c.params.checkpoint_storage.empty();
  if (any_checkpoint_flag &&
      (c.params.checkpoint_dir.empty() || c.params.checkpoint_interval_ms <= 0)) {
    return absl::InvalidArgumentError(
        "--checkpoint-dir and --checkpoint-interval-ms (> 0) go together (and --output, "
        "--checkpoint-storage need them)");
  }
  if (any_checkpoint_flag && is_baseline(command)) {
    return absl::InvalidArgumentError("the baseline does not checkpoint");
  }
  if (!c.params.s3_endpoint.empty() && c.params.checkpoint_storage.empty()) {
    return absl::InvalidArgumentError("--s3-endpoint needs --checkpoint-storage s3://...");
  }
  return c;
}

int run_q1(const std::string& command, const std::vector<std::string>& args) {
  ms::StatusOr<Q1Config> config = parse_q1(command, args);
  if (!config.ok()) {
    std::cerr << "meterstream-bench " << command << ": " << config.status().message() << "\n"
              << kUsage;
    return kExitUsage;
  }
  const Q1Config& c = *config;
  const std::vector<ms::MeterReading> events = ms::generate_smart_meter_events(c.workload);

  ms::Status error;
  ms::Q1RunInfo info;
  info.events_read = events.size();
  const auto start = std::chrono::steady_clock::now();
  const ms::Q1Totals totals =
      is_baseline(command)
          ? ms::run_q1_baseline(events, c.params)
          : ms::run_q1_pipeline(events, c.params, c.threads, c.state, c.state_dir, &error,
                                &info);
  const auto stop = std::chrono::steady_clock::now();
  if (!error.ok()) {
    std::cerr << "meterstream-bench " << command << ": " << error << "\n";
    const bool config_error = error.code() == absl::StatusCode::kInvalidArgument ||
                              error.code() == absl::StatusCode::kUnimplemented;
    return config_error ? kExitUsage : kExitFailure;
  }
  const double proc_s = std::chrono::duration<double>(stop - start).count();
  // A resumed run reports the events it read itself, and its checkpoints.
  const bool checkpointed = c.params.checkpoint_interval_ms > 0;
  auto result = ms::bench::q1_result_json(checkpointed ? info.events_read : events.size(),
                                          totals, proc_s, ms::bench::peak_rss_mb(),
                                          c.params.dedup);
  if (checkpointed) {
    result["checkpoints"] = info.checkpoints;
    result["checkpoints_failed"] = info.checkpoints_failed;
    result["checkpoint_max_sync_ms"] = info.checkpoint_max_sync_ms;
    result["checkpoint_uploaded_mb"] =
        static_cast<double>(info.checkpoint_uploaded_bytes) / (1 << 20);
  }
  std::cout << ms::bench::json_line(result);
  std::cout.flush();
  return std::cout ? 0 : kExitFailure;
}

// check-output: exit 0 when the folder could be read, whatever it holds (the
// JSON's repeated and malformed say whether the output is right).
int run_check_output(const std::vector<std::string>& args) {
  const std::string command = "check-output";
  ms::StatusOr<ms::bench::Flags> flags = ms::bench::Flags::parse(args, {"output"});
  ms::Status error = flags.status();
  if (error.ok() && !flags->has("output")) {
    error = absl::InvalidArgumentError("flag --output DIR is required");
  }
  if (!error.ok()) {
    std::cerr << "meterstream-bench " << command << ": " << error.message() << "\n" << kUsage;
    return kExitUsage;
  }
  // A flag without choices always has its string value.
  const std::string dir = flags->get_string("output", "").value_or("");
  ms::StatusOr<ms::bench::OutputCheck> check = ms::bench::check_q1_output(dir);
  if (!check.ok()) {
    std::cerr << "meterstream-bench " << command << ": " << check.status() << "\n";
    const bool config_error = check.status().code() == absl::StatusCode::kInvalidArgument ||
                              check.status().code() == absl::StatusCode::kNotFound;
    return config_error ? kExitUsage : kExitFailure;
  }
  std::cout << ms::bench::json_line(ms::bench::output_check_json(*check));
  std::cout.flush();
  return std::cout ? 0 : kExitFailure;
}

// Usage errors exit 2; a broker that does not answer or a failed write 1.
int exit_code(const ms::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

ms::StatusOr<ms::bench::ProduceOptions> parse_produce(const std::vector<std::string>& args) {
  MS_ASSIGN_OR_RETURN(ms::bench::Flags flags,
                      ms::bench::Flags::parse(args, {"brokers", "topic", "partitions", "seed",
                                                     "meters", "events", "late-ppm", "dup-ppm",
                                                     "anomaly-ppm", "hot-factor", "skip"}));
  ms::bench::ProduceOptions o;
  for (const char* required : {"brokers", "topic"}) {
    if (!flags.has(required)) {
      return absl::InvalidArgumentError(std::string("flag --") + required + " is required");
    }
  }
  MS_ASSIGN_OR_RETURN(o.brokers, flags.get_string("brokers", ""));
  MS_ASSIGN_OR_RETURN(o.topic, flags.get_string("topic", ""));
  MS_ASSIGN_OR_RETURN(std::int64_t partitions, flags.get_int("partitions", 1, 1, 1 << 20));
  o.partitions = static_cast<std::int32_t>(partitions);
  MS_ASSIGN_OR_RETURN(o.skip, flags.get_uint("skip", 0));
  MS_RETURN_IF_ERROR(ms::bench::parse_workload_flags(flags, &o.workload));
  return o;
}

int run_produce(const std::vector<std::string>& args) {
  ms::StatusOr<ms::bench::ProduceOptions> o = parse_produce(args);
  if (!o.ok()) {
    std::cerr << "meterstream-bench produce: " << o.status().message() << "\n" << kUsage;
    return kExitUsage;
  }
  ms::StatusOr<ms::bench::ProduceResult> result = ms::bench::produce_workload(*o);
  if (!result.ok()) {
    std::cerr << "meterstream-bench produce: " << result.status() << "\n";
    return exit_code(result.status());
  }
  std::cout << ms::bench::json_line(ms::bench::produce_json(*o, *result));
  std::cout.flush();
  return std::cout ? 0 : kExitFailure;
}

// verify: exit 0 when the topic could be read, whatever it holds (repeated
// and undecodable say whether the output is right).
int run_verify(const std::vector<std::string>& args) {
  ms::StatusOr<ms::bench::Flags> flags =
      ms::bench::Flags::parse(args, {"brokers", "topic", "timeout-s"});
  ms::Status error = flags.status();
  ms::bench::VerifyOptions o;
  if (error.ok()) {
    for (const char* required : {"brokers", "topic"}) {
      if (error.ok() && !flags->has(required)) {
        error = absl::InvalidArgumentError(std::string("flag --") + required + " is required");
      }
    }
  }
  if (error.ok()) {
    o.brokers = flags->get_string("brokers", "").value_or("");
    o.topic = flags->get_string("topic", "").value_or("");
    ms::StatusOr<std::int64_t> timeout = flags->get_int("timeout-s", 120, 1, 86400);
    error = timeout.status();
    if (timeout.ok()) o.timeout = std::chrono::seconds(*timeout);
  }
  if (!error.ok()) {
    std::cerr << "meterstream-bench verify: " << error.message() << "\n" << kUsage;
    return kExitUsage;
  }
  ms::StatusOr<ms::bench::KafkaOutputCheck> check = ms::bench::verify_kafka_output(o);
  if (!check.ok()) {
    std::cerr << "meterstream-bench verify: " << check.status() << "\n";
    return exit_code(check.status());
  }
  std::cout << ms::bench::json_line(ms::bench::kafka_verify_json(*check));
  std::cout.flush();
  return std::cout ? 0 : kExitFailure;
}

// kafka-q1: Q1 from a Kafka topic to a Kafka topic (issue 9, bench point 4).
ms::StatusOr<Q1Config> parse_kafka_q1(const std::vector<std::string>& args) {
  MS_ASSIGN_OR_RETURN(
      ms::bench::Flags flags,
      ms::bench::Flags::parse(
          args, {"brokers", "input", "output-topic", "group", "transactional-id-prefix",
                 "checkpoint-dir", "checkpoint-interval-ms", "threads", "state", "state-dir",
                 "state-memory-mb", "window-ms", "bound-ms", "wm-every", "delivery",
                 "restart-attempts", "restart-delay-ms", "bounded", "pace-events-per-s"}));
  Q1Config c;
  ms::Q1Params& q = c.params;
  MS_ASSIGN_OR_RETURN(q.kafka_bounded, flags.get_string("bounded", q.kafka_bounded,
                                                        {"first-start", "each-start", "no"}));
  MS_ASSIGN_OR_RETURN(q.kafka_delivery,
                      flags.get_string("delivery", q.kafka_delivery,
                                       {"exactly_once", "at_least_once", "none"}));
  for (const char* required : {"brokers", "input", "output-topic", "group", "checkpoint-dir",
                               "checkpoint-interval-ms"}) {
    if (!flags.has(required)) {
      return absl::InvalidArgumentError(std::string("flag --") + required + " is required");
    }
  }
  if (q.kafka_delivery == "exactly_once" && !flags.has("transactional-id-prefix")) {
    return absl::InvalidArgumentError(
        "flag --transactional-id-prefix is required with --delivery exactly_once");
  }
  MS_ASSIGN_OR_RETURN(q.brokers, flags.get_string("brokers", ""));
  MS_ASSIGN_OR_RETURN(q.input_topic, flags.get_string("input", ""));
  MS_ASSIGN_OR_RETURN(q.output_topic, flags.get_string("output-topic", ""));
  MS_ASSIGN_OR_RETURN(q.input_group, flags.get_string("group", ""));
  MS_ASSIGN_OR_RETURN(q.transactional_id_prefix,
                      flags.get_string("transactional-id-prefix", ""));
  MS_ASSIGN_OR_RETURN(q.checkpoint_dir, flags.get_string("checkpoint-dir", ""));
  MS_ASSIGN_OR_RETURN(q.checkpoint_interval_ms,
                      flags.get_int("checkpoint-interval-ms", 0, 1, std::int64_t{1} << 40));
  MS_RETURN_IF_ERROR(ms::bench::parse_window_flags(flags, &q));
  MS_ASSIGN_OR_RETURN(std::int64_t threads, flags.get_int("threads", 1, 1, 1024));
  c.threads = static_cast<int>(threads);
  MS_ASSIGN_OR_RETURN(c.state, flags.get_string("state", c.state, {"memory", "rocksdb"}));
  MS_ASSIGN_OR_RETURN(c.state_dir, flags.get_string("state-dir", c.state_dir));
  MS_ASSIGN_OR_RETURN(q.state_memory_mb,
                      flags.get_uint("state-memory-mb", q.state_memory_mb, 1,
                                     std::uint64_t{1} << 20));
  MS_ASSIGN_OR_RETURN(std::int64_t attempts, flags.get_int("restart-attempts", 0, 0, 1000000));
  q.restart_attempts = static_cast<int>(attempts);
  MS_ASSIGN_OR_RETURN(q.restart_delay_ms,
                      flags.get_int("restart-delay-ms", q.restart_delay_ms, 0, 3600000));
  MS_ASSIGN_OR_RETURN(q.pace_events_per_s,
                      flags.get_int("pace-events-per-s", 0, 0, std::int64_t{1} << 40));
  return c;
}

int run_kafka_q1(const std::vector<std::string>& args) {
  const std::string command = "kafka-q1";
  ms::StatusOr<Q1Config> config = parse_kafka_q1(args);
  if (!config.ok()) {
    std::cerr << "meterstream-bench " << command << ": " << config.status().message() << "\n"
              << kUsage;
    return kExitUsage;
  }
  const Q1Config& c = *config;
  ms::Status error;
  ms::Q1RunInfo info;
  const auto start = std::chrono::steady_clock::now();
  const ms::Q1Totals totals =
      ms::run_q1_pipeline({}, c.params, c.threads, c.state, c.state_dir, &error, &info);
  const auto stop = std::chrono::steady_clock::now();
  if (!error.ok()) {
    std::cerr << "meterstream-bench " << command << ": " << error << "\n";
    return exit_code(error);
  }
  const double proc_s = std::chrono::duration<double>(stop - start).count();
  auto result =
      ms::bench::q1_result_json(info.events_read, totals, proc_s, ms::bench::peak_rss_mb());
  result["checkpoints"] = info.checkpoints;
  result["checkpoints_failed"] = info.checkpoints_failed;
  result["restarts"] = info.restarts;
  result["undecodable"] = info.undecodable;
  std::cout << ms::bench::json_line(result);
  std::cout.flush();
  return std::cout ? 0 : kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "-h" || command == "--help" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "q1" || command == "q1-baseline" || is_q2(command)) return run_q1(command, args);
  if (command == "join" || command == "join-baseline") return ms::run_join_command(command, args);
  if (command == "check-output") return run_check_output(args);
  if (command == "produce") return run_produce(args);
  if (command == "verify") return run_verify(args);
  if (command == "kafka-q1") return run_kafka_q1(args);
  if (command == "alerts") return ms::bench::run_alerts(args, kUsage);
  if (command == "kafka-consume") return ms::bench::run_kafka_consume(args, kUsage);
  std::cerr << "meterstream-bench: unknown sub-command '" << command << "'\n" << kUsage;
  return kExitUsage;
}
