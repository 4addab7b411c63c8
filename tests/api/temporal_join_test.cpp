// temporal_join(): the event-time temporal join of the smart-meter readings
// with the workload's calibration stream, against a brute-force join over the
// same inputs; across a checkpoint restore; its side output and its build()
// errors.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "bench/join.hpp"
#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "meterstream/api/temporal_join.hpp"
#include "meterstream/connectors/generator/calibration.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

// Late readings arrive up to D = 600 s behind, retries up to 2000 reports
// (about 10 min at 50 meters): with a 30 min bound no reading is behind the
// readings' watermark, so no version it needs is dropped.
constexpr auto kBound = 1800000ms;

ms::SmartMeterWorkload workload() {
  ms::SmartMeterWorkload w;
  w.seed = 7;
  w.meters = 50;
  w.events = 30000;
  w.hot_factor = 3;
  return w;
}

ms::CalibrationWorkload calibration() {
  ms::CalibrationWorkload c;
  c.seed = 7;
  c.meters = 50;
  c.versions = 5;
  c.period_ms = 600000;
  c.late_start_every = 10;
  return c;
}

std::vector<ms::MeterReading> readings(const ms::SmartMeterWorkload& w) {
  ms::SmartMeterGenerator g(w);
  std::vector<ms::MeterReading> out;
  ms::MeterReading r;
  while (g.next(&r)) out.push_back(r);
  return out;
}

std::string line(const ms::MeterReading& r) {
  return std::to_string(r.meter_id) + "," + std::to_string(r.ts_ms) + "," +
         std::to_string(r.seq) + "," + std::to_string(r.wh) + "," +
         std::to_string(r.voltage_dv);
}

struct Expected {
  std::vector<std::string> joined;     // sorted lines
  std::vector<std::string> unmatched;  // sorted lines
};

// The brute-force join: for each reading, the version of its meter with the
// greatest validity time <= the reading's timestamp (the last such one in
// the changelog when two share a time).
Expected brute_force(const std::vector<ms::MeterReading>& rs,
                     const std::vector<ms::Calibration>& cs) {
  Expected e;
  for (const ms::MeterReading& r : rs) {
    const ms::Calibration* best = nullptr;
    for (const ms::Calibration& c : cs) {
      if (c.meter_id != r.meter_id || c.valid_from_ms > r.ts_ms) continue;
      if (best == nullptr || c.valid_from_ms >= best->valid_from_ms) best = &c;
    }
    if (best == nullptr) {
      e.unmatched.push_back(line(r));
    } else {
      e.joined.push_back(line(ms::calibrate(r, *best)));
    }
  }
  std::sort(e.joined.begin(), e.joined.end());
  std::sort(e.unmatched.begin(), e.unmatched.end());
  return e;
}

template <typename RSource, typename CSource, typename JoinedSink, typename UnmatchedSink>
ms::Pipeline join_pipeline(RSource rsource, CSource csource, JoinedSink joined_sink,
                           UnmatchedSink unmatched_sink) {
  ms::Pipeline p;
  auto rs = p.source(rsource).with_watermarks(
      ms::WatermarkStrategy::bounded_out_of_orderness(kBound).with_emit_every(100),
      &ms::MeterReading::ts_ms);
  auto cs = p.source(csource).with_watermarks(
      ms::WatermarkStrategy::bounded_out_of_orderness(0ms).with_emit_every(1),
      &ms::Calibration::valid_from_ms);
  auto j = ms::temporal_join(rs, &ms::MeterReading::meter_id, cs, &ms::Calibration::meter_id,
                             [](const ms::MeterReading& r, const ms::Calibration& c) {
                               return ms::calibrate(r, c);
                             },
                             "calibrate");
  j.joined.map(line).sink(joined_sink);
  j.unmatched.map(line).sink(unmatched_sink);
  return p;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_CASE("temporal_join equals a brute-force join, on the memory and RocksDB backends",
          "[temporal_join]") {
  const auto rs = readings(workload());
  const auto cs = ms::calibration_stream(calibration());
  const Expected expected = brute_force(rs, cs);
  REQUIRE(!expected.unmatched.empty());  // the late-starting meters' first readings
  REQUIRE(expected.joined.size() > expected.unmatched.size());

  for (const bool rocksdb : {false, true}) {
    for (const int parallelism : {1, 2, 3}) {
      DYNAMIC_SECTION((rocksdb ? "rocksdb" : "memory") << ", " << parallelism << " workers") {
        mt::TempDir dir;
        std::vector<std::string> joined;
        std::vector<std::string> unmatched;
        ms::Pipeline p = join_pipeline(ms::from_vector(rs), ms::from_vector(cs),
                                       ms::collect_into(joined), ms::collect_into(unmatched));
        ms::JobOptions o;
        o.parallelism = parallelism;
        if (rocksdb) o.state_backend = mt::tiny_rocksdb(dir.str("state"));
        auto m = mt::run_to_end(p, o);
        CHECK(sorted(joined) == expected.joined);
        CHECK(sorted(unmatched) == expected.unmatched);
        CHECK(m["temporal_join_joined"] == static_cast<std::int64_t>(expected.joined.size()));
        CHECK(m["temporal_join_unmatched"] ==
              static_cast<std::int64_t>(expected.unmatched.size()));
        // Superseded versions were dropped behind the watermark.
        CHECK(m["temporal_join_versions_dropped"] > 0);
      }
    }
  }
}

TEST_CASE("temporal_join counts unmatched readings when the side output is unused",
          "[temporal_join]") {
  const auto rs = readings(workload());
  const auto cs = ms::calibration_stream(calibration());
  const Expected expected = brute_force(rs, cs);
  std::vector<ms::MeterReading> joined;
  ms::Pipeline p;
  auto r = p.source(ms::from_vector(rs))
               .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(kBound),
                                &ms::MeterReading::ts_ms);
  auto c = p.source(ms::from_vector(cs))
               .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(0ms),
                                &ms::Calibration::valid_from_ms);
  ms::temporal_join(r, &ms::MeterReading::meter_id, c, &ms::Calibration::meter_id,
                    &ms::calibrate)
      .joined.sink(ms::collect_into(joined));
  ms::JobOptions o;
  o.parallelism = 2;
  auto m = mt::run_to_end(p, o);
  CHECK(joined.size() == expected.joined.size());
  CHECK(m["temporal_join_unmatched"] == static_cast<std::int64_t>(expected.unmatched.size()));
}

TEST_CASE("temporal_join resumes from a checkpoint with exactly the uninterrupted result",
          "[temporal_join]") {
  const auto rs = std::make_shared<const std::vector<ms::MeterReading>>(readings(workload()));
  const auto cs =
      std::make_shared<const std::vector<ms::Calibration>>(ms::calibration_stream(calibration()));
  const Expected expected = brute_force(*rs, *cs);

  for (const bool rocksdb : {false, true}) {
    for (const bool slow_reference : {false, true}) {
    DYNAMIC_SECTION((rocksdb ? "rocksdb" : "memory")
                    << (slow_reference ? ", readings waiting for a slow reference stream"
                                       : ", reference stream read at once")) {
      mt::TempDir dir;
      mt::Pace slow;  // about 1.2 s of readings: room for checkpoints, on RocksDB too
      slow.every = 25;
      // The reference stream: at full speed, or slow enough that checkpoints
      // hold waiting readings and a reference split that has not ended.
      mt::Pace fast;
      fast.every = 5;
      fast.pause = 10ms;
      if (!slow_reference) fast.slow->store(false);
      ms::JobOptions o;
      o.parallelism = 2;
      o.checkpoint = ms::enable_checkpointing(20ms, mt::local_storage(dir.str("chk")));
      if (rocksdb) o.state_backend = mt::tiny_rocksdb(dir.str("state"));
      {
        ms::Pipeline p = join_pipeline(mt::paced_source(rs, slow), mt::paced_source(cs, fast),
                                       mt::line_sink(dir.str("joined")),
                                       mt::line_sink(dir.str("unmatched")));
        ms::Job job = mt::build_job(p, o);
        mt::run_and_cancel(job, 2, 3000);
      }
      CHECK(mt::committed_lines(dir.str("joined")).size() < expected.joined.size());
      slow.slow->store(false);
      fast.slow->store(false);
      o.checkpoint.restore = ms::RestoreFrom::latest();
      if (rocksdb) o.state_backend = mt::tiny_rocksdb(dir.str("state2"));
      ms::Pipeline p = join_pipeline(mt::paced_source(rs, slow), mt::paced_source(cs, fast),
                                     mt::line_sink(dir.str("joined")),
                                     mt::line_sink(dir.str("unmatched")));
      mt::run_to_end(p, o);
      CHECK(mt::committed_lines(dir.str("joined")) == expected.joined);
      CHECK(mt::committed_lines(dir.str("unmatched")) == expected.unmatched);
    }
    }
  }
}

TEST_CASE("readings wait for a slow reference stream and still join the right version",
          "[temporal_join]") {
  const auto rs = std::make_shared<const std::vector<ms::MeterReading>>(readings(workload()));
  const auto cs =
      std::make_shared<const std::vector<ms::Calibration>>(ms::calibration_stream(calibration()));
  const Expected expected = brute_force(*rs, *cs);
  mt::Pace fast;
  fast.slow->store(false);
  mt::Pace slow;  // the versions trickle in: readings arrive long before theirs
  slow.every = 10;
  slow.pause = 2ms;
  std::vector<std::string> joined;
  std::vector<std::string> unmatched;
  ms::Pipeline p = join_pipeline(mt::paced_source(rs, fast), mt::paced_source(cs, slow),
                                 ms::collect_into(joined), ms::collect_into(unmatched));
  ms::JobOptions o;
  o.parallelism = 2;
  mt::run_to_end(p, o);
  CHECK(sorted(joined) == expected.joined);
  CHECK(sorted(unmatched) == expected.unmatched);
}

TEST_CASE("meterstream-bench join: calibrated Q1 equals the brute-force join then Q1",
          "[temporal_join]") {
  ms::SmartMeterWorkload w;
  w.seed = 11;
  w.meters = 3000;  // more keys than the join's cache holds on RocksDB: versions spill
  w.events = 60000;
  w.late_ppm = 0;  // Q1 drops nothing as late: its result does not depend on timing
  const auto events = ms::generate_smart_meter_events(w);
  ms::CalibrationWorkload c;
  c.seed = w.seed;
  c.meters = w.meters;
  c.period_ms = 60000;  // several versions within the readings' 5 minutes
  const auto calib = ms::calibration_stream(c);
  ms::Q1Params q;
  const ms::JoinTotals expected = ms::run_join_baseline(events, calib, q);
  REQUIRE(expected.unmatched > 0);
  REQUIRE(expected.joined + expected.unmatched == events.size());
  for (const std::string state : {"memory", "rocksdb"}) {
    for (const int threads : {1, 2}) {
      DYNAMIC_SECTION(state << ", " << threads << " threads") {
        ms::Status error;
        const ms::JoinTotals t = ms::run_join_pipeline(events, calib, q, threads, state, "", &error);
        INFO(error.ToString());
        REQUIRE(error.ok());
        CHECK(t.joined == expected.joined);
        CHECK(t.unmatched == expected.unmatched);
        CHECK(t.q1 == expected.q1);
        CHECK(t.versions_dropped > 0);
      }
    }
  }
}

TEST_CASE("build() refuses a temporal_join whose reference stream has no watermarks",
          "[temporal_join]") {
  std::vector<ms::MeterReading> out;
  ms::Pipeline p;
  auto r = p.source(ms::from_vector(std::vector<ms::MeterReading>{}))
               .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(0ms),
                                &ms::MeterReading::ts_ms);
  auto c = p.source(ms::from_vector(std::vector<ms::Calibration>{}));
  ms::temporal_join(r, &ms::MeterReading::meter_id, c, &ms::Calibration::meter_id,
                    &ms::calibrate, "calibrate")
      .joined.sink(ms::collect_into(out));
  auto job = p.build();
  REQUIRE(!job.ok());
  CHECK(job.status().code() == absl::StatusCode::kFailedPrecondition);
  const std::string msg(job.status().message());
  INFO(msg);
  CHECK(msg.find("temporal_join 'calibrate'") != std::string::npos);
  CHECK(msg.find("reference stream has no watermarks") != std::string::npos);
}

TEST_CASE("the calibration stream matches the test vector of docs/workload-calibration.md",
          "[temporal_join]") {
  ms::CalibrationWorkload w;
  w.seed = 42;
  w.meters = 5;
  w.versions = 2;
  w.period_ms = 600000;
  w.late_start_every = 5;
  const std::vector<ms::Calibration> s = ms::calibration_stream(w);
  REQUIRE(s.size() == 10);
  CHECK(s[0] == ms::Calibration{1, 1699999592778, 992549, 4});
  CHECK(s[3] == ms::Calibration{0, 1699999972085, 1036499, 8});
  CHECK(s[4] == ms::Calibration{4, 1700000488407, 952187, -1});
  CHECK(s[9] == ms::Calibration{3, 1700001114867, 960511, -6});
  ms::MeterReading r;
  r.meter_id = 1;
  r.ts_ms = 1700000006428;
  r.wh = 124;
  CHECK(ms::calibrate(r, s[0]).wh == 127);
}
