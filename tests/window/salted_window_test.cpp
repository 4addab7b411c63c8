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
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

constexpr int kParallelisms[] = {1, 2, 3};
constexpr int kSalts[] = {1, 2, 3, 4};
// (The helpers below are window_test.cpp's, with a number of salts.)

struct Ev {
  std::int64_t key;
  std::int64_t ts;
  std::int64_t val;
  bool operator<(const Ev& o) const {
    return std::tie(key, ts, val) < std::tie(o.key, o.ts, o.val);
  }
  bool operator==(const Ev& o) const {
    return std::tie(key, ts, val) == std::tie(o.key, o.ts, o.val);
  }
};

std::int64_t ev_key(const Ev& e) { return e.key; }
std::int64_t ev_ts(const Ev& e) { return e.ts; }

using CountSum = meterstream::test::CountSum<Ev>;

// One emitted window result, flattened, with the record's timestamp.
struct Row {
  std::int64_t key, start, end, count, sum, ts;
  bool operator<(const Row& o) const {
    return std::tie(key, start, end, count, sum, ts) <
           std::tie(o.key, o.start, o.end, o.count, o.sum, o.ts);
  }
  bool operator==(const Row& o) const {
    return std::tie(key, start, end, count, sum, ts) ==
           std::tie(o.key, o.start, o.end, o.count, o.sum, o.ts);
  }
};

using Result = ms::WindowResult<std::int64_t, CountSum::Acc>;

// Collects window results with their timestamps.
class RowSink final : public ms::Sink<Result> {
 public:
  std::string name() const override { return "rows"; }
  ms::StatusOr<std::unique_ptr<ms::SinkWriter<Result>>> create_writer(int, int) override {
    return std::unique_ptr<ms::SinkWriter<Result>>(std::make_unique<Writer>(this));
  }
  std::vector<Row> rows() {
    std::lock_guard<std::mutex> lock(mu_);
    auto r = rows_;
    std::sort(r.begin(), r.end());
    return r;
  }

 private:
  class Writer final : public ms::SinkWriter<Result> {
   public:
    explicit Writer(RowSink* s) : s_(s) {}
    ms::Status write(const ms::RecordBatch<Result>& b) override {
      std::lock_guard<std::mutex> lock(s_->mu_);
      for (std::size_t i = 0; i < b.size(); ++i) {
        const Result& r = b.values[i];
        s_->rows_.push_back(Row{r.key, r.start, r.end, r.value.count, r.value.sum, b.timestamps[i]});
      }
      return ms::Status();
    }
    ms::Status close() override { return ms::Status(); }

   private:
    RowSink* s_;
  };
  std::mutex mu_;
  std::vector<Row> rows_;
};

template <typename T>
std::vector<T> sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v;
}

ms::JobOptions options(int parallelism) {
  ms::JobOptions o;
  o.parallelism = parallelism;
  return o;
}

// Random events, 7 keys, base time 10 ms apart; most arrive within `jitter`
// ms of their base time, `late_pct` percent up to `delay` ms earlier.
std::vector<Ev> random_events(int n, std::uint64_t seed, std::int64_t jitter, int late_pct,
                              std::int64_t delay) {
  std::vector<Ev> v;
  std::uint64_t x = seed;
  auto next = [&x] {
    x += 0x9E3779B97F4A7C15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  };
  for (int i = 0; i < n; ++i) {
    std::int64_t ts = 100000 + 10 * i - static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(jitter));
    if (static_cast<int>(next() % 100) < late_pct) {
      ts -= static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(delay));
    }
    v.push_back(Ev{static_cast<std::int64_t>(next() % 7), ts, static_cast<std::int64_t>(next() % 1000)});
  }
  return v;
}

// The reference: Flink's semantics for time windows of `size` every `slide`
// (tumbling: slide == size), allowed lateness L, one source split emitting
// the bounded-out-of-orderness watermark (bound B) after every E records and
// kMaxTimestamp at the end.
struct Reference {
  std::vector<Row> rows;
  std::vector<Ev> late;
};

Reference reference(const std::vector<Ev>& events, std::int64_t size, std::int64_t slide,
                    std::int64_t L, std::int64_t B, std::int64_t E) {
  Reference ref;
  std::map<std::int64_t, std::map<std::int64_t, CountSum::Acc>> windows;  // start -> key -> acc
  std::set<std::int64_t> fired;
  std::int64_t wm = ms::kMinTimestamp;
  std::int64_t max_ts = ms::kMinTimestamp;
  auto emit = [&](std::int64_t key, std::int64_t start, const CountSum::Acc& a) {
    ref.rows.push_back(Row{key, start, start + size, a.count, a.sum, start + size - 1});
  };
  auto advance = [&](std::int64_t w) {
    wm = w;
    for (auto& [start, table] : windows) {
      if (start + size - 1 <= wm && fired.insert(start).second) {
        for (auto& [key, acc] : table) emit(key, start, acc);
      }
    }
  };
  for (std::size_t i = 0; i < events.size(); ++i) {
    const Ev& e = events[i];
    bool any = false;
    for (std::int64_t start = ms::window_start(e.ts, slide); start > e.ts - size; start -= slide) {
      const std::int64_t end = start + size;
      // Late iff end - 1 + L <= the last watermark before the record.
      if (wm != ms::kMinTimestamp && end - 1 + L <= wm) continue;
      any = true;
      CountSum::Acc& a = windows[start][e.key];
      ++a.count;
      a.sum += e.val;
      if (fired.count(start)) emit(e.key, start, a);
    }
    if (!any) ref.late.push_back(e);
    max_ts = std::max(max_ts, e.ts);
    if ((i + 1) % static_cast<std::size_t>(E) == 0) advance(std::max(wm, max_ts - B - 1));
  }
  advance(ms::kMaxTimestamp);
  std::sort(ref.rows.begin(), ref.rows.end());
  return ref;
}

struct Outcome {
  std::vector<Row> rows;
  std::vector<Ev> late;
  std::int64_t late_metric = -1;
  std::int64_t results_metric = -1;
  std::int64_t source_records = -1;
};

template <typename Assigner>
Outcome run_windows(const std::vector<Ev>& events, Assigner assigner, std::int64_t L,
                    std::int64_t B, std::int64_t E, int parallelism, int salts) {
  auto rows = std::make_shared<RowSink>();
  Outcome out;
  ms::Pipeline p;
  auto results = p.source(ms::from_vector(events))
                     .with_watermarks(ms::bounded_out_of_orderness(std::chrono::milliseconds(B))
                                          .with_emit_every(E),
                                      &ev_ts)
                     .key_by(&ev_key)
                     .salted(salts)
                     .window(assigner)
                     .allowed_lateness(std::chrono::milliseconds(L))
                     .aggregate(CountSum{});
  results.late().sink(ms::collect_into(out.late));
  results.sink(rows);
  ms::StatusOr<ms::Job> job = p.build(options(parallelism));
  INFO(job.status().ToString());
  REQUIRE(job.ok());
  const ms::Status s = job->run();
  INFO(s.ToString());
  REQUIRE(s.ok());
  auto m = job->metrics();
  out.rows = rows->rows();
  out.late = sorted(out.late);
  out.late_metric = m["window_late_records"];
  out.results_metric = m["window_results"];
  out.source_records = m["source_records"];
  return out;
}

void check_against_reference(const Outcome& got, const Reference& ref, std::size_t inputs) {
  CHECK(got.rows.size() == ref.rows.size());
  CHECK(got.rows == ref.rows);
  CHECK(got.late == sorted(ref.late));
  CHECK(got.late_metric == static_cast<std::int64_t>(ref.late.size()));
  CHECK(got.source_records == static_cast<std::int64_t>(inputs));
}

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
