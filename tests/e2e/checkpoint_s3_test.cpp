// Checkpointed jobs with their checkpoints in S3 (moto_server): a Q1 run cut
// and restored through S3, and a checkpoint storage that goes away while a
// job runs (checkpoint/checkpoint.hpp, max_consecutive_failures).
//
// The restore test uses the shared moto_server at MS_S3_ENDPOINT (scripts/
// test.sh starts it); the failure tests start a moto_server of their own,
// open the storage on it, and stop it before the job's first checkpoint.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/checkpoint_jobs.hpp"
#include "common/moto_server.hpp"
#include "common/s3_test_util.hpp"
#include "common/temp_dir.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

const mt::WorkloadRow& row() { return mt::kQ1Rows[0]; }

}  // namespace

TEST_CASE("Q1 on RocksDB cut and restored through S3 checkpoints commits the exact totals",
          "[checkpoint][s3]") {
  const std::string ep = mt::s3_endpoint();
  auto storage = mt::open_s3(mt::s3_options(ep, mt::unique_bucket("q1-restore"), 10ms));
  mt::TempDir dir("s3-q1");
  const std::string out = dir.str("out");
  mt::Pace pace;
  ms::JobOptions o;
  o.parallelism = 1;
  o.checkpoint = ms::enable_checkpointing(40ms, storage);
  o.state_backend = mt::tiny_rocksdb(dir.str("state"));
  {
    ms::Job job = mt::build_job(mt::q1_pipeline(row(), pace, out), o);
    const mt::CutRun cut = mt::run_and_cancel(job, 2, static_cast<std::int64_t>(row().events / 3));
    CHECK(cut.metrics.at("checkpoints_failed") == 0);
  }
  // The spilled windows' SST files are in S3, shared by the checkpoints.
  auto shared = storage->list("shared/");
  REQUIRE(shared.ok());
  CHECK_FALSE(shared->empty());
  const std::int64_t resume_at = mt::newest_generator_position(*storage);

  pace.slow->store(false);
  o.parallelism = 2;
  o.checkpoint.restore = ms::RestoreFrom::latest();
  o.state_backend = nullptr;  // closes the cut run's RocksDB before it is opened again
  o.state_backend = mt::tiny_rocksdb(dir.str("state"));
  const auto m = mt::run_to_end(mt::q1_pipeline(row(), pace, out), o);
  CHECK(m.at("source_records") == static_cast<std::int64_t>(row().events) - resume_at);
  mt::check_q1_committed(out, row().expected);
}

TEST_CASE("checkpoints that fail in a row fail the job, or with a high limit only its final commit",
          "[checkpoint][s3]") {
  mt::s3_endpoint();  // the same prerequisites: moto_server must be installed
  // Two jobs checkpointing into a server of our own, which is killed once
  // they have started (a job lists the storage at start) and before their
  // first checkpoint. Requests then fail fast: connection refused, one
  // attempt each.
  mt::TempDir dir("s3-failures");
  mt::MotoServer moto("checkpoint-failures");
  ms::S3CheckpointStorageOptions s3 =
      mt::s3_options(moto.endpoint(), mt::unique_bucket("failing"), 10ms);
  s3.max_attempts = 1;
  s3.request_timeout = 500ms;
  mt::Pace pace;
  pace.every = 100;  // about two seconds
  auto make_job = [&](const char* name, int max_failures) {
    ms::S3CheckpointStorageOptions o = s3;
    o.prefix = name;
    ms::JobOptions options;
    options.parallelism = 2;
    options.checkpoint = ms::enable_checkpointing(200ms, mt::open_s3(o));
    options.checkpoint.max_consecutive_failures = max_failures;
    return mt::build_job(mt::q1_pipeline(row(), pace, dir.str(name)), options);
  };
  ms::Job strict = make_job("strict", 3);
  ms::Job patient = make_job("patient", 1000000);
  ms::Job late = make_job("late", 3);  // started once the server is gone
  REQUIRE(strict.start().ok());
  REQUIRE(patient.start().ok());
  moto.kill();

  {
    INFO("max_consecutive_failures 3");
    const ms::Status s = strict.wait();  // long before the paced source ends
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kUnavailable);
    CHECK_THAT(std::string(s.message()), Catch::Contains("3 checkpoints failed in a row"));
    mt::check_no_credentials(s);
    auto m = strict.metrics();
    CHECK(m["checkpoints_failed"] >= 3);
    CHECK(m["checkpoints_completed"] == 0);
    CHECK(m["source_records"] < static_cast<std::int64_t>(row().events));
  }
  {
    INFO("max_consecutive_failures 1000000");
    // Records keep flowing while checkpoint after checkpoint fails.
    std::int64_t records_at_third_failure = -1;
    bool advanced = false;
    while (!patient.finished()) {
      auto m = patient.metrics();
      if (records_at_third_failure < 0 && m["checkpoints_failed"] >= 3) {
        records_at_third_failure = m["source_records"];
      }
      if (records_at_third_failure >= 0 && m["checkpoints_failed"] >= 5 &&
          m["source_records"] > records_at_third_failure) {
        advanced = true;
      }
      std::this_thread::sleep_for(2ms);
    }
    CHECK(advanced);
    // At the end, the final checkpoint cannot commit the output either.
    const ms::Status s = patient.wait();
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kUnavailable);
    CHECK_THAT(std::string(s.message()), Catch::Contains("the final checkpoint"));
    CHECK_THAT(std::string(s.message()), Catch::Contains("not committed"));
    mt::check_no_credentials(s);
    auto m = patient.metrics();
    CHECK(m["source_records"] == static_cast<std::int64_t>(row().events));
    CHECK(m["checkpoints_completed"] == 0);
    CHECK(m["checkpoints_failed"] >= 6);  // the final one included
  }
  // Nothing was ever committed.
  for (const char* name : {"strict", "patient"}) {
    INFO(name);
    if (mt::fs::exists(dir.path / name)) CHECK(mt::committed_lines(dir.str(name)).empty());
  }
  {
    INFO("a job that starts while the storage is down");
    const ms::Status s = late.run();
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kUnavailable);
    // The probe at start, before any record is read.
    CHECK_THAT(std::string(s.message()), Catch::Contains("probe object"));
    mt::check_no_credentials(s);
    CHECK(late.metrics()["source_records"] == 0);
  }
}
