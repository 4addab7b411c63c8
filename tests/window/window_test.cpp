// Event-time windows against brute-force references computed in the test.
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

using namespace meterstream::test::window_reference;  // NOLINT(google-build-using-namespace)

}  // namespace

TEST_CASE("tumbling windows match a brute-force reference, late records included", "[window]") {
  const std::vector<Ev> events = random_events(6000, 7, 200, 3, 3000);
  const Reference ref = reference(events, 1000, 1000, 0, 500, 50);
  REQUIRE(!ref.late.empty());  // the input exercises lateness
  REQUIRE(ref.late.size() < events.size() / 10);
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    check_against_reference(run_windows(events, ms::tumbling(1000ms), 0, 500, 50, parallelism),
                            ref, events.size());
  }
}

TEST_CASE("sliding windows put each record in size/slide windows, as a brute force does",
          "[window]") {
  const std::vector<Ev> events = random_events(4000, 11, 200, 3, 3000);
  const Reference ref = reference(events, 1000, 250, 0, 500, 50);
  REQUIRE(!ref.late.empty());
  // Without lateness, every record is in exactly 4 windows: counts sum to 4x.
  {
    const Reference all = reference(events, 1000, 250, 0, 1000000, 50);
    std::int64_t total = 0;
    for (const Row& r : all.rows) total += r.count;
    CHECK(total == 4 * static_cast<std::int64_t>(events.size()));
  }
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    check_against_reference(run_windows(events, ms::sliding(1000ms, 250ms), 0, 500, 50, parallelism),
                            ref, events.size());
  }
}

TEST_CASE("allowed lateness re-emits updated results, and records beyond it go to late()",
          "[window]") {
  const std::vector<Ev> events = random_events(5000, 3, 200, 4, 5000);
  const Reference ref = reference(events, 1000, 1000, 1500, 300, 20);
  // The input has both kinds: re-emitted updates and records beyond lateness.
  std::set<std::tuple<std::int64_t, std::int64_t>> distinct;
  for (const Row& r : ref.rows) distinct.emplace(r.key, r.start);
  REQUIRE(distinct.size() < ref.rows.size());
  REQUIRE(!ref.late.empty());
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    check_against_reference(
        run_windows(events, ms::tumbling(1000ms), 1500, 300, 20, parallelism), ref, events.size());
  }
}

TEST_CASE("a late record within lateness updates its key's result, beyond it is dropped",
          "[window]") {
  // Bound 0, a watermark after every record (ts - 1), lateness 5000 ms.
  // key 1 @100 -> [0,1000); @5000 moves the watermark to 4999: [0,1000) fires
  // (count 1). @500: 999 + 5000 > 4999, within lateness: re-emit count 2.
  // @20000: watermark 19999. @600: 999 + 5000 <= 19999: late.
  const std::vector<Ev> events = {
      {1, 100, 1}, {1, 5000, 2}, {1, 500, 3}, {1, 20000, 4}, {1, 600, 5}};
  const std::vector<Row> expected = sorted(std::vector<Row>{
      {1, 0, 1000, 1, 1, 999},
      {1, 0, 1000, 2, 4, 999},
      {1, 5000, 6000, 1, 2, 5999},
      {1, 20000, 21000, 1, 4, 20999},
  });
  const Reference ref = reference(events, 1000, 1000, 5000, 0, 1);
  REQUIRE(ref.rows == expected);  // the reference agrees with the hand computation
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    Outcome got = run_windows(events, ms::tumbling(1000ms), 5000, 0, 1, parallelism);
    CHECK(got.rows == expected);
    CHECK(got.late == std::vector<Ev>{{1, 600, 5}});
    CHECK(got.late_metric == 1);
  }
}

TEST_CASE("with_emit_every(1) and (1000) give different late counts, each as the reference",
          "[window]") {
  const std::vector<Ev> events = random_events(5000, 5, 100, 3, 2500);
  const Reference every1 = reference(events, 1000, 1000, 0, 400, 1);
  const Reference every1000 = reference(events, 1000, 1000, 0, 400, 1000);
  REQUIRE(every1.late.size() != every1000.late.size());
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    check_against_reference(run_windows(events, ms::tumbling(1000ms), 0, 400, 1, parallelism),
                            every1, events.size());
    check_against_reference(run_windows(events, ms::tumbling(1000ms), 0, 400, 1000, parallelism),
                            every1000, events.size());
  }
}

TEST_CASE("every result carries start, end = start + size and timestamp end - 1", "[window]") {
  const std::vector<Ev> events = random_events(2000, 9, 50, 0, 1);
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    for (const Row& r : run_windows(events, ms::tumbling(700ms), 0, 100, 10, parallelism).rows) {
      CHECK(r.end - r.start == 700);
      CHECK(r.start % 700 == 0);
      CHECK(r.ts == r.end - 1);
    }
    for (const Row& r :
         run_windows(events, ms::sliding(700ms, 100ms), 0, 100, 10, parallelism).rows) {
      CHECK(r.end - r.start == 700);
      CHECK(r.start % 100 == 0);
      CHECK(r.ts == r.end - 1);
    }
  }
}

namespace {

// Session brute force, valid when no session is ever late: per key, sorted
// timestamps; a record joins the session when ts <= its end (last ts + gap).
std::vector<Row> session_reference(const std::vector<Ev>& events, std::int64_t gap) {
  std::map<std::int64_t, std::vector<Ev>> by_key;
  for (const Ev& e : events) by_key[e.key].push_back(e);
  std::vector<Row> rows;
  for (auto& [key, evs] : by_key) {
    std::sort(evs.begin(), evs.end(), [](const Ev& a, const Ev& b) { return a.ts < b.ts; });
    std::size_t i = 0;
    while (i < evs.size()) {
      Row r{key, evs[i].ts, evs[i].ts + gap, 0, 0, 0};
      while (i < evs.size() && evs[i].ts <= r.end) {
        r.end = std::max(r.end, evs[i].ts + gap);
        ++r.count;
        r.sum += evs[i].val;
        ++i;
      }
      r.ts = r.end - 1;
      rows.push_back(r);
    }
  }
  return sorted(rows);
}

}  // namespace

TEST_CASE("session windows merge records closer than the gap, as a brute force does",
          "[window]") {
  // Keys with bursts: gaps between records of a key are often below and
  // sometimes above 100 ms (and sometimes exactly 100, which merges).
  std::vector<Ev> events;
  std::uint64_t x = 99;
  std::int64_t t = 1000;
  for (int i = 0; i < 4000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const std::uint64_t r = x >> 33;
    t += static_cast<std::int64_t>(r % 7 == 0 ? 60 + r % 100 : r % 20);
    events.push_back(Ev{static_cast<std::int64_t>((r >> 8) % 3), t, static_cast<std::int64_t>(r % 50)});
  }
  const std::vector<Row> expected = session_reference(events, 100);
  REQUIRE(expected.size() > 20);
  REQUIRE(expected.size() < events.size() / 2);
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    CHECK(run_windows(events, ms::session(100ms), 0, 0, 1, parallelism).rows == expected);
    CHECK(run_windows(events, ms::session(100ms), 0, 0, 1000, parallelism).rows == expected);
  }
}

TEST_CASE("a record that bridges two sessions merges them into one", "[window]") {
  // Gap 200: [0,200) and [300,500) are apart; 150 touches both ([150,350)).
  // A bound of 1000 keeps every watermark below them until the end.
  const std::vector<Ev> events = {{1, 0, 1}, {1, 300, 2}, {2, 0, 5}, {1, 150, 4}, {2, 400, 6}};
  const std::vector<Row> expected = session_reference(events, 200);
  REQUIRE(expected.size() == 3);  // key 1: one merged session; key 2: two
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    const Outcome got = run_windows(events, ms::session(200ms), 0, 1000, 1, parallelism);
    CHECK(got.rows == expected);
    CHECK(got.late.empty());
  }
}

TEST_CASE("session windows out of order within the bound match the brute force", "[window]") {
  // Disorder below the bound: nothing is late, so the sorted brute force holds.
  std::vector<Ev> events = random_events(3000, 21, 150, 0, 1);
  for (Ev& e : events) e.ts = e.ts / 3;  // denser: records of a key often within the gap
  const std::vector<Row> expected = session_reference(events, 40);
  REQUIRE(expected.size() > 20);
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    CHECK(run_windows(events, ms::session(40ms), 0, 60, 7, parallelism).rows == expected);
  }
}

TEST_CASE("reduce() combines each key's window pairwise", "[window]") {
  const std::vector<Ev> events = random_events(3000, 13, 50, 0, 1);
  // Bound 100 > disorder: nothing late; reference = group by (key, start).
  std::map<std::pair<std::int64_t, std::int64_t>, Ev> expected;
  for (const Ev& e : events) {
    const auto k = std::make_pair(e.key, ms::window_start(e.ts, 500));
    auto it = expected.find(k);
    if (it == expected.end()) {
      expected.emplace(k, e);
    } else if (e.val > it->second.val || (e.val == it->second.val && e.ts > it->second.ts)) {
      it->second = e;
    }
  }
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::vector<ms::WindowResult<std::int64_t, Ev>> got;
    ms::Pipeline p;
    p.source(ms::from_vector(events))
        .with_watermarks(ms::bounded_out_of_orderness(100ms).with_emit_every(10), &ev_ts)
        .key_by(&ev_key)
        .window(ms::tumbling(500ms))
        .reduce([](const Ev& a, const Ev& b) {
          return (b.val > a.val || (b.val == a.val && b.ts > a.ts)) ? b : a;
        })
        .sink(ms::collect_into(got));
    ms::JobOptions o = options(parallelism);
    REQUIRE(p.run(o).ok());
    REQUIRE(got.size() == expected.size());
    for (const auto& r : got) {
      auto it = expected.find({r.key, r.start});
      REQUIRE(it != expected.end());
      CHECK(r.end == r.start + 500);
      CHECK(r.value == it->second);
    }
  }
}

TEST_CASE("the Count aggregate counts each key's window", "[window]") {
  const std::vector<Ev> events = random_events(3000, 17, 50, 0, 1);
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::uint64_t> expected;
  for (const Ev& e : events) {
    const std::int64_t s = ms::window_start(e.ts, 300);
    ++expected[{e.key, s, s + 300}];
  }
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::vector<ms::WindowResult<std::int64_t, std::uint64_t>> got;
    ms::Pipeline p;
    p.source(ms::from_vector(events))
        .with_watermarks(ms::bounded_out_of_orderness(100ms), &ev_ts)
        .key_by(&ev_key)
        .window(ms::tumbling(300ms))
        .aggregate(ms::Count{})
        .sink(ms::collect_into(got));
    REQUIRE(p.run(options(parallelism)).ok());
    std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::uint64_t> counts;
    for (const auto& r : got) CHECK(counts.emplace(std::make_tuple(r.key, r.start, r.end), r.value).second);
    CHECK(counts == expected);
  }
}

TEST_CASE("two splits where one ends early give the brute-force windows", "[window]") {
  // Split 0: keys 0..3, 200 records with ts 0..1990; split 1: 200 records
  // later in time (ts 10000..). Each split is in order: nothing is late.
  std::vector<Ev> events;
  for (int i = 0; i < 200; ++i) events.push_back(Ev{i % 4, 10 * i, i});
  for (int i = 0; i < 200; ++i) events.push_back(Ev{i % 4, 10000 + 37 * i, 1000 + i});
  std::vector<Row> expected;
  {
    std::map<std::pair<std::int64_t, std::int64_t>, CountSum::Acc> acc;
    for (const Ev& e : events) {
      auto& a = acc[{e.key, ms::window_start(e.ts, 500)}];
      ++a.count;
      a.sum += e.val;
    }
    for (const auto& [k, a] : acc) expected.push_back(Row{k.first, k.second, k.second + 500, a.count, a.sum, k.second + 499});
    expected = sorted(expected);
  }
  for (int parallelism : {1, 2, 3}) {
    INFO("parallelism " << parallelism);
    auto rows = std::make_shared<RowSink>();
    std::vector<Ev> late;
    ms::Pipeline p;
    auto results = p.source(ms::from_vector(events, 2))
                       .with_watermarks(ms::bounded_out_of_orderness(0ms).with_emit_every(5), &ev_ts)
                       .key_by(&ev_key)
                       .window(ms::tumbling(500ms))
                       .aggregate(CountSum{});
    results.late().sink(ms::collect_into(late));
    results.sink(rows);
    ms::JobOptions o = options(parallelism);
    o.batch_size = 16;
    REQUIRE(p.run(o).ok());
    CHECK(rows->rows() == expected);
    CHECK(late.empty());
  }
}

namespace {

// Two splits: split 0 produces `n` in-order records slowly (a few per poll,
// sleeping 2 ms per poll); split 1 has no data for now until split 0 ends, then
// ends.
class SlowAndSilentSource final : public ms::Source<Ev> {
 public:
  explicit SlowAndSilentSource(int n) : n_(n) {}
  std::string name() const override { return "slow-and-silent"; }
  ms::StatusOr<std::vector<std::unique_ptr<ms::SplitReader<Ev>>>> create_splits() override {
    std::vector<std::unique_ptr<ms::SplitReader<Ev>>> out;
    out.push_back(std::make_unique<Slow>(this));
    out.push_back(std::make_unique<Silent>(this));
    return out;
  }
  std::atomic<bool> first_done{false};

 private:
  class Slow final : public ms::SplitReader<Ev> {
   public:
    explicit Slow(SlowAndSilentSource* s) : s_(s) {}
    ms::StatusOr<Poll> poll(std::vector<Ev>& out, std::size_t max,
                            std::vector<std::string>&) override {
      std::this_thread::sleep_for(2ms);
      for (std::size_t k = 0; k < std::min<std::size_t>(max, 2) && i_ < s_->n_; ++k, ++i_) {
        out.push_back(Ev{i_ % 3, 100 * i_, 1});
      }
      if (i_ < s_->n_) return Poll::kMore;
      s_->first_done = true;
      return Poll::kEnd;
    }
    std::string name() const override { return "slow"; }

   private:
    SlowAndSilentSource* s_;
    int i_ = 0;
  };
  class Silent final : public ms::SplitReader<Ev> {
   public:
    explicit Silent(SlowAndSilentSource* s) : s_(s) {}
    ms::StatusOr<Poll> poll(std::vector<Ev>&, std::size_t, std::vector<std::string>&) override {
      if (s_->first_done) return Poll::kEnd;
      std::this_thread::sleep_for(1ms);
      return Poll::kNoDataNow;
    }
    std::string name() const override { return "silent"; }

   private:
    SlowAndSilentSource* s_;
  };
  int n_;
};

// Runs the idleness pipeline; returns, per fired window, whether split 0 had
// already ended when the sink saw it.
std::vector<bool> run_idleness(ms::WatermarkStrategy strategy, int parallelism,
                               std::int64_t* windows_total) {
  auto source = std::make_shared<SlowAndSilentSource>(120);
  std::mutex mu;
  std::vector<bool> after_end;
  std::int64_t total = 0;
  ms::Pipeline p;
  p.source(std::shared_ptr<ms::Source<Ev>>(source))
      .with_watermarks(strategy.with_emit_every(1), &ev_ts)
      .key_by(&ev_key)
      .window(ms::tumbling(1000ms))
      .aggregate(CountSum{})
      .sink(ms::callback_sink<Result>([&, source](const Result& r) {
        std::lock_guard<std::mutex> lock(mu);
        after_end.push_back(source->first_done.load());
        total += r.value.count;
      }));
  ms::JobOptions o = options(parallelism);
  o.batch_size = 1;
  const ms::Status s = p.run(o);
  INFO(s.ToString());
  REQUIRE(s.ok());
  *windows_total = total;
  return after_end;
}

}  // namespace

TEST_CASE("with_idleness lets windows fire while another split has no data", "[window]") {
  // Parallelism 2: each split on its own worker.
  for (int parallelism : {2}) {
    INFO("parallelism " << parallelism);
    std::int64_t total = 0;
    // 120 records, 100 ms apart, keys i % 3: 12 windows of 1000 ms per key.
    // Without idleness the silent split holds the watermark at its minimum:
    // every window fires after split 0 ended.
    std::vector<bool> plain =
        run_idleness(ms::WatermarkStrategy::bounded_out_of_orderness(0ms), parallelism, &total);
    CHECK(total == 120);
    CHECK(plain.size() == 12 * 3);
    CHECK(std::count(plain.begin(), plain.end(), false) == 0);
    // With idleness 50 ms the silent split stops holding it back: most
    // windows fire while split 0 still runs.
    std::vector<bool> idle = run_idleness(
        ms::WatermarkStrategy::bounded_out_of_orderness(0ms).with_idleness(50ms), parallelism,
        &total);
    CHECK(total == 120);
    CHECK(idle.size() == 12 * 3);
    CHECK(std::count(idle.begin(), idle.end(), false) > 18);
  }
}

namespace {

// Events of 3 keys at timestamps `base + offsets[i]`.
std::vector<Ev> events_at(std::int64_t base, std::initializer_list<std::int64_t> offsets) {
  std::vector<Ev> v;
  std::int64_t i = 0;
  for (std::int64_t off : offsets) {
    v.push_back(Ev{i % 3, base + off, 1});
    ++i;
  }
  return v;
}

// Every result is a window within int64 that holds records, fired at end - 1.
void check_extreme_rows(const Outcome& got) {
  for (const Row& r : got.rows) {
    INFO("window [" << r.start << ", " << r.end << ")");
    CHECK(r.start < r.end);
    CHECK(r.ts == r.end - 1);
    CHECK(r.count > 0);
  }
}

std::int64_t total_count(const Outcome& got) {
  std::int64_t n = 0;
  // A result re-emitted for a late record counts again; none is late here.
  for (const Row& r : got.rows) n += r.count;
  return n;
}

}  // namespace

TEST_CASE("timestamps near both ends of int64 window without overflow (UBSan-clean)",
          "[window]") {
  // 1 h of lateness and of out-of-orderness: end - 1 + lateness and
  // max_ts - bound - 1 would overflow near the ends without saturation.
  const std::int64_t hour = 3'600'000;
  const std::vector<Ev> high =
      events_at(ms::kMaxTimestamp, {-hour - 5, -70'000, -61'000, -1'000, -2, -1, 0});
  const std::vector<Ev> low = events_at(ms::kMinTimestamp, {0, 1, 2, 1'000, 61'000, 70'000,
                                                            hour + 5});
  for (const auto* events : {&high, &low}) {
    const bool at_high = events == &high;
    INFO((at_high ? "near kMaxTimestamp" : "near kMinTimestamp"));
    const auto n = static_cast<std::int64_t>(events->size());
    {
      const Outcome got = run_windows(*events, ms::tumbling(1min), hour, hour, 1, 1);
      check_extreme_rows(got);
      CHECK(got.late.empty());
      CHECK(total_count(got) == n);  // each record in exactly one window
    }
    {
      const Outcome got = run_windows(*events, ms::sliding(1min, 30s), hour, hour, 1, 2);
      check_extreme_rows(got);
      CHECK(got.late.empty());
      // Two windows per record, but where the earlier start lies below
      // kMinTimestamp (the first records near the low end).
      CHECK(total_count(got) <= 2 * n);
      CHECK(total_count(got) >= (at_high ? 2 * n : n));
    }
  }
  // The watermark generator saturates too.
  ms::WatermarkGenerator g(hour);
  g.on_event(ms::kMinTimestamp + 1);
  CHECK(g.advance() == ms::kMinTimestamp);
  g.on_event(ms::kMaxTimestamp);
  CHECK(g.advance() == ms::kMaxTimestamp - hour - 1);
  CHECK(ms::window_start(ms::kMinTimestamp + 5, 60'000, 7) == ms::kMinTimestamp);
  CHECK(ms::window_end(ms::kMaxTimestamp - 5, 60'000) == ms::kMaxTimestamp);
  CHECK(ms::window_start(ms::kMaxTimestamp, 60'000, -7) <= ms::kMaxTimestamp);
}

TEST_CASE("session windows near both ends of int64 merge without overflow (UBSan-clean)",
          "[window]") {
  for (const std::int64_t base : {ms::kMaxTimestamp - 200'000, ms::kMinTimestamp}) {
    INFO("base " << base);
    const std::vector<Ev> events = events_at(base, {0, 3, 30'000, 60'000, 199'000, 200'000});
    auto rows = std::make_shared<RowSink>();
    std::vector<Ev> late;
    ms::Pipeline p;
    auto results = p.source(ms::from_vector(events))
                       .with_watermarks(ms::bounded_out_of_orderness(1h), &ev_ts)
                       .key_by(&ev_key)
                       .window(ms::session(1min))
                       .allowed_lateness(1h)
                       .aggregate(CountSum{});
    results.late().sink(ms::collect_into(late));
    results.sink(rows);
    ms::StatusOr<ms::Job> job = p.build(options(1));
    REQUIRE(job.ok());
    REQUIRE(job->run().ok());
    std::int64_t n = 0;
    for (const Row& r : rows->rows()) {
      // A session of a record at kMaxTimestamp itself is cut to [kMax, kMax).
      CHECK((r.start < r.end || r.end == ms::kMaxTimestamp));
      CHECK(r.ts == r.end - 1);
      n += r.count;
    }
    CHECK(late.empty());
    CHECK(n == static_cast<std::int64_t>(events.size()));
  }
}
