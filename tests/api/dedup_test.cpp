// Deduplication operators: dedup_by (exact ids with an event-time TTL) and
// dedup_by_sequence (per-key sliding bitmap), and query Q2 of WORKLOAD.md.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "bench/q1_baseline.hpp"
#include "bench/q1_pipeline.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

struct Ev {
  std::uint64_t key;
  std::uint64_t seq;
  std::int64_t ts;
};

// Runs `build(stream)` over `input` (event time = ts, bound 0, a watermark
// after every record) and returns what reached the sink plus the metrics.
template <typename Build>
std::pair<std::vector<Ev>, std::map<std::string, std::int64_t>> run(const std::vector<Ev>& input,
                                                                    int parallelism, Build build) {
  std::vector<Ev> out;
  ms::Pipeline p;
  auto s = p.source(ms::from_vector(input))
               .with_watermarks(ms::bounded_out_of_orderness(0ms).with_emit_every(1), &Ev::ts);
  build(s).sink(ms::collect_into(out));
  ms::JobOptions o;
  o.parallelism = parallelism;
  auto job = p.build(o);
  REQUIRE(job.ok());
  REQUIRE(job->run().ok());
  return {out, job->metrics()};
}

// Passes records on: a keyed step after dedup_by_sequence.
struct Forward {
  void process_element(const Ev& e, ms::ProcessContext<std::uint64_t, Ev>& ctx) { ctx.emit(e); }
};

std::multiset<std::tuple<std::uint64_t, std::uint64_t, std::int64_t>> as_multiset(
    const std::vector<Ev>& v) {
  std::multiset<std::tuple<std::uint64_t, std::uint64_t, std::int64_t>> s;
  for (const Ev& e : v) s.emplace(e.key, e.seq, e.ts);
  return s;
}

}  // namespace

TEST_CASE("dedup_by_sequence drops exactly the repeated sequence numbers of each key",
          "[dedup]") {
  // Keys 1..20, sequence numbers in order with retries 1..40 records later.
  std::vector<Ev> input;
  std::set<std::pair<std::uint64_t, std::uint64_t>> seen;
  std::vector<Ev> expected;
  std::uint64_t x = 12345;
  std::vector<std::uint64_t> next(21, 0);
  for (std::int64_t i = 0; i < 4000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    Ev e;
    if (!input.empty() && (x >> 60) < 3) {
      const std::size_t back = std::min<std::size_t>(input.size(), 1 + (x >> 20) % 40);
      e = input[input.size() - back];  // a retry of a recent record
      e.ts = i;
    } else {
      e.key = 1 + (x >> 33) % 20;
      e.seq = next[e.key]++;
      e.ts = i;
    }
    input.push_back(e);
    if (seen.insert({e.key, e.seq}).second) expected.push_back(e);
  }
  REQUIRE(expected.size() < input.size());
  for (int p : {1, 2, 3}) {
    auto [out, metrics] = run(input, p, [](auto s) {
      return s.key_by(&Ev::key).dedup_by_sequence(&Ev::seq, 256).template process<Ev>(Forward{});
    });
    // A multiset: a record passed twice shows as a difference.
    CHECK(as_multiset(out) == as_multiset(expected));
    CHECK(out.size() == expected.size());
    std::set<std::pair<std::uint64_t, std::uint64_t>> passed;
    for (const Ev& e : out) CHECK(passed.insert({e.key, e.seq}).second);
    CHECK(metrics["dedup_dropped"] == static_cast<std::int64_t>(input.size() - expected.size()));
    CHECK(metrics["dedup_beyond_horizon"] == 0);
  }
}

TEST_CASE("dedup_by_sequence keeps and counts records older than its horizon", "[dedup]") {
  std::vector<Ev> input;
  for (std::uint64_t s = 0; s < 200; ++s) input.push_back({7, s, static_cast<std::int64_t>(s)});
  input.push_back({7, 10, 200});   // 189 behind the highest: beyond a horizon of 128
  input.push_back({7, 150, 201});  // within the horizon: a duplicate
  auto [out, metrics] = run(input, 2, [](auto s) {
    return s.key_by(&Ev::key).dedup_by_sequence(&Ev::seq, 128).template process<Ev>(Forward{});
  });
  CHECK(out.size() == 201);
  CHECK(metrics["dedup_beyond_horizon"] == 1);
  CHECK(metrics["dedup_dropped"] == 1);
}

TEST_CASE("dedup_by forgets an id once the watermark passes its time to live", "[dedup]") {
  // A watermark follows every record: max ts - 0 - 1.
  const std::vector<Ev> input = {
      {1, 0, 0},   // first: kept, remembered until the watermark reaches 0 + 10
      {1, 0, 5},   // watermark -1: dropped
      {2, 0, 6},   // another id: kept
      {1, 0, 30},  // watermark 5: still remembered, dropped
      {1, 0, 35},  // watermark 29 passed 10: forgotten, kept (remembered until 45)
      {1, 0, 40},  // watermark 34: dropped
  };
  for (int p : {1, 2}) {
    auto [out, metrics] = run(input, p, [](auto s) { return s.dedup_by(&Ev::key, 10ms); });
    CHECK(as_multiset(out) == as_multiset({{1, 0, 0}, {2, 0, 6}, {1, 0, 35}}));
    CHECK(metrics["dedup_dropped"] == 3);
  }
}

TEST_CASE("dedup operators reject a zero horizon or time to live at build()", "[dedup]") {
  {
    ms::Pipeline p;
    std::vector<Ev> out;
    p.source(ms::from_vector(std::vector<Ev>{}))
        .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
        .dedup_by(&Ev::key, 0ms)
        .sink(ms::collect_into(out));
    auto job = p.build();
    REQUIRE_FALSE(job.ok());
    CHECK_THAT(std::string(job.status().message()), Catch::Contains("dedup_by(): the ttl must be > 0"));
  }
  {
    ms::Pipeline p;
    std::vector<Ev> out;
    p.source(ms::from_vector(std::vector<Ev>{}))
        .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
        .key_by(&Ev::key)
        .dedup_by_sequence(&Ev::seq, 0)
        .process<Ev>(Forward{})
        .sink(ms::collect_into(out));
    auto job = p.build();
    REQUIRE_FALSE(job.ok());
    CHECK_THAT(std::string(job.status().message()), Catch::Contains("horizon must be >= 1"));
  }
}

TEST_CASE("Q2 (dedup, then Q1) matches the workload table at 1, 2 and 3 threads", "[dedup]") {
  for (const ms::test::WorkloadRow& row : ms::test::kQ2Rows) {
    const auto events = ms::generate_smart_meter_events(row.workload());
    const ms::Q1Params params = row.params(/*dedup=*/true);
    CHECK(ms::run_q1_baseline(events, params) == row.expected);
    for (int threads : {1, 2, 3}) {
      ms::Status error;
      const ms::Q1Totals got = ms::run_q1_pipeline(events, params, threads, "memory", "", &error);
      REQUIRE(error.ok());
      CHECK(got == row.expected);
      CHECK(got.total_count + got.late_dropped + got.duplicates_dropped == row.events);
    }
  }
}
