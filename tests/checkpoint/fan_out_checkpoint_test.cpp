// A stream feeding two consumers, checkpointed, cut and restored: both
// branches' exactly-once output must be that of an uninterrupted run (every
// barrier reaches each consumer after the records before it).
#include <cstdint>
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

const mt::WorkloadRow& row() { return mt::kQ1Rows[0]; }

// About a tenth of the readings.
bool low_voltage(const ms::MeterReading& r) { return r.voltage_dv < 2260; }

std::string reading_line(const ms::MeterReading& r) {
  return std::to_string(r.meter_id) + "," + std::to_string(r.seq) + "," +
         std::to_string(r.ts_ms);
}

// Q1 into `q1_dir` and, from the same readings, the low-voltage ones into
// `low_dir`, both exactly once.
ms::Pipeline two_branches(const mt::Pace& pace, const std::string& q1_dir,
                          const std::string& low_dir) {
  const ms::Q1Params q = row().params();
  ms::Pipeline p;
  auto readings =
      p.source(mt::paced_source(mt::row_events(row()), pace))
          .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(
                               std::chrono::milliseconds(q.bound_ms))
                               .with_emit_every(q.wm_every),
                           &ms::MeterReading::ts_ms);
  readings.key_by(&ms::MeterReading::meter_id)
      .window(ms::tumbling(std::chrono::milliseconds(q.window_ms)))
      .aggregate(ms::Q1Aggregate{})
      .map(ms::q1_result_line)
      .sink(mt::line_sink(q1_dir));
  readings.filter(low_voltage).map(reading_line).sink(mt::line_sink(low_dir));
  return p;
}

void cut_and_restore(int cut_threads, int restore_threads) {
  INFO("threads " << cut_threads << " -> " << restore_threads);
  mt::TempDir dir("fan-out-restore");
  auto storage = mt::local_storage(dir.str("chk"));
  const std::string q1_dir = dir.str("q1");
  const std::string low_dir = dir.str("low");

  std::vector<std::string> expected_low;
  for (const ms::MeterReading& r : *mt::row_events(row())) {
    if (low_voltage(r)) expected_low.push_back(reading_line(r));
  }
  std::sort(expected_low.begin(), expected_low.end());
  REQUIRE(expected_low.size() > 1000);

  mt::Pace pace;
  ms::JobOptions o;
  o.parallelism = cut_threads;
  o.checkpoint = ms::enable_checkpointing(30ms, storage);
  {
    ms::Job job = mt::build_job(two_branches(pace, q1_dir, low_dir), o);
    const mt::CutRun cut =
        mt::run_and_cancel(job, 2, static_cast<std::int64_t>(row().events / 3));
    CHECK(cut.metrics.at("checkpoints_failed") == 0);
  }
  const std::int64_t resume_at = mt::newest_generator_position(*storage);
  CHECK(resume_at > 0);
  CHECK(resume_at < static_cast<std::int64_t>(row().events));
  // The cut run committed part of each branch, not all of it.
  CHECK(mt::committed_lines(low_dir).size() < expected_low.size());

  pace.slow->store(false);
  o.parallelism = restore_threads;
  o.checkpoint.restore = ms::RestoreFrom::latest();
  const auto m = mt::run_to_end(two_branches(pace, q1_dir, low_dir), o);
  CHECK(m.at("source_records") ==
        static_cast<std::int64_t>(row().events) - resume_at);
  mt::check_q1_committed(q1_dir, row().expected);
  CHECK(mt::committed_lines(low_dir) == expected_low);
}

}  // namespace

TEST_CASE(
    "a stream feeding a window and a filter restores both branches exactly",
    "[checkpoint][fan-out]") {
  cut_and_restore(1, 1);
  cut_and_restore(2, 2);
  cut_and_restore(3, 2);
}
