// The consume-only pass: the Kafka source into a counting sink.
#include "kafka_consume.hpp"

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>

#include "bench_util.hpp"
#include <nlohmann/json.hpp>

#include "meterstream/meterstream.hpp"

namespace meterstream::bench {

namespace {

// Counts the readings (and sums wh, so that nothing is optimised away) per
// writer; merged when the writers close.
class CountingSink final : public Sink<MeterReading> {
 public:
  std::string name() const override { return "count"; }
  StatusOr<std::unique_ptr<SinkWriter<MeterReading>>> create_writer(
      int, int) override {
    return std::unique_ptr<SinkWriter<MeterReading>>(
        std::make_unique<Writer>(this));
  }
  std::uint64_t count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  std::uint64_t sum_wh() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sum_wh_;
  }

 private:
  class Writer final : public SinkWriter<MeterReading> {
   public:
    explicit Writer(CountingSink* sink) : sink_(sink) {}
    Status write(const RecordBatch<MeterReading>& batch) override {
      count_ += batch.values.size();
      for (const MeterReading& r : batch.values) sum_wh_ += r.wh;
      return Status();
    }
    Status close() override {
      std::lock_guard<std::mutex> lock(sink_->mu_);
      sink_->count_ += count_;
      sink_->sum_wh_ += sum_wh_;
      return Status();
    }

   private:
    CountingSink* sink_;
    std::uint64_t count_ = 0;
    std::uint64_t sum_wh_ = 0;
  };

  mutable std::mutex mu_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_wh_ = 0;
};

int exit_code(const Status& s) {
  return s.code() == absl::StatusCode::kInvalidArgument ||
                 s.code() == absl::StatusCode::kNotFound
             ? 2
             : 1;
}

}  // namespace

int run_kafka_consume(const std::vector<std::string>& args, const char* usage) {
  StatusOr<Flags> flags = Flags::parse(args, {"brokers", "topic", "threads"});
  Status error = flags.status();
  KafkaSourceOptions in;
  int threads = 2;
  if (error.ok() && (!flags->has("brokers") || !flags->has("topic"))) {
    error =
        absl::InvalidArgumentError("flags --brokers and --topic are required");
  }
  if (error.ok()) {
    in.brokers = flags->get_string("brokers", "").value_or("");
    in.topics = {flags->get_string("topic", "").value_or("")};
    StatusOr<std::int64_t> t = flags->get_int("threads", 2, 1, 128);
    error = t.status();
    if (t.ok()) threads = static_cast<int>(*t);
  }
  if (!error.ok()) {
    std::cerr << "meterstream-bench kafka-consume: " << error.message() << "\n"
              << usage;
    return 2;
  }
  in.bounded = true;
  auto sink = std::make_shared<CountingSink>();
  Pipeline p;
  p.source(kafka_source<MeterReading>(in, kafka_meter_reading())).sink(sink);
  JobOptions options;
  options.parallelism = threads;
  StatusOr<Job> job = p.build(options);
  const auto t0 = std::chrono::steady_clock::now();
  Status result = job.ok() ? job->run() : job.status();
  const double proc_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  if (!result.ok()) {
    std::cerr << "meterstream-bench kafka-consume: " << result << "\n";
    return exit_code(result);
  }
  auto m = job->metrics();
  nlohmann::ordered_json j;
  j["events"] = sink->count();
  j["undecodable"] = m["source_undecodable"];
  j["sum_wh"] = sink->sum_wh();
  j["proc_s"] = proc_s;
  j["events_per_s"] =
      proc_s > 0 ? static_cast<double>(sink->count()) / proc_s : 0.0;
  j["peak_rss_mb"] = peak_rss_mb();
  std::cout << json_line(j);
  std::cout.flush();
  return std::cout ? 0 : 1;
}

}  // namespace meterstream::bench
