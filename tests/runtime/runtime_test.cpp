// The runtime under load: backpressure, races, Q1 at several thread counts,
// metrics and cancellation.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "bench/q1_baseline.hpp"
#include "bench/q1_pipeline.hpp"
#include "common/count_sum.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

constexpr int kParallelisms[] = {1, 2, 3};

struct Rec {
  std::int64_t key;
  std::int64_t ts;
  std::int64_t val;
};

using CountSum = meterstream::test::CountSum<Rec>;

// A per-key stateful step: val' = val * 2 + (the key's running count % 2).
struct Tag {
  void process_element(const Rec& r, ms::ProcessContext<std::int64_t, Rec>& ctx) {
    auto c = ctx.value_state<std::int64_t>("count");
    const std::int64_t n = c.value().value_or(0) + 1;
    c.update(n);
    ctx.emit(Rec{r.key, r.ts, r.val * 2 + (n % 2)});
  }
};

std::vector<Rec> make_records(int n, int keys, std::uint64_t seed) {
  std::vector<Rec> v;
  v.reserve(static_cast<std::size_t>(n));
  std::uint64_t x = seed;
  for (int i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v.push_back(Rec{static_cast<std::int64_t>((x >> 33) % static_cast<std::uint64_t>(keys)), i,
                    static_cast<std::int64_t>((x >> 20) % 1000)});
  }
  return v;
}

using Key = std::tuple<std::int64_t, std::int64_t>;  // (key, window start)

// Brute force over the 3-stage pipeline below: Tag per key, map (val + 3),
// then count and sum per key and 100 ms window.
std::map<Key, std::pair<std::int64_t, std::int64_t>> expected_windows(const std::vector<Rec>& in) {
  std::map<std::int64_t, std::int64_t> counts;
  std::map<Key, std::pair<std::int64_t, std::int64_t>> out;
  for (const Rec& r : in) {
    const std::int64_t n = ++counts[r.key];
    const std::int64_t v = (r.val * 2 + (n % 2)) + 3;
    auto& w = out[{r.key, ms::window_start(r.ts, 100)}];
    ++w.first;
    w.second += v;
  }
  return out;
}

// source -> key_by -> process -> rebalance -> map -> key_by -> window -> sink
std::map<Key, std::pair<std::int64_t, std::int64_t>> run_three_stages(const std::vector<Rec>& in,
                                                                      ms::JobOptions o,
                                                                      std::int64_t* late,
                                                                      std::int64_t* source_records) {
  std::mutex mu;
  std::map<Key, std::pair<std::int64_t, std::int64_t>> got;
  bool duplicate = false;
  ms::Pipeline p;
  p.source(ms::from_vector(in))
      .with_watermarks(ms::bounded_out_of_orderness(10ms).with_emit_every(50),
                       [](const Rec& r) { return r.ts; })
      .key_by([](const Rec& r) { return r.key; })
      .process<Rec>(Tag{})
      .rebalance()
      .map([](const Rec& r) { return Rec{r.key, r.ts, r.val + 3}; })
      .key_by([](const Rec& r) { return r.key; })
      .window(ms::tumbling(100ms))
      .aggregate(CountSum{})
      .sink(ms::callback_sink<ms::WindowResult<std::int64_t, CountSum::Acc>>(
          [&](const ms::WindowResult<std::int64_t, CountSum::Acc>& r) {
            std::lock_guard<std::mutex> lock(mu);
            duplicate |= !got.emplace(Key{r.key, r.start}, std::make_pair(r.value.count, r.value.sum))
                              .second;
          }));
  ms::StatusOr<ms::Job> job = p.build(o);
  INFO(job.status().ToString());
  REQUIRE(job.ok());
  const ms::Status s = job->run();
  INFO(s.ToString());
  REQUIRE(s.ok());
  CHECK_FALSE(duplicate);
  auto m = job->metrics();
  *late = m["window_late_records"];
  *source_records = m["source_records"];
  return got;
}

}  // namespace

TEST_CASE("a three-stage pipeline with tiny channels finishes with exact totals", "[runtime]") {
  const std::vector<Rec> in = make_records(100000, 50, 1);
  const auto expected = expected_windows(in);
  ms::JobOptions o;
  o.parallelism = 3;
  o.channel_capacity = 2;
  o.batch_size = 1;
  std::int64_t late = -1, records = -1;
  // A deadlock would hang here: ctest's timeout (300 s) catches it.
  const auto got = run_three_stages(in, o, &late, &records);
  CHECK(late == 0);
  CHECK(records == 100000);
  CHECK(got == expected);
}

TEST_CASE("many small runs of the three-stage pipeline all give exact totals", "[runtime]") {
  for (int run = 0; run < 20; ++run) {
    const std::vector<Rec> in = make_records(2000, 1 + run % 13, 100 + static_cast<std::uint64_t>(run));
    const auto expected = expected_windows(in);
    ms::JobOptions o;
    o.parallelism = kParallelisms[run % 3];
    o.channel_capacity = 1 + static_cast<std::size_t>(run % 4);
    o.batch_size = 1 + static_cast<std::size_t>(run % 5) * 7;
    INFO("run " << run << " parallelism " << o.parallelism);
    std::int64_t late = -1, records = -1;
    CHECK(run_three_stages(in, o, &late, &records) == expected);
    CHECK(late == 0);
    CHECK(records == 2000);
  }
}

TEST_CASE("job metrics count the source records", "[runtime]") {
  for (int parallelism : kParallelisms) {
    for (int splits : {1, 3}) {
      INFO("parallelism " << parallelism << " splits " << splits);
      std::vector<std::int64_t> in(12345);
      for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::int64_t>(i);
      std::vector<std::int64_t> out;
      ms::Pipeline p;
      p.source(ms::from_vector(in, splits))
          .filter([](const std::int64_t& x) { return x % 3 == 0; })
          .sink(ms::collect_into(out));
      ms::JobOptions o;
      o.parallelism = parallelism;
      ms::StatusOr<ms::Job> job = p.build(o);
      REQUIRE(job.ok());
      REQUIRE(job->run().ok());
      auto m = job->metrics();
      CHECK(m["source_records"] == 12345);
      CHECK(out.size() == 4115);  // 0, 3, ..., 12342
      CHECK(m["sink_records"] == 4115);
    }
  }
}

TEST_CASE("cancel() from another thread stops an endless source with kCancelled", "[runtime]") {
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::atomic<std::int64_t> seen{0};
    ms::Pipeline p;
    p.source(ms::from_generator([](std::uint64_t i) -> std::optional<std::int64_t> {
       return static_cast<std::int64_t>(i);  // never ends
     }))
        .rebalance()
        .map([](const std::int64_t& x) { return x * 2; })
        .sink(ms::callback_sink<std::int64_t>([&](const std::int64_t&) { ++seen; }));
    ms::JobOptions o;
    o.parallelism = parallelism;
    ms::StatusOr<ms::Job> job = p.build(o);
    REQUIRE(job.ok());
    ms::Job* j = &*job;
    std::thread canceller([j, &seen] {
      const auto deadline = std::chrono::steady_clock::now() + 2s;
      while (seen.load() < 10000 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
      }
      j->cancel();
    });
    const ms::Status s = job->run();  // returns at all: the endless source stopped
    canceller.join();
    CHECK(s.code() == absl::StatusCode::kCancelled);
    CHECK(seen.load() >= 10000);
  }
}

namespace {

void check_q1_row(const ms::test::WorkloadRow& row) {
  const ms::Q1Params q = row.params();
  const std::vector<ms::MeterReading> events = ms::generate_smart_meter_events(row.workload());
  const ms::Q1Totals baseline = ms::run_q1_baseline(events, q);
  CHECK(baseline == row.expected);
  for (int threads : kParallelisms) {
    INFO("seed " << row.seed << " meters " << row.meters << " events " << row.events
                 << " threads " << threads);
    ms::Status error;
    const ms::Q1Totals got = ms::run_q1_pipeline(events, q, threads, "memory", "", &error);
    REQUIRE(error.ok());
    CHECK(got.windows == row.expected.windows);
    CHECK(got.late_dropped == row.expected.late_dropped);
    CHECK(got.total_count == row.expected.total_count);
    CHECK(got.sum_wh == row.expected.sum_wh);
    CHECK(got.digest == row.expected.digest);
    CHECK(got == baseline);
    CHECK(got.total_count + got.late_dropped == row.events);
  }
}

}  // namespace

// WORKLOAD.md "Expected results for Q1"; other parameters default.
TEST_CASE("Q1 through the DSL matches row 1 of the workload table at 1, 2 and 3 threads",
          "[runtime][q1]") {
  check_q1_row(ms::test::kQ1Rows[0]);
}

TEST_CASE("Q1 through the DSL matches row 2 of the workload table at 1, 2 and 3 threads",
          "[runtime][q1]") {
  check_q1_row(ms::test::kQ1Rows[1]);
}

TEST_CASE("Q1 through the DSL matches row 3 of the workload table at 1, 2 and 3 threads",
          "[runtime][q1]") {
  check_q1_row(ms::test::kQ1Rows[2]);
}

TEST_CASE("Q1 through the DSL matches row 4 of the workload table at 1, 2 and 3 threads",
          "[runtime][q1]") {
  check_q1_row(ms::test::kQ1Rows[3]);
}
