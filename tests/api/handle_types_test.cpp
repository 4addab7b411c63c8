// The DSL's handle types: KeyedStream<K, T> names a keyed stream without its
// key function's type and gives the same results; the wiring behind the
// handles is not part of their public interface.
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "bench/q1.hpp"
#include "common/workload_rows.hpp"
#include <catch2/catch.hpp>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;

namespace {

using ByMeter = ms::KeyedStream<std::uint64_t, ms::MeterReading>;

// A pipeline step in a function of its own, as a user would write it.
void q1_windows(ByMeter by_meter, const ms::Q1Params& q, std::vector<ms::Q1Result>& windows,
                std::vector<ms::MeterReading>& late) {
  auto per_minute = by_meter.window(ms::tumbling(std::chrono::milliseconds(q.window_ms)))
                        .aggregate(ms::Q1Aggregate{});
  per_minute.sink(ms::collect_into(windows));
  per_minute.late().sink(ms::collect_into(late));
}

ms::Q1Totals totals_of(const std::vector<ms::Q1Result>& results) {
  ms::Q1Totals t;
  for (const ms::Q1Result& r : results) {
    t.add_window(r.key, r.start, r.value.count, r.value.sum_wh, r.value.min_v, r.value.max_v);
  }
  return t;
}

// Handles are made by the pipeline and its steps only.
static_assert(!std::is_constructible_v<ms::Stream<int>, std::shared_ptr<ms::detail::Graph>, int,
                                       int, int>);
static_assert(std::is_default_constructible_v<ms::Stream<int>>);

}  // namespace

TEST_CASE("a KeyedStream<K, T> without its key function's type gives Q1's results",
          "[dsl]") {
  const mt::WorkloadRow& row = mt::kQ1Rows[0];
  const std::vector<ms::MeterReading> events = ms::generate_smart_meter_events(row.workload());
  const ms::Q1Params q = row.params();
  for (const bool lambda : {false, true}) {
    for (const int threads : {1, 2}) {
      DYNAMIC_SECTION((lambda ? "a lambda key, " : "a member key, ") << threads << " threads") {
        std::vector<ms::Q1Result> windows;
        std::vector<ms::MeterReading> late;
        ms::Pipeline p;
        auto readings =
            p.source(ms::from_vector(events))
                .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(
                                     std::chrono::milliseconds(q.bound_ms))
                                     .with_emit_every(q.wm_every),
                                 &ms::MeterReading::ts_ms);
        if (lambda) {
          q1_windows(readings.key_by([](const ms::MeterReading& r) { return r.meter_id; }), q,
                     windows, late);
        } else {
          q1_windows(readings.key_by(&ms::MeterReading::meter_id), q, windows, late);
        }
        ms::JobOptions o;
        o.parallelism = threads;
        const ms::Status s = p.run(o);
        INFO(s.ToString());
        REQUIRE(s.ok());
        ms::Q1Totals got = totals_of(windows);
        got.late_dropped = late.size();
        CHECK(got == row.expected);
      }
    }
  }
}

TEST_CASE("a KeyedStream<K, T> stays keyed through dedup_by_sequence", "[dsl]") {
  std::vector<ms::MeterReading> events;
  for (std::uint32_t seq : {1U, 2U, 2U, 3U, 1U}) {
    ms::MeterReading r{};
    r.meter_id = 7;
    r.seq = seq;
    events.push_back(r);
  }
  std::vector<ms::MeterReading> out;
  ms::Pipeline p;
  ByMeter by_meter = p.source(ms::from_vector(events)).key_by(&ms::MeterReading::meter_id);
  ByMeter deduped = by_meter.dedup_by_sequence(&ms::MeterReading::seq);
  deduped.input().sink(ms::collect_into(out));
  ms::JobOptions o;
  o.parallelism = 2;
  const ms::Status s = p.run(o);
  INFO(s.ToString());
  REQUIRE(s.ok());
  CHECK(out.size() == 3);
}
