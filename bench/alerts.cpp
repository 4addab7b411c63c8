// Query Q3 (see alerts.hpp): alerts and hot aggregates in Redis.
#include "alerts.hpp"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "q1.hpp"
#include "meterstream/api/keyed_stream.hpp"
#include "meterstream/api/pipeline.hpp"
#include "meterstream/api/stream.hpp"
#include "meterstream/api/windowed_stream.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/connectors/memory/memory.hpp"
#include "meterstream/connectors/redis/redis_sink.hpp"
#include "meterstream/runtime/job.hpp"
#include "meterstream/time/watermark_strategy.hpp"
#include "meterstream/window/assigners.hpp"

namespace meterstream::bench {
namespace {

constexpr std::uint16_t kSagDv = 2000;  // WORKLOAD.md Q3: below 200.0 V

// A reading and the wall clock at which the source handed it over.
struct IngestedReading {
  MeterReading r;
  std::int64_t ingest_us = 0;
};

std::int64_t realtime_us() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// Hands the pre-generated events over at `rate` events/s (0: unpaced): at
// each poll, the events due by now, each stamped with the time of the poll.
class PacedSource final : public Source<IngestedReading> {
 public:
  PacedSource(std::shared_ptr<const std::vector<MeterReading>> events, std::uint64_t rate)
      : events_(std::move(events)), rate_(rate) {}
  std::string name() const override { return "paced-generator"; }
  StatusOr<std::vector<std::unique_ptr<SplitReader<IngestedReading>>>> create_splits() override {
    std::vector<std::unique_ptr<SplitReader<IngestedReading>>> splits;
    splits.push_back(std::make_unique<Split>(events_, rate_));
    return splits;
  }

 private:
  class Split final : public SplitReader<IngestedReading> {
   public:
    Split(std::shared_ptr<const std::vector<MeterReading>> events, std::uint64_t rate)
        : events_(std::move(events)), rate_(rate) {}
    StatusOr<Poll> poll(std::vector<IngestedReading>& out, std::size_t max,
                        std::vector<std::string>&) override {
      const std::size_t total = events_->size();
      if (pos_ == total) return Poll::kEnd;
      std::size_t due = total;
      if (rate_ > 0) {
        using Clock = std::chrono::steady_clock;
        if (!started_) {
          start_ = Clock::now();
          started_ = true;
        }
        for (;;) {
          const auto elapsed_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      Clock::now() - start_).count();
          // Event i is due at i / rate seconds after the start.
          due = std::min<std::size_t>(
              total, static_cast<std::size_t>(static_cast<double>(elapsed_ns) * 1e-9 *
                                              static_cast<double>(rate_)) + 1);
          if (due > pos_) break;
          const double wait_s = static_cast<double>(pos_) / static_cast<double>(rate_) -
                                static_cast<double>(elapsed_ns) * 1e-9;
          std::this_thread::sleep_for(std::chrono::duration<double>(
              std::min(wait_s, 0.001)));
        }
      }
      const std::size_t n = std::min(max, due - pos_);
      const std::int64_t now_us = realtime_us();
      for (std::size_t i = 0; i < n; ++i) out.push_back({(*events_)[pos_ + i], now_us});
      pos_ += n;
      return pos_ == total ? Poll::kEnd : Poll::kMore;
    }
    std::string name() const override { return "paced-generator"; }

   private:
    std::shared_ptr<const std::vector<MeterReading>> events_;
    std::uint64_t rate_;
    std::size_t pos_ = 0;
    bool started_ = false;
    std::chrono::steady_clock::time_point start_;
  };

  std::shared_ptr<const std::vector<MeterReading>> events_;
  std::uint64_t rate_;
};

// Q1Aggregate over IngestedReading.
struct IngestedQ1Aggregate {
  using Acc = Q1Aggregate::Acc;
  using accumulator_type = Acc;
  Acc create() const { return Acc{}; }
  void add(Acc& a, const IngestedReading& r) const { Q1Aggregate{}.add(a, r.r); }
  void merge(Acc& a, const Acc& b) const { Q1Aggregate{}.merge(a, b); }
  Acc result(const Acc& a) const { return a; }
};

// What the alert branch saw: the alerts' digest and their latencies.
struct AlertStats {
  std::mutex mu;
  std::uint64_t alerts = 0;
  std::uint64_t digest = 0;
  std::vector<double> latency_ms;
};

// Wraps the Redis alert sink: after each batch it waits until Redis has
// acknowledged every write so far (the Redis sink's prepare_commit() only
// waits for the replies, docs/redis.md), then records, per alert, the time
// from ingest_us to that acknowledgement.
class MeasuredAlertSink final : public Sink<IngestedReading> {
 public:
  MeasuredAlertSink(std::shared_ptr<Sink<IngestedReading>> redis,
                    std::shared_ptr<AlertStats> stats)
      : redis_(std::move(redis)), stats_(std::move(stats)) {}
  std::string name() const override { return redis_->name(); }
  Status open(const SinkContext& context) override { return redis_->open(context); }
  void close() override { redis_->close(); }
  StatusOr<std::unique_ptr<SinkWriter<IngestedReading>>> create_writer(
      int worker, int parallelism) override {
    MS_ASSIGN_OR_RETURN(auto inner, redis_->create_writer(worker, parallelism));
    return std::unique_ptr<SinkWriter<IngestedReading>>(
        std::make_unique<Writer>(std::move(inner), stats_));
  }

 private:
  class Writer final : public SinkWriter<IngestedReading> {
   public:
    Writer(std::unique_ptr<SinkWriter<IngestedReading>> inner, std::shared_ptr<AlertStats> stats)
        : inner_(std::move(inner)), stats_(std::move(stats)) {}
    Status write(const RecordBatch<IngestedReading>& batch) override {
      if (batch.size() == 0) return Status();
      MS_RETURN_IF_ERROR(inner_->write(batch));
      MS_RETURN_IF_ERROR(inner_->prepare_commit(0).status());
      const std::int64_t acked_us = realtime_us();
      for (const IngestedReading& v : batch.values) {
        ++alerts_;
        digest_ += fmix64(fmix64(fmix64(v.r.meter_id) ^ v.r.seq) ^
                          static_cast<std::uint64_t>(v.r.ts_ms));
        latency_ms_.push_back(static_cast<double>(acked_us - v.ingest_us) / 1000.0);
      }
      return Status();
    }
    StatusOr<std::string> prepare_commit(std::int64_t epoch) override {
      return inner_->prepare_commit(epoch);
    }
    Status close() override {
      {
        std::lock_guard<std::mutex> lock(stats_->mu);
        stats_->alerts += alerts_;
        stats_->digest += digest_;
        stats_->latency_ms.insert(stats_->latency_ms.end(), latency_ms_.begin(),
                                  latency_ms_.end());
      }
      return inner_->close();
    }

   private:
    std::unique_ptr<SinkWriter<IngestedReading>> inner_;
    std::shared_ptr<AlertStats> stats_;
    std::uint64_t alerts_ = 0;
    std::uint64_t digest_ = 0;
    std::vector<double> latency_ms_;
  };

  std::shared_ptr<Sink<IngestedReading>> redis_;
  std::shared_ptr<AlertStats> stats_;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t i = std::min(
      v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

struct AlertsConfig {
  SmartMeterWorkload workload;
  Q1Params params;
  std::string host;
  int port = 0;
  std::uint64_t rate = 10000;
  int threads = 1;
  std::uint64_t batch_size = JobOptions().batch_size;
};

StatusOr<AlertsConfig> parse_alerts(const std::vector<std::string>& args) {
  MS_ASSIGN_OR_RETURN(
      Flags flags,
      Flags::parse(args, {"redis", "rate", "seed", "meters", "events", "late-ppm", "dup-ppm",
                          "anomaly-ppm", "hot-factor", "window-ms", "bound-ms", "wm-every",
                          "dedup-horizon", "threads", "batch-size"}));
  AlertsConfig c;
  if (!flags.has("redis")) return absl::InvalidArgumentError("flag --redis HOST:PORT is required");
  MS_ASSIGN_OR_RETURN(std::string redis, flags.get_string("redis", ""));
  const std::size_t colon = redis.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == redis.size() ||
      redis.find_first_not_of("0123456789", colon + 1) != std::string::npos ||
      redis.size() - colon > 6) {
    return absl::InvalidArgumentError("--redis '" + redis + "': expected HOST:PORT");
  }
  c.host = redis.substr(0, colon);
  c.port = std::stoi(redis.substr(colon + 1));
  if (c.port < 1 || c.port > 65535) {
    return absl::InvalidArgumentError("--redis '" + redis + "': port outside 1..65535");
  }
  MS_ASSIGN_OR_RETURN(std::int64_t threads, flags.get_int("threads", 1, 1, 1024));
  c.threads = static_cast<int>(threads);
  MS_ASSIGN_OR_RETURN(c.batch_size, flags.get_uint("batch-size", c.batch_size, 1, 1 << 20));
  MS_ASSIGN_OR_RETURN(c.rate, flags.get_uint("rate", c.rate, 0, std::uint64_t{1} << 40));
  MS_RETURN_IF_ERROR(parse_workload_flags(flags, &c.workload));
  Q1Params& q = c.params;
  q.dedup = true;
  MS_ASSIGN_OR_RETURN(q.dedup_horizon, flags.get_uint("dedup-horizon", q.dedup_horizon, 1,
                                                      std::uint64_t{1} << 32));
  MS_RETURN_IF_ERROR(parse_window_flags(flags, &q));
  return c;
}

}  // namespace

int run_alerts(const std::vector<std::string>& args, const char* usage) {
  StatusOr<AlertsConfig> config = parse_alerts(args);
  if (!config.ok()) {
    std::cerr << "meterstream-bench alerts: " << config.status().message() << "\n" << usage;
    return 2;
  }
  const AlertsConfig& c = *config;
  auto events = std::make_shared<const std::vector<MeterReading>>(
      generate_smart_meter_events(c.workload));

  RedisSinkOptions redis;
  redis.host = c.host;
  redis.port = c.port;
  auto stats = std::make_shared<AlertStats>();
  auto alert_sink = std::make_shared<MeasuredAlertSink>(
      redis_sink<IngestedReading>(redis,
                                  [](const IngestedReading& v) {
                                    RedisAlert a;
                                    a.key = "alert:" + std::to_string(v.r.meter_id) + ":" +
                                            std::to_string(v.r.seq);
                                    a.value = std::to_string(v.r.ts_ms) + "," +
                                              std::to_string(v.r.voltage_dv) + "," +
                                              std::to_string(v.ingest_us);
                                    return a;
                                  }),
      stats);
  using Result = WindowResult<std::uint64_t, Q1Aggregate::Acc>;
  auto agg_sink = redis_sink<Result>(redis, [](const Result& r) {
    RedisUpsert u;
    u.key = "agg:" + std::to_string(r.key);
    u.field = std::to_string(r.start);
    u.value = std::to_string(r.value.count) + "," + std::to_string(r.value.sum_wh) + "," +
              std::to_string(r.value.min_v) + "," + std::to_string(r.value.max_v);
    // A window's count only grows: a later result of it has a larger version.
    u.version = static_cast<std::int64_t>(r.value.count);
    return u;
  });
  std::mutex totals_mu;
  Q1Totals totals;
  auto totals_sink = callback_sink<Result>([&](const Result& r) {
    std::lock_guard<std::mutex> lock(totals_mu);
    totals.add_window(r.key, r.start, r.value.count, r.value.sum_wh, r.value.min_v,
                      r.value.max_v);
  });

  Pipeline p;
  auto deduped =
      p.source(std::shared_ptr<Source<IngestedReading>>(
                       std::make_shared<PacedSource>(events, c.rate)))
          .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                               std::chrono::milliseconds(c.params.bound_ms))
                               .with_emit_every(c.params.wm_every)
                               .with_emit_on_no_data(false),
                           [](const IngestedReading& v) { return v.r.ts_ms; })
          .key_by([](const IngestedReading& v) { return v.r.meter_id; })
          .dedup_by_sequence([](const IngestedReading& v) { return v.r.seq; },
                             c.params.dedup_horizon);
  deduped.input().filter([](const IngestedReading& v) { return v.r.voltage_dv < kSagDv; })
      .sink(alert_sink);
  auto windows = deduped.window(tumbling(std::chrono::milliseconds(c.params.window_ms)))
                     .aggregate(IngestedQ1Aggregate{});
  windows.sink(agg_sink);
  windows.sink(totals_sink);

  JobOptions options;
  options.parallelism = c.threads;
  options.batch_size = static_cast<std::size_t>(c.batch_size);
  StatusOr<Job> job = p.build(options);
  const auto start = std::chrono::steady_clock::now();
  Status result = job.ok() ? job->run() : job.status();
  const double proc_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!result.ok()) {
    std::cerr << "meterstream-bench alerts: " << result << "\n";
    return result.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  auto metrics = job->metrics();
  totals.late_dropped = static_cast<std::uint64_t>(metrics["window_late_records"]);
  totals.duplicates_dropped = static_cast<std::uint64_t>(metrics["dedup_dropped"]);
  auto json = q1_result_json(events->size(), totals, proc_s, peak_rss_mb(), true);
  json["alerts"] = stats->alerts;
  json["alert_digest"] = stats->digest;
  json["alert_latency_p50_ms"] = percentile(stats->latency_ms, 0.50);
  json["alert_latency_p99_ms"] = percentile(stats->latency_ms, 0.99);
  json["alert_latency_max_ms"] =
      stats->latency_ms.empty() ? 0.0 : stats->latency_ms.back();
  std::cout << json_line(json);
  std::cout.flush();
  return std::cout ? 0 : 1;
}

}  // namespace meterstream::bench
