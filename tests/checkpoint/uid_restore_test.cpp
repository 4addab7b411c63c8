// State is matched by uid on restore (Stream::uid()): a pipeline that
// changed (a step added before the window shifts every default uid) restores
// its window state exactly when its stateful steps have uids, and is refused,
// naming the uid, when they do not.
#include <chrono>
#include <cstdint>
#include <string>

#include <catch2/catch.hpp>

#include "bench/q1_pipeline.hpp"
#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

const mt::WorkloadRow& row() { return mt::kQ1Rows[0]; }

// Q1 of row() into the exactly-once sink at `out_dir`; with `extra_step` a
// map (that keeps every reading) runs before the windows, which shifts the
// position of every later step. With `uids` the stateful steps have uids.
ms::Pipeline q1(const mt::Pace& pace, const std::string& out_dir, bool extra_step, bool uids) {
  const ms::Q1Params q = row().params(false);
  ms::Pipeline p;
  ms::Stream<ms::MeterReading> readings =
      p.source(mt::paced_source(mt::row_events(row()), pace))
          .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(
                               std::chrono::milliseconds(q.bound_ms))
                               .with_emit_every(q.wm_every),
                           &ms::MeterReading::ts_ms);
  if (uids) readings = readings.uid("readings");
  if (extra_step) {
    readings = readings.map([](const ms::MeterReading& r) { return r; }).name("copy");
  }
  auto usage = readings.key_by(&ms::MeterReading::meter_id)
                   .window(ms::tumbling(std::chrono::milliseconds(q.window_ms)))
                   .aggregate(ms::Q1Aggregate{})
                   .name(extra_step ? "usage per minute, renamed" : "usage per minute");
  if (uids) usage = usage.uid("usage-v1");
  auto sink = usage.map(ms::q1_result_line).sink(mt::line_sink(out_dir));
  if (uids) sink.uid("usage-out");
  return p;
}

ms::JobOptions options(const mt::TempDir& dir) {
  ms::JobOptions o;
  o.parallelism = 2;
  o.checkpoint = ms::enable_checkpointing(25ms, mt::local_storage(dir.str("chk")));
  return o;
}

// Runs q1() without the extra step until 2 checkpoints, cancels it, then
// restores the latest checkpoint into q1() with the extra step.
ms::Status cut_and_restore_reordered(const mt::TempDir& dir, bool uids) {
  {
    mt::Pace pace;
    ms::Job job = mt::build_job(q1(pace, dir.str("out"), false, uids), options(dir));
    mt::run_and_cancel(job, 2, static_cast<std::int64_t>(row().events / 3));
  }
  mt::Pace pace;
  pace.slow->store(false);
  ms::JobOptions o = options(dir);
  o.checkpoint.restore = ms::RestoreFrom::latest();
  ms::Job job = mt::build_job(q1(pace, dir.str("out"), true, uids), o);
  return job.run();
}

}  // namespace

TEST_CASE("with uids, a pipeline with a step added before the window restores it exactly",
          "[checkpoint]") {
  mt::TempDir dir("uid-restore");
  const ms::Status s = cut_and_restore_reordered(dir, true);
  INFO(s.ToString());
  REQUIRE(s.ok());
  // The committed output equals an uninterrupted run's.
  mt::check_q1_committed(dir.str("out"), row().expected);
}

TEST_CASE("without uids, that changed pipeline is refused naming the window's uid",
          "[checkpoint]") {
  mt::TempDir dir("uid-refused");
  const ms::Status s = cut_and_restore_reordered(dir, false);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  // Source #0 (watermarks inside it), window #1; with the map, window #2.
  CHECK_THAT(std::string(s.message()), Catch::Contains("uid 'window-aggregate#1'"));
  CHECK_THAT(std::string(s.message()), Catch::Contains("give stateful steps a uid"));
}
