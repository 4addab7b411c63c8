// One stream feeding several consumers (fan-out): every consumer gets every
// record and the stream's watermarks, whether it is chained (filter, map,
// sink) or behind an exchange (key_by, rebalance), whether it changes its
// input batch or only reads it, at any thread count.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "bench/q1.hpp"
#include "bench/q1_baseline.hpp"
#include "common/workload_rows.hpp"
#include <catch2/catch.hpp>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

constexpr int kParallelisms[] = {1, 2, 3};

ms::JobOptions options(int parallelism) {
  ms::JobOptions o;
  o.parallelism = parallelism;
  return o;
}

void run_ok(const ms::Pipeline& p, const ms::JobOptions& o) {
  ms::StatusOr<ms::Job> job = p.build(o);
  INFO(job.status().ToString());
  REQUIRE(job.ok());
  const ms::Status s = job->run();
  INFO(s.ToString());
  REQUIRE(s.ok());
}

template <typename T>
std::vector<T> sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v;
}

ms::Q1Totals totals_of(const std::vector<ms::Q1Result>& results) {
  ms::Q1Totals t;
  for (const ms::Q1Result& r : results) {
    t.add_window(r.key, r.start, r.value.count, r.value.sum_wh, r.value.min_v,
                 r.value.max_v);
  }
  return t;
}

using ReadingKey = std::tuple<std::uint64_t, std::uint32_t, std::int64_t>;
ReadingKey key_of(const ms::MeterReading& r) {
  return {r.meter_id, r.seq, r.ts_ms};
}

std::vector<ReadingKey> keys_where(const std::vector<ms::MeterReading>& events,
                                   bool (*keep)(const ms::MeterReading&)) {
  std::vector<ReadingKey> out;
  for (const auto& r : events) {
    if (keep(r)) out.push_back(key_of(r));
  }
  return sorted(out);
}

bool sag(const ms::MeterReading& r) { return r.voltage_dv < 2000; }
bool heavy(const ms::MeterReading& r) { return r.wh > 1000; }

}  // namespace

TEST_CASE(
    "one stream feeds a Q1 window aggregation and filters into sinks, exactly",
    "[dsl][fan-out]") {
  const mt::WorkloadRow& row = mt::kQ1Rows[0];
  const std::vector<ms::MeterReading> events =
      ms::generate_smart_meter_events(row.workload());
  const ms::Q1Params q = row.params();
  const std::vector<ReadingKey> expected_sags = keys_where(events, sag);
  const std::vector<ReadingKey> expected_heavy = keys_where(events, heavy);
  REQUIRE(!expected_sags.empty());
  REQUIRE(!expected_heavy.empty());

  for (int threads : kParallelisms) {
    DYNAMIC_SECTION(threads << " threads") {
      std::vector<ms::Q1Result> windows;
      std::vector<ms::MeterReading> late, sags, heavy_readings;
      ms::Pipeline p;
      auto readings =
          p.source(ms::from_vector(events))
              .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(
                                   std::chrono::milliseconds(q.bound_ms))
                                   .with_emit_every(q.wm_every),
                               &ms::MeterReading::ts_ms);
      // Branch 1 (an exchange, only reads its input): Q1.
      auto per_minute =
          readings.key_by(&ms::MeterReading::meter_id)
              .window(ms::tumbling(std::chrono::milliseconds(q.window_ms)))
              .aggregate(ms::Q1Aggregate{});
      per_minute.sink(ms::collect_into(windows));
      per_minute.late().sink(ms::collect_into(late));
      // Branches 2 and 3 (chained, both compact their input in place: one
      // gets a copy, the other the source's batch).
      readings.filter(sag).sink(ms::collect_into(sags));
      readings.filter(heavy).sink(ms::collect_into(heavy_readings));
      run_ok(p, options(threads));

      ms::Q1Totals got = totals_of(windows);
      got.late_dropped = late.size();
      CHECK(got == row.expected);
      std::vector<ReadingKey> sag_keys, heavy_keys;
      for (const auto& r : sags) sag_keys.push_back(key_of(r));
      for (const auto& r : heavy_readings) heavy_keys.push_back(key_of(r));
      CHECK(sorted(sag_keys) == expected_sags);
      CHECK(sorted(heavy_keys) == expected_heavy);
    }
  }
}

TEST_CASE(
    "consumers that change their input each see every record of the stream",
    "[dsl][fan-out]") {
  std::vector<std::int64_t> input(5000);
  for (std::size_t i = 0; i < input.size(); ++i)
    input[i] = static_cast<std::int64_t>(i);
  std::vector<std::int64_t> evens, odds_times_ten;
  for (std::int64_t v : input) {
    if (v % 2 == 0) evens.push_back(v);
    if (v % 2 != 0) odds_times_ten.push_back(v * 10);
  }
  for (int threads : kParallelisms) {
    DYNAMIC_SECTION(threads << " threads") {
      std::vector<std::int64_t> got_evens, got_odds, got_all, got_rebalanced;
      std::vector<std::string> got_text;
      ms::Pipeline p;
      auto numbers = p.source(ms::from_vector(input, /*splits=*/2));
      numbers.filter([](const std::int64_t& v) { return v % 2 == 0; })
          .sink(ms::collect_into(got_evens));
      numbers.filter([](const std::int64_t& v) { return v % 2 != 0; })
          .map([](const std::int64_t& v) { return v * 10; })
          .sink(ms::collect_into(got_odds));
      numbers.sink(ms::collect_into(got_all));
      numbers.rebalance().sink(ms::collect_into(got_rebalanced));
      // A second fan-out further down, of records that are not trivially
      // copyable (the exchange moves them out of its input).
      auto text =
          numbers.map([](const std::int64_t& v) { return std::to_string(v); });
      text.rebalance()
          .filter([](const std::string& s) { return s.size() == 4; })
          .sink(ms::collect_into(got_text));
      text.filter([](const std::string& s) { return s.size() == 1; })
          .sink(ms::collect_into(got_text));
      run_ok(p, options(threads));

      CHECK(sorted(got_evens) == evens);
      CHECK(sorted(got_odds) == odds_times_ten);
      CHECK(sorted(got_all) == input);
      CHECK(sorted(got_rebalanced) == input);
      std::vector<std::string> expected_text;
      for (std::int64_t v : input) {
        const std::string s = std::to_string(v);
        if (s.size() == 4 || s.size() == 1) expected_text.push_back(s);
      }
      CHECK(sorted(got_text) == sorted(expected_text));
    }
  }
}

namespace {

// Sets an event-time timer at each record's value and emits "key:time" when
// it fires: the watermarks must reach every consumer for all timers to fire
// before the end (the final watermark fires the rest).
struct TimerPerRecord {
  void process_element(const std::int64_t& v,
                       ms::ProcessContext<std::int64_t, std::string>& ctx) {
    ctx.register_event_time_timer(v);
  }
  void on_timer(ms::Timestamp t, ms::TimeDomain,
                ms::ProcessContext<std::int64_t, std::string>& ctx) {
    ctx.emit(std::to_string(ctx.key()) + ":" + std::to_string(t));
  }
};

}  // namespace

TEST_CASE("two keyed consumers of one stream both fire their event-time timers",
          "[dsl][fan-out]") {
  std::vector<std::int64_t> input;
  for (std::int64_t i = 0; i < 2000; ++i) input.push_back(i);
  std::vector<std::string> expected;
  for (std::int64_t v : input)
    expected.push_back(std::to_string(v % 7) + ":" + std::to_string(v));
  for (int threads : kParallelisms) {
    DYNAMIC_SECTION(threads << " threads") {
      std::vector<std::string> a, b;
      ms::Pipeline p;
      auto timed =
          p.source(ms::from_vector(input))
              .with_watermarks(ms::bounded_out_of_orderness(0ms),
                               [](const std::int64_t& v) { return v; });
      auto keyed = timed.key_by([](const std::int64_t& v) { return v % 7; });
      keyed.process<std::string>(TimerPerRecord{}).sink(ms::collect_into(a));
      keyed.process<std::string>(TimerPerRecord{}).sink(ms::collect_into(b));
      run_ok(p, options(threads));
      CHECK(sorted(a) == sorted(expected));
      CHECK(sorted(b) == sorted(expected));
    }
  }
}

TEST_CASE("a side output may feed several consumers", "[dsl][fan-out]") {
  const mt::WorkloadRow& row = mt::kQ1Rows[0];
  const std::vector<ms::MeterReading> events =
      ms::generate_smart_meter_events(row.workload());
  std::vector<ms::Q1Result> windows;
  std::vector<ms::MeterReading> late1, late2;
  ms::Pipeline p;
  auto per_minute =
      p.source(ms::from_vector(events))
          .with_watermarks(
              ms::bounded_out_of_orderness(std::chrono::milliseconds(300000)),
              &ms::MeterReading::ts_ms)
          .key_by(&ms::MeterReading::meter_id)
          .window(ms::tumbling(1min))
          .aggregate(ms::Q1Aggregate{});
  per_minute.sink(ms::collect_into(windows));
  per_minute.late().sink(ms::collect_into(late1));
  per_minute.late()
      .filter([](const ms::MeterReading&) { return true; })
      .sink(ms::collect_into(late2));
  run_ok(p, options(2));
  CHECK(late1.size() == row.expected.late_dropped);
  std::vector<ReadingKey> k1, k2;
  for (const auto& r : late1) k1.push_back(key_of(r));
  for (const auto& r : late2) k2.push_back(key_of(r));
  CHECK(sorted(k1) == sorted(k2));
}

TEST_CASE("build() reports the handle a source had before with_watermarks()",
          "[dsl][fan-out]") {
  std::vector<std::int64_t> out1, out2;
  ms::Pipeline p;
  auto raw = p.source(ms::from_vector(std::vector<std::int64_t>{1, 2, 3}));
  raw.with_watermarks(ms::bounded_out_of_orderness(0ms),
                      [](const std::int64_t& v) { return v; })
      .sink(ms::collect_into(out1));
  raw.map([](const std::int64_t& v) { return v + 1; })
      .sink(ms::collect_into(out2));
  ms::StatusOr<ms::Job> job = p.build();
  REQUIRE(job.status().code() == absl::StatusCode::kFailedPrecondition);
  const std::string m(job.status().message());
  INFO(m);
  CHECK(m.find("map()") != std::string::npos);
  CHECK(m.find("with_watermarks()") != std::string::npos);
}

TEST_CASE(
    "build() reports with_watermarks() on a source stream that already feeds a "
    "step",
    "[dsl][fan-out]") {
  std::vector<std::int64_t> out1, out2;
  ms::Pipeline p;
  auto raw = p.source(ms::from_vector(std::vector<std::int64_t>{1, 2, 3}));
  raw.sink(ms::collect_into(out1));
  raw.with_watermarks(ms::bounded_out_of_orderness(0ms),
                      [](const std::int64_t& v) { return v; })
      .sink(ms::collect_into(out2));
  ms::StatusOr<ms::Job> job = p.build();
  REQUIRE(job.status().code() == absl::StatusCode::kFailedPrecondition);
  const std::string m(job.status().message());
  INFO(m);
  CHECK(m.find("with_watermarks()") != std::string::npos);
  CHECK(m.find("sink:") != std::string::npos);
}
