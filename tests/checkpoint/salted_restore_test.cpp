// key_by().salted(n) across checkpoints: Q1 salted, cut after a few
// checkpoints and restored (at the same and at another parallelism), commits
// exactly the workload table's Q1 results, as the unsalted run does.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/q1_pipeline.hpp"
#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const mt::WorkloadRow& row() { return mt::kQ1Rows[0]; }

ms::JobOptions options(const mt::TempDir& dir, int parallelism) {
  ms::JobOptions o;
  o.parallelism = parallelism;
  o.checkpoint = ms::enable_checkpointing(25ms, mt::local_storage(dir.str("chk")));
  return o;
}

}  // namespace

TEST_CASE("a salted Q1 restored from a checkpoint mid-run commits the unsalted results",
          "[checkpoint]") {
  constexpr int kSalts = 3;
  mt::TempDir cut("salted-cut");
  {
    mt::Pace pace;
    ms::JobOptions o = options(cut, 2);
    ms::Job job = mt::build_job(mt::q1_pipeline(row(), pace, cut.str("out"), false, kSalts), o);
    mt::run_and_cancel(job, 3, static_cast<std::int64_t>(row().events / 3));
    REQUIRE(mt::completed_ids(*o.checkpoint.storage).size() >= 3);
  }
  for (int parallelism : {2, 3, 1}) {
    INFO("restored at parallelism " << parallelism);
    mt::TempDir copy("salted-copy");
    fs::copy(cut.path / "chk", copy.path / "chk", fs::copy_options::recursive);
    fs::copy(cut.path / "out", copy.path / "out", fs::copy_options::recursive);
    mt::Pace pace;
    pace.slow->store(false);
    ms::JobOptions o = options(copy, parallelism);
    o.checkpoint.restore = ms::RestoreFrom::latest();
    ms::StatusOr<ms::Job> job =
        mt::q1_pipeline(row(), pace, copy.str("out"), false, kSalts).build(o);
    INFO(job.status().ToString());
    REQUIRE(job.ok());
    const ms::Status s = job->run();
    INFO(s.ToString());
    REQUIRE(s.ok());
    CHECK(job->metrics()["source_records"] < static_cast<std::int64_t>(row().events));
    mt::check_q1_committed(copy.str("out"), row().expected);
  }
}
