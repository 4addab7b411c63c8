// key_by().salted(n): salted window aggregations give the unsalted results
// (the brute-force reference of window_test.cpp), late upserts included, with
// a hot key; a checkpoint restores them exactly; build() refuses an aggregate
// without merge()
// (time windows need merge() anyway: without it they do not compile).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "common/count_sum.hpp"
#include "common/window_reference.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

constexpr int kParallelisms[] = {1, 2, 3};
constexpr int kSalts[] = {1, 2, 3, 4};

using namespace meterstream::test::window_reference;  // NOLINT(google-build-using-namespace)

}  // namespace

namespace {

// Per (key, start): how many rows, and the final one (the largest count:
// each upsert adds a record). With salts on several workers an
// intermediate upsert may merge another salt's part a little earlier or
// later than the unsalted operator added it; the final results and the
// number of upserts are the unsalted ones.
std::map<std::pair<std::int64_t, std::int64_t>, std::pair<std::size_t, Row>> finals(
    const std::vector<Row>& rows) {
  std::map<std::pair<std::int64_t, std::int64_t>, std::pair<std::size_t, Row>> out;
  for (const Row& r : rows) {
    auto& [n, last] = out[{r.key, r.start}];
    if (n == 0 || r.count > last.count) last = r;
    ++n;
  }
  return out;
}

void check_upserts_against_reference(const Outcome& got, const Reference& ref,
                                     std::size_t inputs) {
  CHECK(got.rows.size() == ref.rows.size());
  CHECK(finals(got.rows) == finals(ref.rows));
  CHECK(got.late == sorted(ref.late));
  CHECK(got.late_metric == static_cast<std::int64_t>(ref.late.size()));
  CHECK(got.source_records == static_cast<std::int64_t>(inputs));
}

// random_events() with key 0 hot: `hot_pct` percent of the records.
std::vector<Ev> with_hot_key(std::vector<Ev> events, int hot_pct) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (static_cast<int>((i * 37) % 100) < hot_pct) events[i].key = 0;
  }
  return events;
}

}  // namespace

TEST_CASE("salted tumbling windows give the unsalted results, with a hot key", "[window]") {
  const std::vector<Ev> events = with_hot_key(random_events(6000, 7, 200, 3, 3000), 80);
  const Reference ref = reference(events, 1000, 1000, 0, 500, 50);
  REQUIRE(!ref.late.empty());
  for (int parallelism : kParallelisms) {
    for (int salts : kSalts) {
      INFO("parallelism " << parallelism << ", salts " << salts);
      check_against_reference(
          run_windows(events, ms::tumbling(1000ms), 0, 500, 50, parallelism, salts), ref,
          events.size());
    }
  }
}

TEST_CASE("salted windows re-emit as many upserts as unsalted ones, ending in the same results", "[window]") {
  const std::vector<Ev> events = with_hot_key(random_events(5000, 3, 200, 4, 5000), 70);
  const Reference ref = reference(events, 1000, 1000, 1500, 300, 20);
  std::set<std::tuple<std::int64_t, std::int64_t>> distinct;
  for (const Row& r : ref.rows) distinct.emplace(r.key, r.start);
  REQUIRE(distinct.size() < ref.rows.size());  // there are upserts
  REQUIRE(!ref.late.empty());
  for (int parallelism : kParallelisms) {
    for (int salts : kSalts) {
      INFO("parallelism " << parallelism << ", salts " << salts);
      check_upserts_against_reference(
          run_windows(events, ms::tumbling(1000ms), 1500, 300, 20, parallelism, salts), ref,
          events.size());
    }
  }
}

TEST_CASE("salted sliding windows give the unsalted results", "[window]") {
  const std::vector<Ev> events = with_hot_key(random_events(4000, 11, 200, 3, 3000), 60);
  const Reference ref = reference(events, 1000, 250, 500, 500, 50);
  for (int parallelism : {1, 2}) {
    INFO("parallelism " << parallelism);
    check_upserts_against_reference(
        run_windows(events, ms::sliding(1000ms, 250ms), 500, 500, 50, parallelism, 2), ref,
        events.size());
  }
}

TEST_CASE("salted() refuses session windows and fewer than one salt", "[window]") {
  std::vector<Ev> events = {{1, 1, 1}};
  {
    ms::Pipeline p;
    std::vector<ms::WindowResult<std::int64_t, CountSum::Acc>> out;
    p.source(ms::from_vector(events))
        .with_watermarks(ms::bounded_out_of_orderness(0ms), &ev_ts)
        .key_by(&ev_key)
        .salted(2)
        .window(ms::session(1000ms))
        .aggregate(CountSum{})
        .sink(ms::collect_into(out));
    ms::StatusOr<ms::Job> job = p.build(options(1));
    REQUIRE(!job.ok());
    CHECK(std::string(job.status().message()).find("session") != std::string::npos);
  }
  {
    ms::Pipeline p;
    std::vector<ms::WindowResult<std::int64_t, CountSum::Acc>> out;
    p.source(ms::from_vector(events))
        .with_watermarks(ms::bounded_out_of_orderness(0ms), &ev_ts)
        .key_by(&ev_key)
        .salted(0)
        .window(ms::tumbling(1000ms))
        .aggregate(CountSum{})
        .sink(ms::collect_into(out));
    ms::StatusOr<ms::Job> job = p.build(options(1));
    REQUIRE(!job.ok());
    CHECK(std::string(job.status().message()).find("salted()") != std::string::npos);
  }
}
