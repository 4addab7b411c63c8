// JobOptions::restart: a run that fails with a retriable error is torn down
// and started again from its last checkpoint inside Job::run(); the
// committed output is then exactly the uninterrupted run's.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "common/workload_rows.hpp"
#include <catch2/catch.hpp>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

// --seed 1 --meters 1000 --events 200000
const mt::WorkloadRow& row() { return mt::kQ1Rows[0]; }

// The exactly-once line sink of `dir`, whose writers fail `*failures` times
// in all with `code` once `*written` lines went through them (a sink whose
// server went away). Everything else is the line sink's.
class FailingSink final : public ms::Sink<std::string> {
 public:
  FailingSink(const std::string& dir, ms::StatusCode code, int failures,
              std::int64_t after)
      : lines_(mt::line_sink(dir)),
        code_(code),
        failures_(failures),
        after_(after) {}
  ms::Status open(const ms::SinkContext& c) override { return lines_->open(c); }
  void close() override { lines_->close(); }
  std::string name() const override { return lines_->name(); }
  ms::Status persist(const std::vector<std::string>& p) override {
    return lines_->persist(p);
  }
  ms::Status commit(const ms::CheckpointCommit& c,
                    const std::vector<std::string>& p) override {
    return lines_->commit(c, p);
  }
  ms::Status recover(std::int64_t n,
                     const std::vector<std::string>& keep) override {
    return lines_->recover(n, keep);
  }
  ms::StatusOr<std::unique_ptr<ms::SinkWriter<std::string>>> create_writer(
      int w, int p) override {
    MS_ASSIGN_OR_RETURN(auto inner, lines_->create_writer(w, p));
    return std::unique_ptr<ms::SinkWriter<std::string>>(
        std::make_unique<Writer>(this, std::move(inner)));
  }
  int failed() const { return failed_.load(); }

 private:
  class Writer final : public ms::SinkWriter<std::string> {
   public:
    Writer(FailingSink* sink,
           std::unique_ptr<ms::SinkWriter<std::string>> inner)
        : sink_(sink), inner_(std::move(inner)) {}
    ms::Status write(const ms::RecordBatch<std::string>& batch) override {
      const std::int64_t n =
          sink_->written_.fetch_add(static_cast<std::int64_t>(batch.size()));
      if (n >= sink_->after_ && sink_->failed_.load() < sink_->failures_) {
        sink_->failed_.fetch_add(1);
        sink_->written_.store(0);
        return ms::Status(sink_->code_, "the sink's server went away");
      }
      return inner_->write(batch);
    }
    ms::StatusOr<std::string> prepare_commit(std::int64_t epoch) override {
      return inner_->prepare_commit(epoch);
    }
    ms::Status close() override { return inner_->close(); }

   private:
    FailingSink* sink_;
    std::unique_ptr<ms::SinkWriter<std::string>> inner_;
  };

  std::shared_ptr<ms::Sink<std::string>> lines_;
  ms::StatusCode code_;
  int failures_;
  std::int64_t after_;
  std::atomic<int> failed_{0};
  std::atomic<std::int64_t> written_{0};
};

// Q1 of row() over a paced source into `sink`.
ms::Pipeline q1_into(const std::shared_ptr<ms::Sink<std::string>>& sink) {
  const ms::Q1Params q = row().params();
  mt::Pace pace;
  pace.every = 500;
  ms::Pipeline p;
  p.source(mt::paced_source(mt::row_events(row()), pace))
      .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(
                           std::chrono::milliseconds(q.bound_ms))
                           .with_emit_every(q.wm_every),
                       &ms::MeterReading::ts_ms)
      .key_by(&ms::MeterReading::meter_id)
      .window(ms::tumbling(std::chrono::milliseconds(q.window_ms)))
      .aggregate(ms::Q1Aggregate{})
      .map(ms::q1_result_line)
      .sink(sink);
  return p;
}

}  // namespace

namespace {

// The sink fails twice; the job restarts from its checkpoint each time.
void restart_twice(bool rocksdb) {
  mt::TempDir dir("restart");
  // About a fifth of the windows go out before each failure: the failures
  // come after checkpoints, with committed output to keep and some to redo.
  auto sink = std::make_shared<FailingSink>(
      dir.str("out"), ms::StatusCode::kUnavailable, 2,
      static_cast<std::int64_t>(row().expected.windows / 5));
  ms::JobOptions o;
  o.parallelism = 2;
  o.checkpoint =
      ms::enable_checkpointing(50ms, mt::local_storage(dir.str("chk")));
  o.restart = ms::RestartStrategy::fixed_delay(3, 10ms);
  if (rocksdb) o.state_backend = mt::tiny_rocksdb(dir.str("state"));
  const auto m = mt::run_to_end(q1_into(sink), o);
  CHECK(sink->failed() == 2);
  CHECK(m.at("job_restarts") == 2);
  // The last attempt resumed from a checkpoint, not from the start.
  CHECK(m.at("source_records") < static_cast<std::int64_t>(row().events));
  mt::check_q1_committed(dir.str("out"), row().expected);
}

}  // namespace

TEST_CASE("a job whose sink fails twice restarts from its checkpoint with the exact output",
          "[checkpoint]") {
  restart_twice(/*rocksdb=*/false);
}

// On its own: the tsan preset leaves RocksDB out (Debian's is not built for
// TSan, its background threads are reported).
TEST_CASE("on rocksdb, a job whose sink fails twice restarts from its checkpoint exactly",
          "[checkpoint][rocksdb]") {
  restart_twice(/*rocksdb=*/true);
}

TEST_CASE(
    "a user function that throws restarts the job up to max_attempts times",
    "[checkpoint]") {
  mt::TempDir dir("restart-throw");
  auto throws = std::make_shared<std::atomic<int>>(0);
  auto seen = std::make_shared<std::atomic<std::int64_t>>(0);
  const int limit = GENERATE(1, 5);  // times the map throws in all
  INFO("throws " << limit << " times");
  const ms::Q1Params q = row().params();
  mt::Pace pace;
  ms::Pipeline p;
  p.source(mt::paced_source(mt::row_events(row()), pace))
      .map([throws, seen, limit](const ms::MeterReading& r) {
        if (seen->fetch_add(1) == 60000 && throws->load() < limit) {
          throws->fetch_add(1);
          seen->store(0);
          throw std::runtime_error("a bad reading");
        }
        return r;
      })
      .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(
                           std::chrono::milliseconds(q.bound_ms))
                           .with_emit_every(q.wm_every),
                       &ms::MeterReading::ts_ms)
      .key_by(&ms::MeterReading::meter_id)
      .window(ms::tumbling(std::chrono::milliseconds(q.window_ms)))
      .aggregate(ms::Q1Aggregate{})
      .map(ms::q1_result_line)
      .sink(mt::line_sink(dir.str("out")));
  ms::JobOptions o;
  o.parallelism = 1;
  o.checkpoint =
      ms::enable_checkpointing(50ms, mt::local_storage(dir.str("chk")));
  o.restart = ms::RestartStrategy::fixed_delay(2, 0ms);
  ms::Job job = mt::build_job(p, o);
  const ms::Status s = job.run();
  if (limit == 1) {
    INFO(s.ToString());
    REQUIRE(s.ok());
    CHECK(job.metrics().at("job_restarts") == 1);
    mt::check_q1_committed(dir.str("out"), row().expected);
  } else {
    // Two restarts, then the third failure is the job's result.
    CHECK(s.code() == ms::StatusCode::kInternal);
    CHECK(s.message().find("a bad reading") != std::string::npos);
    CHECK(throws->load() == 3);
    CHECK(job.metrics().at("job_restarts") == 2);
  }
}

TEST_CASE("an error that is not retriable ends the job without a restart",
          "[checkpoint]") {
  mt::TempDir dir("restart-fatal");
  auto sink = std::make_shared<FailingSink>(dir.str("out"),
                                            ms::StatusCode::kDataLoss, 1, 1000);
  ms::JobOptions o;
  o.parallelism = 1;
  o.checkpoint =
      ms::enable_checkpointing(50ms, mt::local_storage(dir.str("chk")));
  o.restart = ms::RestartStrategy::fixed_delay(5, 0ms);
  ms::Job job = mt::build_job(q1_into(sink), o);
  const ms::Status s = job.run();
  CHECK(s.code() == ms::StatusCode::kDataLoss);
  CHECK(job.metrics().at("job_restarts") == 0);
}

TEST_CASE("a restart strategy needs checkpointing", "[checkpoint]") {
  mt::TempDir dir("restart-options");
  ms::JobOptions o;
  o.restart = ms::RestartStrategy::fixed_delay(1, 0ms);
  auto job = q1_into(mt::line_sink(dir.str("out"))).build(o);
  CHECK(job.status().code() == ms::StatusCode::kInvalidArgument);
  CHECK(job.status().message().find("checkpoint") != std::string::npos);
  o.restart.max_attempts = -1;
  CHECK(q1_into(mt::line_sink(dir.str("out"))).build(o).status().code() ==
        ms::StatusCode::kInvalidArgument);
}
