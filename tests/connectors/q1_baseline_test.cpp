#include "bench/q1_baseline.hpp"
#include "common/workload_rows.hpp"

#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/connectors/generator/smart_meter.hpp"

namespace ms = meterstream;

namespace {


}  // namespace

TEST_CASE("the baseline matches the expected results of every Q1 row", "[workload]") {
  for (const ms::test::WorkloadRow& row : ms::test::kQ1Rows) {
    const ms::Q1Totals got =
        ms::run_q1_baseline(ms::generate_smart_meter_events(row.workload()), row.params());
    INFO("seed " << row.seed << " meters " << row.meters << " events " << row.events);
    CHECK(got.windows == row.expected.windows);
    CHECK(got.late_dropped == row.expected.late_dropped);
    CHECK(got.total_count == row.expected.total_count);
    CHECK(got.sum_wh == row.expected.sum_wh);
    CHECK(got.digest == row.expected.digest);
    CHECK(got.total_count + got.late_dropped == row.events);
  }
}

TEST_CASE("every event is either counted in a window or dropped as late", "[workload]") {
  ms::SmartMeterWorkload w;
  w.seed = 5;
  w.meters = 777;
  w.events = 300000;
  w.late_ppm = 100000;
  for (std::int64_t wm_every : {1, 7, 1000, 1000000}) {
    ms::Q1Params q;
    q.wm_every = wm_every;
    q.window_ms = 10000;
    q.bound_ms = 20000;
    const ms::Q1Totals got = ms::run_q1_baseline(ms::generate_smart_meter_events(w), q);
    INFO("wm_every " << wm_every);
    CHECK(got.total_count + got.late_dropped == w.events);
    if (wm_every == 1000000) CHECK(got.late_dropped == 0);  // no watermark before the end
  }
}

TEST_CASE("an empty input fires no window", "[workload]") {
  const ms::Q1Totals got = ms::run_q1_baseline({}, ms::Q1Params{});
  CHECK(got == ms::Q1Totals{});
}

TEST_CASE("invalid Q1 parameters are rejected naming the field", "[workload]") {
  CHECK(ms::Q1Params{}.validate().ok());
  ms::Q1Params q;
  q.window_ms = 0;
  CHECK(std::string(q.validate().message()).find("window_ms") != std::string::npos);
  q = ms::Q1Params{};
  q.bound_ms = -1;
  CHECK(std::string(q.validate().message()).find("bound_ms") != std::string::npos);
  q = ms::Q1Params{};
  q.wm_every = 0;
  CHECK(std::string(q.validate().message()).find("wm_every") != std::string::npos);
}
