// smart_meter: the README's demo. Query Q1 of the smart-meter workload
// (bench/WORKLOAD.md: per meter and minute, count, energy and voltage range),
// or with --dedup query Q2 (retried readings dropped first), with live
// progress, the late readings in a CSV file and the digest at the end.
//
//   smart_meter_source (deterministic generator, one split)
//        |  with_watermarks: bounded out-of-orderness 5 min, ts = ts_ms
//        |
//        +--> filter(voltage < 200 V) --> callback_sink: counts voltage sags
//        |    (a second consumer of the same readings: records are shared)
//        v
//   key_by(meter_id) ............ exchange: every worker to every worker
//        |
//        v
//   dedup_by_sequence(seq) ...... with --dedup: drops retries (same meter, same seq)
//        |
//        v
//   window(tumbling 1 min) + aggregate(count, sum wh, min/max voltage)
//        |                                   |
//        | results                           | late(): readings after their window fired
//        v                                   v
//   Q1TotalsSink                        file_sink <tmp>/late.csv
//   (digest, first 20 windows
//    printed to stdout)
//        +--> with --redis: redis_sink, every window as an idempotent upsert
//
//   main thread: job.start(), then a progress line every 500 ms from
//   job.metrics() until job.wait() returns, then the summary.
//
// Usage: smart_meter [--meters N] [--events N] [--threads N] [--dedup]
//                    [--checkpoint-dir DIR [--checkpoint-interval-ms N] --output OUT]
//                    [--kafka | --brokers B --topic T]
//                    [--redis HOST:PORT [--redis-prefix P]]
//   defaults: 100000 meters, 20000000 events, one thread per core.
//
//   With --redis every window is also written to Redis (docs/redis.md) as a
//   versioned upsert: hash "<P>q1:<meter>" (P defaults to "smart_meter:"),
//   field "<window start ms>", value the line "meter_id,start,count,sum_wh,
//   min_v,max_v", version the window's count. Running the same command
//   again, or resuming it from a checkpoint, leaves the same content.
//
//   With --kafka the readings come from Kafka instead of the generator, with
//   no setup: the demo starts librdkafka's in-process mock cluster, produces
//   the workload into a 4-partition topic (key = meter id, value = the 26-byte
//   MeterReading encoding; 200000 events unless --events says otherwise, at
//   most 320000 since the mock keeps ~100000 messages per partition), then
//   runs the query from it with a bounded kafka_source (one split per
//   partition, watermarks per partition). With --brokers B --topic T it reads
//   the topic T of a real cluster instead (written by `meterstream-bench
//   produce`), bounded to the end offsets found at start.
//
//   With --checkpoint-dir the job checkpoints into DIR (every second by
//   default), resumes from the newest checkpoint there, and writes every window
//   exactly once as a line "meter_id,start,count,sum_wh,min_v,max_v" into
//   OUT/*.csv (other names in OUT are staging). Kill it (kill -9, Ctrl-C) and
//   start it again with the same command, as often as you like: the summary
//   reads OUT back, and its digest is that of an uninterrupted run.
//   `--events 2000000` gives WORKLOAD.md's second expected row of Q1
//   (windows 604479, late 9120, digest 3609725919852728751), and with
//   --dedup that of Q2 (late 9072, duplicates 9909, digest 2343734365286260326).
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <meterstream/meterstream.hpp>

// Query Q1 itself (its aggregate, totals and digest, the output line format)
// is the benchmark's, shared with it rather than copied.
#include "bench/output_check.hpp"
#include "bench/q1.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;
using ms::Q1Aggregate;
using ms::Q1Result;

namespace {

std::string utc(ms::Timestamp ms_since_epoch) {
  if (ms_since_epoch == ms::kMinTimestamp) return "-";
  if (ms_since_epoch == ms::kMaxTimestamp) return "end of input";
  const std::time_t secs = static_cast<std::time_t>(ms_since_epoch / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return std::string(buf) + " UTC";
}

// Folds fired windows into per-worker Q1Totals (no lock on the hot path),
// merged when the writers close; prints the first 20 windows it sees.
class Q1TotalsSink final : public ms::Sink<Q1Result> {
 public:
  std::string name() const override { return "q1-totals"; }
  ms::StatusOr<std::unique_ptr<ms::SinkWriter<Q1Result>>> create_writer(int, int) override {
    return std::unique_ptr<ms::SinkWriter<Q1Result>>(std::make_unique<Writer>(this));
  }
  ms::Q1Totals totals() const {
    std::lock_guard<std::mutex> lock(mu_);
    return totals_;
  }

 private:
  class Writer final : public ms::SinkWriter<Q1Result> {
   public:
    explicit Writer(Q1TotalsSink* sink) : sink_(sink) {}
    ms::Status write(const ms::RecordBatch<Q1Result>& batch) override {
      for (const Q1Result& r : batch.values) {
        local_.add_window(r.key, r.start, r.value.count, r.value.sum_wh, r.value.min_v,
                          r.value.max_v);
        if (sink_->printed_.load(std::memory_order_relaxed) < 20) print(r);
      }
      return ms::Status();
    }
    ms::Status close() override {
      std::lock_guard<std::mutex> lock(sink_->mu_);
      sink_->totals_.merge(local_);
      return ms::Status();
    }

   private:
    void print(const Q1Result& r) {
      if (sink_->printed_.fetch_add(1) >= 20) return;
      std::lock_guard<std::mutex> lock(sink_->mu_);
      std::printf("  window meter=%-6llu %s  count=%llu wh=%llu voltage=%.1f..%.1f V\n",
                  static_cast<unsigned long long>(r.key), utc(r.start).c_str(),
                  static_cast<unsigned long long>(r.value.count),
                  static_cast<unsigned long long>(r.value.sum_wh), r.value.min_v / 10.0,
                  r.value.max_v / 10.0);
    }

    Q1TotalsSink* sink_;
    ms::Q1Totals local_;
  };

  mutable std::mutex mu_;
  ms::Q1Totals totals_;
  std::atomic<int> printed_{0};
};

struct Flags {
  std::uint64_t meters = 100000;
  std::uint64_t events = 20000000;
  int threads = ms::default_parallelism();
  bool dedup = false;
  std::string checkpoint_dir;
  std::uint64_t checkpoint_interval_ms = 1000;
  std::string output;
  bool kafka_mock = false;
  bool events_given = false;
  std::string brokers;
  std::string topic;
  std::string redis;  // host:port
  std::string redis_prefix = "smart_meter:";
  bool help = false;
};

constexpr const char* kUsage =
    "usage: smart_meter [--meters N (>= 2)] [--events N (>= 1)] [--threads N (1..128)]\n"
    "                   [--dedup] [--checkpoint-dir DIR [--checkpoint-interval-ms N]\n"
    "                   --output OUT] [--kafka | --brokers B --topic T]\n"
    "                   [--redis HOST:PORT [--redis-prefix P]]\n";

constexpr const char* kHelp =
    "\n"
    "Runs query Q1 of the smart-meter workload (per meter and minute of event time:\n"
    "count, energy, voltage range), or with --dedup Q2 (retried readings dropped first),\n"
    "prints progress, the first windows, and the totals with their digest.\n"
    "\n"
    "Where the readings come from, and what each mode guarantees:\n"
    "  (default)   the deterministic generator (--meters, --events): the same flags give\n"
    "              the same windows, late readings and digest at any --threads\n"
    "              (--events 2000000 gives WORKLOAD.md's reference digests).\n"
    "  --kafka     librdkafka's in-process mock cluster, no setup: the workload (200000\n"
    "              events unless --events, at most 320000) is produced into a 4-partition\n"
    "              topic and read back bounded. With 4 partitions, which readings are late\n"
    "              depends on how the partitions interleave, so late counts and the digest\n"
    "              may differ from the generator's and between runs. The mock does not\n"
    "              implement transactions: it is a demo of the source, not of exactly once.\n"
    "  --brokers B --topic T\n"
    "              a real Kafka cluster (e.g. scripts/kafka-broker start DIR), topic T as\n"
    "              written by `meterstream-bench produce`, read under read_committed up to\n"
    "              the end offsets found at start (--meters/--events are ignored: the topic\n"
    "              decides). With one partition the results equal the generator's for the\n"
    "              same workload; with several they are exact when the topic has no record\n"
    "              later than the 5-minute bound within its partition (produce --late-ppm 0).\n"
    "Output:\n"
    "  (default)   totals only, in memory; nothing survives a crash.\n"
    "  --checkpoint-dir DIR --output OUT\n"
    "              checkpoints every --checkpoint-interval-ms (default 1000) into DIR and\n"
    "              every window exactly once as a line in OUT/*.csv: kill it at any moment\n"
    "              and run the same command again, it resumes from its newest checkpoint\n"
    "              (for Kafka input, the partitions' offsets are in the checkpoint).\n"
    "  --redis HOST:PORT [--redis-prefix P]\n"
    "              also every window to Redis as an idempotent, versioned upsert: hash\n"
    "              <P>q1:<meter> (P: smart_meter:), field <window start ms>, value the\n"
    "              window's line; a rerun or a resumed run leaves the same content\n"
    "              (docs/redis.md).\n";

bool parse_uint(std::string_view text, std::uint64_t* out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

// Returns false (after printing why) on a bad command line.
bool parse_flags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--dedup") {
      flags->dedup = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      std::printf("%s%s", kUsage, kHelp);
      flags->help = true;
      return true;
    }
    if (arg == "--kafka") {
      flags->kafka_mock = true;
      continue;
    }
    std::string_view value;
    std::string_view name = arg;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (arg == "--meters" || arg == "--events" || arg == "--threads" ||
               arg == "--checkpoint-dir" || arg == "--checkpoint-interval-ms" ||
               arg == "--output" || arg == "--brokers" || arg == "--topic" ||
               arg == "--redis" || arg == "--redis-prefix") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "smart_meter: %s needs a value\n%s", argv[i], kUsage);
        return false;
      }
      value = argv[++i];
    }
    std::uint64_t v = 0;
    const bool number = parse_uint(value, &v);
    if (name == "--meters") {
      if (!number || v < 2) {
        std::fprintf(stderr, "smart_meter: --meters: expected an integer >= 2, got '%.*s'\n%s",
                     static_cast<int>(value.size()), value.data(), kUsage);
        return false;
      }
      flags->meters = v;
    } else if (name == "--events") {
      if (!number || v < 1) {
        std::fprintf(stderr, "smart_meter: --events: expected an integer >= 1, got '%.*s'\n%s",
                     static_cast<int>(value.size()), value.data(), kUsage);
        return false;
      }
      flags->events = v;
      flags->events_given = true;
    } else if (name == "--threads") {
      if (!number || v < 1 || v > static_cast<std::uint64_t>(ms::kDefaultMaxParallelism)) {
        std::fprintf(stderr,
                     "smart_meter: --threads: expected an integer in 1..%d, got '%.*s'\n%s",
                     ms::kDefaultMaxParallelism, static_cast<int>(value.size()), value.data(),
                     kUsage);
        return false;
      }
      flags->threads = static_cast<int>(v);
    } else if (name == "--checkpoint-dir" || name == "--output") {
      if (value.empty()) {
        std::fprintf(stderr, "smart_meter: %.*s: expected a folder\n%s",
                     static_cast<int>(name.size()), name.data(), kUsage);
        return false;
      }
      (name == "--output" ? flags->output : flags->checkpoint_dir) = std::string(value);
    } else if (name == "--brokers" || name == "--topic") {
      if (value.empty()) {
        std::fprintf(stderr, "smart_meter: %.*s: expected a value\n%s",
                     static_cast<int>(name.size()), name.data(), kUsage);
        return false;
      }
      (name == "--brokers" ? flags->brokers : flags->topic) = std::string(value);
    } else if (name == "--redis") {
      const auto colon = value.rfind(':');
      std::uint64_t port = 0;
      if (colon == std::string_view::npos || colon == 0 ||
          !parse_uint(value.substr(colon + 1), &port) || port < 1 || port > 65535) {
        std::fprintf(stderr, "smart_meter: --redis: expected HOST:PORT, got '%.*s'\n%s",
                     static_cast<int>(value.size()), value.data(), kUsage);
        return false;
      }
      flags->redis = std::string(value);
    } else if (name == "--redis-prefix") {
      flags->redis_prefix = std::string(value);
    } else if (name == "--checkpoint-interval-ms") {
      if (!number || v < 1) {
        std::fprintf(stderr,
                     "smart_meter: --checkpoint-interval-ms: expected an integer >= 1, got "
                     "'%.*s'\n%s",
                     static_cast<int>(value.size()), value.data(), kUsage);
        return false;
      }
      flags->checkpoint_interval_ms = v;
    } else {
      std::fprintf(stderr, "smart_meter: unknown argument '%s'\n%s", argv[i], kUsage);
      return false;
    }
  }
  if (flags->brokers.empty() != flags->topic.empty()) {
    std::fprintf(stderr, "smart_meter: --brokers and --topic go together\n%s", kUsage);
    return false;
  }
  if (flags->kafka_mock && !flags->brokers.empty()) {
    std::fprintf(stderr, "smart_meter: --kafka (in-process mock) or --brokers, not both\n%s",
                 kUsage);
    return false;
  }
  if (flags->kafka_mock && !flags->events_given) flags->events = 200000;
  if (flags->kafka_mock && flags->events > 320000) {
    std::fprintf(stderr,
                 "smart_meter: --kafka: at most 320000 events (the mock cluster keeps about "
                 "100000 messages per partition; use --brokers for more)\n");
    return false;
  }
  if (flags->checkpoint_dir.empty() != flags->output.empty()) {
    std::fprintf(stderr, "smart_meter: --checkpoint-dir and --output go together\n%s", kUsage);
    return false;
  }
  return true;
}

// Reads the committed output back: the totals of every window in OUT/*.csv.
// A window committed twice or a line that does not parse is an error.
ms::StatusOr<ms::Q1Totals> read_committed(const std::string& dir) {
  ms::StatusOr<ms::bench::OutputCheck> c = ms::bench::check_q1_output(dir);
  if (!c.ok()) return c.status();
  if (c->repeated != 0 || c->malformed != 0) {
    return absl::DataLossError("the output in " + dir + " has " + std::to_string(c->repeated) +
                               " repeated windows and " + std::to_string(c->malformed) +
                               " malformed lines");
  }
  return c->totals;
}

std::string to_csv(const ms::MeterReading& r) {
  return std::to_string(r.meter_id) + "," + std::to_string(r.ts_ms) + "," +
         std::to_string(r.seq) + "," + std::to_string(r.wh) + "," +
         std::to_string(r.voltage_dv);
}

constexpr const char* kMockTopic = "readings";

// Starts the in-process mock cluster and produces the workload's events into
// a 4-partition topic, partitioned by meter id.
ms::Status fill_mock_cluster(const ms::SmartMeterWorkload& workload,
                             std::unique_ptr<ms::KafkaMockCluster>* cluster) {
  constexpr int kPartitions = 4;
  MS_ASSIGN_OR_RETURN(*cluster, ms::KafkaMockCluster::start());
  MS_RETURN_IF_ERROR((*cluster)->create_topic(kMockTopic, kPartitions));
  std::printf("kafka: mock cluster at %s, producing %llu events into '%s' (%d partitions)\n",
              (*cluster)->bootstrap_servers().c_str(),
              static_cast<unsigned long long>(workload.events), kMockTopic, kPartitions);
  std::fflush(stdout);
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
      m.partition = static_cast<std::int32_t>(r.meter_id % kPartitions);
      m.timestamp_ms = r.ts_ms;
      batch.push_back(std::move(m));
    }
    MS_RETURN_IF_ERROR((*cluster)->produce(kMockTopic, batch));
  }
  return ms::Status();
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

int fail(const char* what, const ms::Status& status) {
  std::fprintf(stderr, "smart_meter: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!parse_flags(argc, argv, &flags)) return 2;
  if (flags.help) return 0;

  ms::SmartMeterWorkload workload;  // WORKLOAD.md's defaults, but fewer events
  workload.meters = flags.meters;
  workload.events = flags.events;
  if (ms::Status s = workload.validate(); !s.ok()) return fail("workload", s);

  // A fresh temporary folder for the late readings.
  std::error_code ec;
  std::string tmpl = (std::filesystem::temp_directory_path(ec) / "smart_meter-XXXXXX").string();
  if (ec || mkdtemp(tmpl.data()) == nullptr) {
    std::fprintf(stderr, "smart_meter: cannot create a temporary folder from '%s'\n",
                 tmpl.c_str());
    return 1;
  }
  const std::string late_path = tmpl + "/late.csv";

  if (flags.brokers.empty()) {
    std::printf("meterstream: %s over %llu events from %llu meters on %d threads\n",
                flags.dedup ? "Q2 (dedup, then Q1)" : "Q1",
                static_cast<unsigned long long>(workload.events),
                static_cast<unsigned long long>(workload.meters), flags.threads);
  } else {
    std::printf("meterstream: %s over the readings of Kafka topic %s on %d threads\n",
                flags.dedup ? "Q2 (dedup, then Q1)" : "Q1", flags.topic.c_str(), flags.threads);
  }
  std::printf("late readings -> %s\n", late_path.c_str());

  // With --kafka: a mock cluster holding the workload.
  std::unique_ptr<ms::KafkaMockCluster> cluster;
  ms::KafkaSourceOptions kafka;
  if (flags.kafka_mock) {
    ms::Status s = fill_mock_cluster(workload, &cluster);
    if (!s.ok()) return fail("mock cluster", s);
    kafka.brokers = cluster->bootstrap_servers();
    kafka.topics = {kMockTopic};
  } else if (!flags.brokers.empty()) {
    kafka.brokers = flags.brokers;
    kafka.topics = {flags.topic};
    std::printf("reading topic %s from %s (bounded: up to the end offsets at start)\n",
                flags.topic.c_str(), flags.brokers.c_str());
  }
  kafka.bounded = true;
  const bool from_kafka = !kafka.brokers.empty();

  // The pipeline.
  auto totals = std::make_shared<Q1TotalsSink>();
  ms::Pipeline p;
  auto source = from_kafka
                    ? ms::kafka_source<ms::MeterReading>(kafka, ms::kafka_meter_reading())
                    : ms::smart_meter_source(workload);
  auto from = p.source(source);
  if (from_kafka) {
    from.undecodable().sink(ms::file_sink(tmpl + "/undecodable.txt"));
    std::printf("undecodable records -> %s/undecodable.txt\n", tmpl.c_str());
  }
  // From Kafka, watermarks come only after every 1000th reading of a
  // partition, as from the generator, never because a fetch is late: the
  // late readings (and the digest) then do not depend on fetch timing.
  auto readings = from.with_watermarks(
      ms::bounded_out_of_orderness(5min).with_emit_on_no_data(!from_kafka),
      &ms::MeterReading::ts_ms);
  // One stream, two consumers: the voltage sags are counted as they come,
  // without waiting for any window.
  auto sags = std::make_shared<std::atomic<std::uint64_t>>(0);
  readings.filter([](const ms::MeterReading& r) { return r.voltage_dv < 2000; })
      .sink(ms::callback_sink<ms::MeterReading>(
          [sags](const ms::MeterReading&) { sags->fetch_add(1, std::memory_order_relaxed); }));
  auto keyed = readings.key_by(&ms::MeterReading::meter_id);
  // dedup_by_sequence keeps the stream keyed: the window after it needs no
  // second exchange, and both branches have the same type.
  auto per_minute = (flags.dedup ? keyed.dedup_by_sequence(&ms::MeterReading::seq) : keyed)
                        .window(ms::tumbling(1min))
                        .aggregate(Q1Aggregate{});
  per_minute.late().sink(ms::file_sink<ms::MeterReading>(late_path, to_csv));
  const bool checkpointed = !flags.checkpoint_dir.empty();
  if (checkpointed) {
    // Exactly once: staged at each checkpoint, published when it is durable.
    per_minute.map(ms::q1_result_line).sink(
        ms::exactly_once_file_sink<std::string>(flags.output, [](const std::string& l) { return l; }));
  } else {
    per_minute.sink(totals);
  }
  if (!flags.redis.empty()) {
    // Idempotent upserts: a window written again (a rerun, a replay after a
    // restore) leaves the same state, and a late update (higher count) wins.
    ms::RedisSinkOptions redis;
    const auto colon = flags.redis.rfind(':');
    redis.host = flags.redis.substr(0, colon);
    redis.port = std::stoi(flags.redis.substr(colon + 1));
    const std::string prefix = flags.redis_prefix;
    per_minute
        .sink(ms::redis_sink<Q1Result>(redis,
                                       [prefix](const Q1Result& r) {
                                         return ms::RedisUpsert{
                                             prefix + "q1:" + std::to_string(r.key),
                                             std::to_string(r.start), ms::q1_result_line(r),
                                             static_cast<std::int64_t>(r.value.count)};
                                       }))
        .uid("redis-windows");
    std::printf("windows -> redis %s, hashes %sq1:<meter>\n", flags.redis.c_str(),
                prefix.c_str());
  }

  ms::JobOptions options;
  options.parallelism = flags.threads;
  if (checkpointed) {
    auto storage = ms::make_local_checkpoint_storage({flags.checkpoint_dir + "/checkpoints"});
    if (!storage.ok()) return fail("checkpoint storage", storage.status());
    options.checkpoint = ms::enable_checkpointing(
        std::chrono::milliseconds(flags.checkpoint_interval_ms), *std::move(storage));
    options.checkpoint.local_dir = flags.checkpoint_dir + "/work";
    options.checkpoint.restore = ms::RestoreFrom::latest();
    std::printf("checkpoints -> %s/checkpoints every %llu ms (resuming from the newest), "
                "windows -> %s/*.csv\n",
                flags.checkpoint_dir.c_str(),
                static_cast<unsigned long long>(flags.checkpoint_interval_ms), flags.output.c_str());
  }
  ms::StatusOr<ms::Job> job = p.build(options);
  if (!job.ok()) return fail("build", job.status());

  const auto t0 = std::chrono::steady_clock::now();
  if (!checkpointed) std::printf("first windows fired:\n");
  std::fflush(stdout);
  if (ms::Status s = job->start(); !s.ok()) return fail("start", s);

  std::int64_t last_records = 0;
  auto last_time = t0;
  auto progress = [&] {
    const auto now = std::chrono::steady_clock::now();
    auto m = job->metrics();
    const std::int64_t records = m["source_records"];
    const double dt = std::chrono::duration<double>(now - last_time).count();
    std::printf(
        "[%5.1f s] events %11lld  %10.0f events/s  watermark %s  windows %9lld  late %7lld"
        "  duplicates %7lld  checkpoints %lld\n",
        std::chrono::duration<double>(now - t0).count(), static_cast<long long>(records),
        dt > 0 ? static_cast<double>(records - last_records) / dt : 0.0,
        utc(m.count("source_watermark") ? m["source_watermark"] : ms::kMinTimestamp).c_str(),
        static_cast<long long>(m["window_results"]),
        static_cast<long long>(m["window_late_records"]),
        static_cast<long long>(m["dedup_dropped"]),
        static_cast<long long>(m["checkpoints_completed"]));
    std::fflush(stdout);
    last_records = records;
    last_time = now;
  };
  while (!job->finished()) {
    // Sleeps in short steps so that the end is seen promptly.
    for (int i = 0; i < 10 && !job->finished(); ++i) std::this_thread::sleep_for(50ms);
    progress();
  }
  const ms::Status result = job->wait();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!result.ok()) return fail("run", result);

  auto m = job->metrics();
  ms::Q1Totals t = totals->totals();
  if (checkpointed) {
    // What all runs committed together, not only this one.
    ms::StatusOr<ms::Q1Totals> committed = read_committed(flags.output);
    if (!committed.ok()) return fail("reading the output", committed.status());
    t = *committed;
    std::printf("\n(%lld checkpoints in this run; the totals below are read back from %s, "
                "what every run committed)\n",
                static_cast<long long>(m["checkpoints_completed"]), flags.output.c_str());
  }
  t.late_dropped = static_cast<std::uint64_t>(m["window_late_records"]);
  t.duplicates_dropped = static_cast<std::uint64_t>(m["dedup_dropped"]);
  const auto events = static_cast<std::uint64_t>(m["source_records"]);
  std::printf("\nsummary\n");
  std::printf("  events        %llu%s\n", static_cast<unsigned long long>(events),
              checkpointed ? "  (read by this run)" : "");
  std::printf("  windows       %llu\n", static_cast<unsigned long long>(t.windows));
  std::printf("  late          %llu  (in %s)%s\n", static_cast<unsigned long long>(t.late_dropped),
              late_path.c_str(), checkpointed ? "  (this run)" : "");
  std::printf("  duplicates    %llu%s\n", static_cast<unsigned long long>(t.duplicates_dropped),
              checkpointed ? "  (this run)" : "");
  std::printf("  voltage sags  %llu%s\n",
              static_cast<unsigned long long>(sags->load()), checkpointed ? "  (this run)" : "");
  std::printf("  total_count   %llu\n", static_cast<unsigned long long>(t.total_count));
  std::printf("  sum_wh        %llu\n", static_cast<unsigned long long>(t.sum_wh));
  std::printf("  digest        %llu\n", static_cast<unsigned long long>(t.digest));
  std::printf("  elapsed       %.2f s (%.0f events/s)\n", elapsed,
              elapsed > 0 ? static_cast<double>(events) / elapsed : 0.0);
  std::printf("  peak RSS      %.1f MiB\n", peak_rss_mb());
  // Late and duplicate counts are this run's; the committed windows are all runs'.
  if (checkpointed) return 0;
  if (t.total_count + t.late_dropped + t.duplicates_dropped != events) {
    std::fprintf(stderr, "smart_meter: total_count + late + duplicates (%llu) != events (%llu)\n",
                 static_cast<unsigned long long>(t.total_count + t.late_dropped +
                                                 t.duplicates_dropped),
                 static_cast<unsigned long long>(events));
    return 1;
  }
  std::printf("  check         total_count + late + duplicates == events\n");
  return 0;
}
