#include "bench/q1_baseline.hpp"

#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/connectors/generator/smart_meter.hpp"

namespace ms = meterstream;

namespace {

struct Row {
  std::uint64_t seed, meters, events;
  std::uint32_t late_ppm;
  std::int64_t wm_every;
  ms::Q1Totals expected;
};

ms::Q1Totals totals(std::uint64_t windows, std::uint64_t late, std::uint64_t count,
                    std::uint64_t sum_wh, std::uint64_t digest) {
  ms::Q1Totals t;
  t.windows = windows;
  t.late_dropped = late;
  t.total_count = count;
  t.sum_wh = sum_wh;
  t.digest = digest;
  return t;
}

}  // namespace

TEST_CASE("the baseline matches the expected results of every Q1 row", "[workload]") {
  // WORKLOAD.md "Expected results for Q1"; other parameters default.
  const Row rows[] = {
      {1, 1000, 200000, 10000, 1000,
       totals(46059, 912, 199088, 112028929, 16496968906046104147ULL)},
      {42, 100000, 2000000, 10000, 1000,
       totals(604479, 9120, 1990880, 1118252279, 3609725919852728751ULL)},
      {42, 100000, 2000000, 0, 1000,
       totals(600000, 0, 2000000, 1123412428, 14838514780458627050ULL)},
      {3, 50000, 1000000, 10000, 1,
       totals(302146, 4440, 995560, 559033665, 14456169730091649688ULL)},
  };
  for (const Row& row : rows) {
    ms::SmartMeterWorkload w;
    w.seed = row.seed;
    w.meters = row.meters;
    w.events = row.events;
    w.late_ppm = row.late_ppm;
    ms::Q1Params q;
    q.wm_every = row.wm_every;
    const ms::Q1Totals got = ms::run_q1_baseline(ms::generate_smart_meter_events(w), q);
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
