#include "meterstream/connectors/generator/smart_meter.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "bench/q1.hpp"

namespace ms = meterstream;

namespace {

ms::SmartMeterWorkload small_workload(std::uint64_t events) {
  ms::SmartMeterWorkload w;
  w.seed = 7;
  w.meters = 300;
  w.hot_factor = 10;
  w.events = events;
  // More duplicates and late events than the default, so that short runs
  // exercise them.
  w.dup_ppm = 50000;
  w.late_ppm = 50000;
  return w;
}

}  // namespace

TEST_CASE("the first five events match the workload's test vectors", "[workload]") {
  ms::SmartMeterWorkload w;
  w.seed = 42;
  w.meters = 5;
  w.hot_factor = 3;
  w.events = 5;
  const std::vector<ms::MeterReading> expected = {
      {0, 1700000000000, 0, 402, 2292},
      {0, 1700000002142, 1, 683, 2316},
      {0, 1700000004285, 2, 258, 2283},
      {1, 1700000006428, 0, 124, 2293},
      {2, 1700000008571, 0, 854, 2350},
  };
  REQUIRE(ms::generate_smart_meter_events(w) == expected);

  ms::SmartMeterGenerator gen(w);
  ms::MeterReading r;
  for (const ms::MeterReading& e : expected) {
    REQUIRE(gen.next(&r));
    CHECK(r == e);
  }
  CHECK(gen.emitted() == 5);
  CHECK_FALSE(gen.next(&r));
  CHECK(gen.emitted() == 5);
}

TEST_CASE("the same workload always generates the same events", "[workload]") {
  const ms::SmartMeterWorkload w = small_workload(50000);
  const std::vector<ms::MeterReading> a = ms::generate_smart_meter_events(w);
  REQUIRE(a.size() == 50000);
  CHECK(a == ms::generate_smart_meter_events(w));

  // next_batch() gives the same sequence as next().
  ms::SmartMeterGenerator gen(w);
  std::vector<ms::MeterReading> b(a.size() + 10);
  std::size_t n = 0;
  while (std::size_t got = gen.next_batch(b.data() + n, 777)) n += got;
  b.resize(n);
  CHECK(b == a);

  ms::SmartMeterWorkload other = w;
  other.seed = 8;
  CHECK(ms::generate_smart_meter_events(other) != a);
}

TEST_CASE("duplicates are exact copies of earlier events within 2000 reports", "[workload]") {
  const ms::SmartMeterWorkload w = small_workload(200000);
  const std::vector<ms::MeterReading> events = ms::generate_smart_meter_events(w);
  // (meter, seq) identifies a report; remember where each was first seen,
  // counted in reports (first occurrences), not in events.
  std::map<std::pair<std::uint64_t, std::uint32_t>, std::pair<ms::MeterReading, std::uint64_t>>
      first;
  std::uint64_t reports = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t late = 0;
  for (const ms::MeterReading& e : events) {
    auto [it, inserted] = first.try_emplace({e.meter_id, e.seq}, e, reports);
    if (inserted) {
      ++reports;
      continue;
    }
    ++duplicates;
    REQUIRE(e == it->second.first);
    REQUIRE(reports - it->second.second <= 2000);
    REQUIRE(reports - it->second.second >= 1);
  }
  for (std::size_t i = 1; i < events.size(); ++i) {
    if (events[i].ts_ms < events[i - 1].ts_ms) ++late;
  }
  // 5% of about 199000 reports, with generous slack.
  CHECK(duplicates > 8000);
  CHECK(duplicates < 12000);
  CHECK(late > 0);
  CHECK(reports + duplicates == events.size());
}

TEST_CASE("a restored position continues the identical sequence", "[workload]") {
  const ms::SmartMeterWorkload w = small_workload(30000);
  const std::vector<ms::MeterReading> all = ms::generate_smart_meter_events(w);
  for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{12345},
                        std::size_t{29999}, std::size_t{30000}}) {
    ms::SmartMeterGenerator first(w);
    std::vector<ms::MeterReading> head(k);
    REQUIRE(first.next_batch(head.data(), k) == k);
    const std::string position = first.save_position();

    ms::SmartMeterGenerator second(w);
    REQUIRE(second.restore_position(position).ok());
    CHECK(second.emitted() == k);
    std::vector<ms::MeterReading> rest;
    ms::MeterReading r;
    while (second.next(&r)) rest.push_back(r);
    REQUIRE(rest.size() == all.size() - k);
    CHECK(std::equal(rest.begin(), rest.end(), all.begin() + static_cast<std::ptrdiff_t>(k)));
  }
}

TEST_CASE("a corrupt or foreign position is rejected and leaves the generator unchanged",
          "[workload]") {
  const ms::SmartMeterWorkload w = small_workload(30000);
  ms::SmartMeterGenerator gen(w);
  std::vector<ms::MeterReading> head(5000);
  gen.next_batch(head.data(), head.size());
  const std::string good = gen.save_position();

  ms::SmartMeterGenerator fresh(w);
  CHECK(fresh.restore_position("").code() == absl::StatusCode::kInvalidArgument);
  CHECK(fresh.restore_position("garbage").code() == absl::StatusCode::kInvalidArgument);
  CHECK(fresh.restore_position(good.substr(0, good.size() - 1)).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(fresh.restore_position(good + "x").code() == absl::StatusCode::kInvalidArgument);
  std::string bad_counter = good;
  bad_counter[16] ^= 1;  // low byte of the report counter
  CHECK(fresh.restore_position(bad_counter).code() == absl::StatusCode::kInvalidArgument);

  ms::SmartMeterWorkload other = w;
  other.seed = 99;
  ms::SmartMeterGenerator foreign(other);
  CHECK(foreign.restore_position(good).code() == absl::StatusCode::kInvalidArgument);

  // Nothing was restored: the fresh generator still starts at the beginning.
  CHECK(fresh.emitted() == 0);
  ms::MeterReading r;
  REQUIRE(fresh.next(&r));
  CHECK(r == ms::generate_smart_meter_events(w).front());
}

TEST_CASE("validate rejects out-of-range parameters and names the field", "[workload]") {
  CHECK(ms::SmartMeterWorkload{}.validate().ok());
  struct Case {
    const char* field;
    void (*mutate)(ms::SmartMeterWorkload&);
  };
  const Case cases[] = {
      {"meters", [](ms::SmartMeterWorkload& w) { w.meters = 1; }},
      {"hot_factor", [](ms::SmartMeterWorkload& w) { w.hot_factor = 0; }},
      {"interval_ms", [](ms::SmartMeterWorkload& w) { w.interval_ms = 0; }},
      {"max_delay_ms", [](ms::SmartMeterWorkload& w) { w.max_delay_ms = -1; }},
      {"late_ppm", [](ms::SmartMeterWorkload& w) { w.late_ppm = 1000001; }},
      {"dup_ppm", [](ms::SmartMeterWorkload& w) { w.dup_ppm = 1000001; }},
      {"anomaly_ppm", [](ms::SmartMeterWorkload& w) { w.anomaly_ppm = 2000000; }},
  };
  for (const Case& c : cases) {
    ms::SmartMeterWorkload w;
    c.mutate(w);
    const ms::Status s = w.validate();
    INFO(c.field << ": " << s.message());
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(s.message()).find(c.field) != std::string::npos);
  }
  ms::SmartMeterWorkload edge;
  edge.meters = 2;
  edge.hot_factor = 1;
  edge.late_ppm = edge.dup_ppm = edge.anomaly_ppm = 1000000;
  edge.max_delay_ms = 0;
  CHECK(edge.validate().ok());
}

TEST_CASE("the window digest term follows the workload's formula", "[workload]") {
  std::uint64_t h = ms::fmix64(17);
  h = ms::fmix64(h ^ 1700000040000ULL);
  h = ms::fmix64(h ^ 4);
  h = ms::fmix64(h ^ 1234);
  h = ms::fmix64(h ^ ((2250ULL << 16) | 2350));
  CHECK(ms::q1_window_digest(17, 1700000040000, 4, 1234, 2250, 2350) == h);

  ms::Q1Totals a;
  a.add_window(17, 1700000040000, 4, 1234, 2250, 2350);
  a.late_dropped = 3;
  ms::Q1Totals b;
  b.add_window(18, 1700000040000, 2, 100, 1800, 2300);
  ms::Q1Totals sum = a;
  sum.merge(b);
  CHECK(sum.windows == 2);
  CHECK(sum.late_dropped == 3);
  CHECK(sum.total_count == 6);
  CHECK(sum.sum_wh == 1334);
  CHECK(sum.digest == a.digest + b.digest);
}
