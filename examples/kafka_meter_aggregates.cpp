// kafka_meter_aggregates: smart-meter readings from Kafka, retries dropped,
// per-meter one-minute aggregates written back to Kafka exactly once.
//
//   Kafka topic --input (MeterReading values; one split per partition)
//        |
//        | kafka_source (offsets: checkpoints, group --group)
//        |------------------------------.
//        |                              | undecodable(): "kafka <topic>/
//        |                              |   <partition>@<offset>: <reason>"
//        |                              v
//        |                       kafka_sink --dead-letter (at least once)
//        |  with_watermarks: out-of-orderness 5 min, per partition
//        v
//   key_by(meter_id) ........ exchange: every worker to every worker
//        |
//        v
//   dedup_by_sequence(seq) .. drops retries (same meter, same seq)
//        |
//        v
//   window(tumbling 1 min) + aggregate(count, sum wh, min/max voltage)
//        |                              |
//        | one message per window       | late(): after their window
//        v                              |   fired (counted)
//   kafka_sink --output, exactly once: one Kafka transaction per
//   checkpoint, committed with the source's offsets (transactional ids
//   "<prefix>-0-<slot>"); key = meter id (8 bytes big-endian), value =
//   "meter_id,start,count,sum_wh,min_v,max_v"
//
//   checkpoints: every second into --checkpoint-dir; a restart with the same
//   flags resumes from the checkpoint that the last Kafka commit names.
//
// Usage:
//   kafka_meter_aggregates --brokers B --input T --output O --dead-letter D
//                          --group G --prefix X --checkpoint-dir DIR
//                          [--bounded] [--at-least-once] [--threads N]
//                          [--checkpoint-interval-ms N]
//   kafka_meter_aggregates --mock [--events N] [--meters K]
//                          --checkpoint-dir DIR
//
// The topics must exist (nothing is created); `meterstream-bench produce`
// writes the workload into --input. Read --output with
// isolation.level=read_committed. Without --bounded the job runs until
// Ctrl-C (SIGINT/SIGTERM): it then stops without committing the open epoch,
// which the next run writes again (aborted records are never read).
//
// --mock starts librdkafka's in-process mock cluster and produces the
// workload (and three undecodable records) into it. The mock cluster does not
// implement transactions, so both sinks are at least once there, and the
// program says so: use a real broker (scripts/kafka-broker) for exactly once.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <meterstream/meterstream.hpp>

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

// Per meter and minute: readings, energy, and the voltage range.
struct Usage {
  struct Acc {
    std::uint64_t count = 0;
    std::uint64_t sum_wh = 0;
    std::uint32_t min_v = std::numeric_limits<std::uint32_t>::max();
    std::uint32_t max_v = 0;
  };
  using accumulator_type = Acc;
  Acc create() const { return Acc{}; }
  void add(Acc& a, const ms::MeterReading& r) const {
    ++a.count;
    a.sum_wh += r.wh;
    a.min_v = std::min<std::uint32_t>(a.min_v, r.voltage_dv);
    a.max_v = std::max<std::uint32_t>(a.max_v, r.voltage_dv);
  }
  void merge(Acc& a, const Acc& b) const {
    a.count += b.count;
    a.sum_wh += b.sum_wh;
    a.min_v = std::min(a.min_v, b.min_v);
    a.max_v = std::max(a.max_v, b.max_v);
  }
  Acc result(const Acc& a) const { return a; }
};

using UsageWindow = ms::WindowResult<std::uint64_t, Usage::Acc>;

// The output message of one window.
ms::KafkaRecord to_message(const UsageWindow& w) {
  ms::KafkaRecord m;
  m.key = ms::encode_meter_key(w.key);
  m.has_key = true;
  m.value = std::to_string(w.key) + "," + std::to_string(w.start) + "," +
            std::to_string(w.value.count) + "," +
            std::to_string(w.value.sum_wh) + "," +
            std::to_string(w.value.min_v) + "," + std::to_string(w.value.max_v);
  return m;
}

// The dead-letter message of an undecodable record: the source's description
// ("kafka <topic>/<partition>@<offset>: <reason>") as the value, and its
// "<topic>/<partition>@<offset>" as the key, so a compacted dead-letter topic
// keeps one message per bad record.
ms::KafkaRecord to_dead_letter(const std::string& description) {
  ms::KafkaRecord m;
  m.value = description;
  constexpr std::string_view kPrefix = "kafka ";
  const std::size_t colon = description.find(": ");
  if (description.rfind(kPrefix, 0) == 0 && colon != std::string::npos) {
    m.key = description.substr(kPrefix.size(), colon - kPrefix.size());
    m.has_key = true;
  }
  return m;
}

struct Flags {
  std::string brokers;
  std::string input = "readings";
  std::string output = "meter-aggregates";
  std::string dead_letter = "readings-dead-letter";
  std::string group = "kafka-meter-aggregates";
  std::string prefix = "kafka-meter-aggregates";
  std::string checkpoint_dir;
  std::uint64_t checkpoint_interval_ms = 1000;
  std::uint64_t threads = 0;  // 0: one per core
  bool bounded = false;
  bool at_least_once = false;
  bool mock = false;
  std::uint64_t events = 100000;  // --mock only
  std::uint64_t meters = 1000;    // --mock only
};

constexpr const char* kUsage =
    "usage: kafka_meter_aggregates --brokers B [--input T] [--output O] "
    "[--dead-letter D]\n"
    "                              [--group G] [--prefix X] --checkpoint-dir "
    "DIR\n"
    "                              [--bounded] [--at-least-once] [--threads "
    "N]\n"
    "                              [--checkpoint-interval-ms N]\n"
    "       kafka_meter_aggregates --mock [--events N] [--meters K] "
    "--checkpoint-dir DIR\n"
    "\n"
    "Reads MeterReadings (26-byte values, as `meterstream-bench produce` "
    "writes them)\n"
    "from --input (default readings), drops retried readings by (meter_id, "
    "seq),\n"
    "aggregates each meter's readings per minute of event time (count, sum of "
    "wh,\n"
    "min and max voltage) and writes one message per window to --output "
    "(default\n"
    "meter-aggregates): key = meter id, value = "
    "meter_id,start,count,sum_wh,min_v,max_v.\n"
    "Undecodable input records go to --dead-letter (default "
    "readings-dead-letter) as\n"
    "\"kafka <topic>/<partition>@<offset>: <reason>\". The topics must exist.\n"
    "\n"
    "Guarantees:\n"
    "  --brokers: --output exactly once under isolation.level=read_committed: "
    "one\n"
    "    transaction per checkpoint (--checkpoint-interval-ms, default 1000),\n"
    "    transactional ids <prefix>-0-0 and <prefix>-0-1 (--prefix, default\n"
    "    kafka-meter-aggregates; one live job per prefix), committed with the "
    "offsets\n"
    "    of --group. Killed at any moment and restarted with the same flags, "
    "it\n"
    "    resumes from the last committed checkpoint: nothing lost, nothing "
    "doubled.\n"
    "    --dead-letter is at least once (a restart may repeat a bad record's "
    "message).\n"
    "  --at-least-once: --output at least once instead (no transactions; a "
    "restart\n"
    "    repeats the windows since the last checkpoint), to compare the cost.\n"
    "  --bounded: read up to the end offsets found at the first start, then "
    "finish;\n"
    "    otherwise run until SIGINT/SIGTERM.\n"
    "  --mock: librdkafka's in-process mock cluster, filled with --events "
    "readings of\n"
    "    --meters meters (defaults 100000, 1000) and 3 undecodable records. "
    "The mock\n"
    "    does not implement transactions: both outputs are at least once "
    "only.\n";

bool parse_uint(std::string_view text, std::uint64_t* out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

// Returns 0 to run, or the exit code (after printing why).
int parse_flags(int argc, char** argv, Flags* f) {
  const std::map<std::string_view, std::string*> strings = {
      {"--brokers", &f->brokers},
      {"--input", &f->input},
      {"--output", &f->output},
      {"--dead-letter", &f->dead_letter},
      {"--group", &f->group},
      {"--prefix", &f->prefix},
      {"--checkpoint-dir", &f->checkpoint_dir}};
  const std::map<std::string_view, std::uint64_t*> numbers = {
      {"--threads", &f->threads},
      {"--checkpoint-interval-ms", &f->checkpoint_interval_ms},
      {"--events", &f->events},
      {"--meters", &f->meters}};
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return -1;
    }
    if (arg == "--bounded" || arg == "--mock" || arg == "--at-least-once") {
      (arg == "--mock"      ? f->mock
       : arg == "--bounded" ? f->bounded
                            : f->at_least_once) = true;
      continue;
    }
    const auto s = strings.find(arg);
    const auto n = numbers.find(arg);
    if (s == strings.end() && n == numbers.end()) {
      std::fprintf(stderr, "kafka_meter_aggregates: unknown flag %s\n%s",
                   argv[i], kUsage);
      return 2;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "kafka_meter_aggregates: %s needs a value\n",
                   argv[i]);
      return 2;
    }
    const std::string_view value = argv[++i];
    if (s != strings.end()) {
      *s->second = std::string(value);
    } else if (!parse_uint(value, n->second)) {
      std::fprintf(stderr, "kafka_meter_aggregates: %s %s: not a number\n",
                   argv[i - 1], argv[i]);
      return 2;
    }
  }
  if (f->mock == !f->brokers.empty()) {
    std::fprintf(
        stderr,
        "kafka_meter_aggregates: give --brokers or --mock (one of them)\n%s",
        kUsage);
    return 2;
  }
  if (f->checkpoint_dir.empty()) {
    std::fprintf(stderr,
                 "kafka_meter_aggregates: --checkpoint-dir is required\n%s",
                 kUsage);
    return 2;
  }
  if (f->mock && f->events > 320000) {
    std::fprintf(
        stderr,
        "kafka_meter_aggregates: --mock: at most 320000 events (the mock "
        "cluster keeps "
        "about 100000 messages per partition; use a real broker for more)\n");
    return 2;
  }
  if (f->checkpoint_interval_ms == 0 || f->threads > 128) {
    std::fprintf(
        stderr,
        "kafka_meter_aggregates: --checkpoint-interval-ms must be >= 1 and "
        "--threads at most 128\n");
    return 2;
  }
  return 0;
}

constexpr int kMockPartitions = 4;

// Starts the mock cluster, creates the three topics and produces the
// workload's readings (partitioned by meter id), then three records that do
// not decode.
ms::Status fill_mock_cluster(const Flags& f,
                             std::unique_ptr<ms::KafkaMockCluster>* cluster) {
  ms::SmartMeterWorkload workload;
  workload.events = f.events;
  workload.meters = f.meters;
  MS_RETURN_IF_ERROR(workload.validate());
  MS_ASSIGN_OR_RETURN(*cluster, ms::KafkaMockCluster::start());
  MS_RETURN_IF_ERROR((*cluster)->create_topic(f.input, kMockPartitions));
  MS_RETURN_IF_ERROR((*cluster)->create_topic(f.output, kMockPartitions));
  MS_RETURN_IF_ERROR((*cluster)->create_topic(f.dead_letter, 1));
  ms::SmartMeterGenerator gen(workload);
  std::vector<ms::KafkaMessage> batch;
  ms::MeterReading r;
  bool more = true;
  while (more) {
    batch.clear();
    while (batch.size() < 50000 && (more = gen.next(&r))) {
      ms::KafkaMessage m;
      m.key = ms::encode_meter_key(r.meter_id);
      m.value = ms::encode_meter_reading(r);
      m.partition = static_cast<std::int32_t>(r.meter_id % kMockPartitions);
      m.timestamp_ms = r.ts_ms;
      batch.push_back(std::move(m));
    }
    MS_RETURN_IF_ERROR((*cluster)->produce(f.input, batch));
  }
  std::vector<ms::KafkaMessage> garbage(3);
  garbage[0].value = "not a reading";
  garbage[1].value = "";
  garbage[2].value = std::string(27, 'x');  // one byte too long
  for (std::size_t i = 0; i < garbage.size(); ++i) {
    garbage[i].partition = static_cast<std::int32_t>(i % kMockPartitions);
  }
  return (*cluster)->produce(f.input, garbage);
}

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }

int fail(const char* what, const ms::Status& status) {
  std::fprintf(stderr, "kafka_meter_aggregates: %s: %s\n", what,
               status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (int rc = parse_flags(argc, argv, &f); rc != 0) return rc < 0 ? 0 : rc;

  std::unique_ptr<ms::KafkaMockCluster> cluster;
  if (f.mock) {
    if (ms::Status s = fill_mock_cluster(f, &cluster); !s.ok())
      return fail("mock cluster", s);
    f.brokers = cluster->bootstrap_servers();
    f.bounded = true;
    std::printf(
        "mock cluster at %s: %llu readings (+3 undecodable) in '%s' (%d "
        "partitions)\n"
        "NOTE: the mock cluster does not implement transactions: the output "
        "is\n"
        "AT LEAST ONCE here, not exactly once. Use a real broker "
        "(scripts/kafka-broker)\n"
        "for exactly once.\n",
        f.brokers.c_str(), static_cast<unsigned long long>(f.events),
        f.input.c_str(), kMockPartitions);
  }
  const bool exactly_once = !f.mock && !f.at_least_once;

  // Input: every partition of --input, offsets in checkpoints and committed
  // to --group (inside the output's transactions).
  ms::KafkaSourceOptions in;
  in.brokers = f.brokers;
  in.topics = {f.input};
  in.group_id = f.group;
  in.bounded = f.bounded;

  ms::KafkaSinkOptions out;
  out.brokers = f.brokers;
  out.topic = f.output;
  out.delivery = exactly_once ? ms::KafkaDelivery::kExactlyOnce
                              : ms::KafkaDelivery::kAtLeastOnce;
  out.transactional_id_prefix = f.prefix;
  // An epoch's transaction stays open until the checkpoint after it commits.
  out.transaction_timeout = std::max<std::chrono::milliseconds>(
      60s, 3 * std::chrono::milliseconds(f.checkpoint_interval_ms));

  ms::KafkaSinkOptions dead;
  dead.brokers = f.brokers;
  dead.topic = f.dead_letter;
  dead.delivery = ms::KafkaDelivery::kAtLeastOnce;

  ms::Pipeline p;
  auto readings = p.source(
      ms::kafka_source<ms::MeterReading>(in, ms::kafka_meter_reading()));
  readings.undecodable().sink(
      ms::kafka_sink<std::string>(dead, to_dead_letter));
  // Watermarks after every 1000th reading of a partition, and only then
  // (with_emit_on_no_data(false)): which readings are late then depends on
  // the readings alone, never on when fetches arrive, so a restarted job
  // judges them exactly as an uninterrupted one (docs/kafka.md,
  // determinism). A partition without data for a minute stops holding the
  // others back.
  const auto watermarks = ms::bounded_out_of_orderness(5min)
                              .with_emit_on_no_data(false)
                              .with_idleness(1min);
  auto usage = readings.with_watermarks(watermarks, &ms::MeterReading::ts_ms)
                   .key_by(&ms::MeterReading::meter_id)
                   .dedup_by_sequence(&ms::MeterReading::seq)
                   .window(ms::tumbling(1min))
                   .aggregate(Usage{});
  usage.sink(ms::kafka_sink<UsageWindow>(out, to_message));

  ms::JobOptions options;
  if (f.threads > 0) options.parallelism = static_cast<int>(f.threads);
  auto storage =
      ms::make_local_checkpoint_storage({f.checkpoint_dir + "/checkpoints"});
  if (!storage.ok()) return fail("checkpoint storage", storage.status());
  options.checkpoint = ms::enable_checkpointing(
      std::chrono::milliseconds(f.checkpoint_interval_ms), *std::move(storage));
  options.checkpoint.local_dir = f.checkpoint_dir + "/work";
  options.checkpoint.restore = ms::RestoreFrom::latest();

  std::printf(
      "reading '%s' from %s%s, windows -> '%s' (%s), undecodable -> '%s' "
      "(at least once)\ncheckpoints -> %s/checkpoints every %llu ms\n",
      f.input.c_str(), f.brokers.c_str(),
      f.bounded ? " up to its end offsets" : " until SIGINT/SIGTERM",
      f.output.c_str(),
      exactly_once ? "exactly once, transactional"
      : f.mock     ? "at least once: mock cluster"
                   : "at least once: --at-least-once",
      f.dead_letter.c_str(), f.checkpoint_dir.c_str(),
      static_cast<unsigned long long>(f.checkpoint_interval_ms));
  std::fflush(stdout);

  ms::StatusOr<ms::Job> job = p.build(options);
  if (!job.ok()) return fail("build", job.status());
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const auto t0 = std::chrono::steady_clock::now();
  if (ms::Status s = job->start(); !s.ok()) return fail("start", s);

  auto last_print = t0;
  bool cancelled = false;
  while (!job->finished()) {
    std::this_thread::sleep_for(50ms);
    if (g_stop.load() && !cancelled) {
      std::printf(
          "stopping: the open epoch is not committed; a restart writes it "
          "again\n");
      job->cancel();
      cancelled = true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_print >= 5s) {
      auto m = job->metrics();
      std::printf(
          "[%6.1f s] events %lld  windows %lld  transactions %lld\n",
          std::chrono::duration<double>(now - t0).count(),
          static_cast<long long>(m["source_records"]),
          static_cast<long long>(m["window_results"]),
          static_cast<long long>(m["kafka_sink_transactions_committed"]));
      std::fflush(stdout);
      last_print = now;
    }
  }
  const ms::Status result = job->wait();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  if (!result.ok() && !(cancelled && absl::IsCancelled(result)))
    return fail("run", result);

  auto m = job->metrics();
  const auto count = [&](const char* name) {
    return static_cast<unsigned long long>(m[name]);
  };
  std::printf("\n%s (this run; a resumed run counts from its checkpoint)\n",
              cancelled ? "stopped" : "done");
  std::printf("  events                  %llu\n", count("source_records"));
  std::printf("  undecodable             %llu  (-> '%s')\n",
              count("source_undecodable"), f.dead_letter.c_str());
  std::printf("  duplicates              %llu\n", count("dedup_dropped"));
  std::printf("  late                    %llu\n", count("window_late_records"));
  std::printf("  windows                 %llu  (-> '%s')\n",
              count("window_results"), f.output.c_str());
  std::printf("  transactions committed  %llu%s\n",
              count("kafka_sink_transactions_committed"),
              exactly_once ? "" : "  (none: at least once)");
  std::printf("  checkpoints             %llu\n",
              count("checkpoints_completed"));
  std::printf(
      "  elapsed                 %.2f s (%.0f events/s)\n", elapsed,
      elapsed > 0 ? static_cast<double>(m["source_records"]) / elapsed : 0.0);
  return 0;
}
