// Assigners assign (Flink's WindowAssigner shape): assign(ts) gives the
// windows of a record, checked here against the definition of each kind.
#include <chrono>
#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

// The windows of `ts` by definition: every start s = offset + k * slide with
// s <= ts < s + size, the newest first.
std::vector<ms::TimeWindow> by_definition(ms::Timestamp ts, std::int64_t size, std::int64_t slide,
                                          std::int64_t offset) {
  std::vector<ms::TimeWindow> out;
  for (std::int64_t k = (ts - offset) / slide + 2; k >= (ts - offset - size) / slide - 2; --k) {
    const std::int64_t s = offset + k * slide;
    if (s <= ts && ts < s + size) out.push_back(ms::TimeWindow{s, s + size});
  }
  return out;
}

std::vector<ms::TimeWindow> assigned(const ms::SlidingWindows& w, ms::Timestamp ts) {
  std::vector<ms::TimeWindow> out;
  for (const ms::TimeWindow span : w.assign(ts)) out.push_back(span);
  return out;
}

}  // namespace

TEST_CASE("tumbling assign() gives the one window that holds the record", "[window]") {
  const ms::TumblingWindows w = ms::tumbling(1min, 10s);
  for (ms::Timestamp ts : {-120001L, -1L, 0L, 9999L, 10000L, 69999L, 70000L, 123456789L}) {
    const std::vector<ms::TimeWindow> expected = by_definition(ts, 60000, 60000, 10000);
    REQUIRE(expected.size() == 1);
    CHECK(w.assign(ts) == expected[0]);
    CHECK(w.window_at(expected[0].start) == expected[0]);
  }
  CHECK(w.assign(10000).max_timestamp() == 69999);
}

TEST_CASE("sliding assign() gives size/slide windows, the newest first", "[window]") {
  const ms::SlidingWindows w = ms::sliding(1000ms, 250ms, 100ms);
  for (ms::Timestamp ts = -2000; ts <= 2000; ts += 37) {
    INFO("ts " << ts);
    CHECK(assigned(w, ts) == by_definition(ts, 1000, 250, 100));
  }
  // A slide that does not divide the size: 2 or 3 windows.
  const ms::SlidingWindows odd = ms::sliding(700ms, 300ms);
  for (ms::Timestamp ts = -1000; ts <= 1000; ts += 13) {
    INFO("ts " << ts);
    CHECK(assigned(odd, ts) == by_definition(ts, 700, 300, 0));
  }
}

TEST_CASE("sliding assign() stops at the low end of int64 without overflow", "[window]") {
  const ms::SlidingWindows w = ms::sliding(1min, 30s);
  const std::vector<ms::TimeWindow> low = assigned(w, ms::kMinTimestamp);
  REQUIRE(low.size() == 1);  // the earlier start is not representable
  CHECK(low[0].start == ms::kMinTimestamp);
  const std::vector<ms::TimeWindow> high = assigned(w, ms::kMaxTimestamp);
  REQUIRE(high.size() == 2);
  CHECK(high[0].end == ms::kMaxTimestamp);  // cut there
  CHECK(high[1].start == high[0].start - 30000);
}

TEST_CASE("session assign() gives ts to ts + gap, which merges with what it touches",
          "[window]") {
  const ms::SessionWindows w = ms::session(30s);
  const ms::TimeWindow a = w.assign(1000);
  CHECK(a == ms::TimeWindow{1000, 31000});
  CHECK(a.intersects(w.assign(31000)));   // touching merges (Flink's TimeWindow)
  CHECK(!a.intersects(w.assign(31001)));
  CHECK(a.cover(w.assign(20000)) == ms::TimeWindow{1000, 50000});
  CHECK(w.assign(ms::kMaxTimestamp).end == ms::kMaxTimestamp);
  CHECK(ms::SessionWindows::kMerging);
  CHECK(!ms::TumblingWindows::kMerging);
}

TEST_CASE("assigners describe and validate themselves", "[window]") {
  CHECK(ms::tumbling(1min).describe() == "tumbling 1min");
  CHECK(ms::sliding(10min, 1min).describe() == "sliding 10min/1min");
  CHECK(ms::session(30s).describe() == "session 30s");
  CHECK(ms::tumbling(1min).invalid().empty());
  CHECK(ms::tumbling(0s).invalid() == "tumbling() needs a size > 0, got 0 ms");
  CHECK(ms::sliding(1s, 2s).invalid() ==
        "sliding() with a slide of 2000 ms > its size of 1000 ms would drop the records "
        "between windows");
  CHECK(ms::session(500us).invalid() ==
        "session(): gap 500us is not a whole number of milliseconds (event time counts "
        "milliseconds)");
}
