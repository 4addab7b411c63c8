// The brute-force reference of the event-time window tests (window_test.cpp,
// salted_window_test.cpp): small records Ev {key, ts, val}, random inputs
// with late records, the reference's rows and late records for a window
// definition, and run_windows(), the same aggregation (CountSum) through the
// DSL, unsalted or salted.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "common/count_sum.hpp"
#include "meterstream/meterstream.hpp"

namespace meterstream::test::window_reference {

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

inline std::int64_t ev_key(const Ev& e) { return e.key; }
inline std::int64_t ev_ts(const Ev& e) { return e.ts; }

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

using Result = meterstream::WindowResult<std::int64_t, CountSum::Acc>;

// Collects window results with their timestamps.
class RowSink final : public meterstream::Sink<Result> {
 public:
  std::string name() const override { return "rows"; }
  meterstream::StatusOr<std::unique_ptr<meterstream::SinkWriter<Result>>> create_writer(int, int) override {
    return std::unique_ptr<meterstream::SinkWriter<Result>>(std::make_unique<Writer>(this));
  }
  std::vector<Row> rows() {
    std::lock_guard<std::mutex> lock(mu_);
    auto r = rows_;
    std::sort(r.begin(), r.end());
    return r;
  }

 private:
  class Writer final : public meterstream::SinkWriter<Result> {
   public:
    explicit Writer(RowSink* s) : s_(s) {}
    meterstream::Status write(const meterstream::RecordBatch<Result>& b) override {
      std::lock_guard<std::mutex> lock(s_->mu_);
      for (std::size_t i = 0; i < b.size(); ++i) {
        const Result& r = b.values[i];
        s_->rows_.push_back(Row{r.key, r.start, r.end, r.value.count, r.value.sum, b.timestamps[i]});
      }
      return meterstream::Status();
    }
    meterstream::Status close() override { return meterstream::Status(); }

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

inline meterstream::JobOptions options(int parallelism) {
  meterstream::JobOptions o;
  o.parallelism = parallelism;
  return o;
}

// Random events, 7 keys, base time 10 ms apart; most arrive within `jitter`
// ms of their base time, `late_pct` percent up to `delay` ms earlier.
inline std::vector<Ev> random_events(int n, std::uint64_t seed, std::int64_t jitter, int late_pct,
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

inline Reference reference(const std::vector<Ev>& events, std::int64_t size, std::int64_t slide,
                    std::int64_t L, std::int64_t B, std::int64_t E) {
  Reference ref;
  std::map<std::int64_t, std::map<std::int64_t, CountSum::Acc>> windows;  // start -> key -> acc
  std::set<std::int64_t> fired;
  std::int64_t wm = meterstream::kMinTimestamp;
  std::int64_t max_ts = meterstream::kMinTimestamp;
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
    for (std::int64_t start = meterstream::window_start(e.ts, slide); start > e.ts - size; start -= slide) {
      const std::int64_t end = start + size;
      // Late iff end - 1 + L <= the last watermark before the record.
      if (wm != meterstream::kMinTimestamp && end - 1 + L <= wm) continue;
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
  advance(meterstream::kMaxTimestamp);
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

// With salts > 0 the keyed stream is salted(salts) before the window; its
// results_metric stays -1 then (window_results counts the salts' partials).
template <typename Assigner>
Outcome run_windows(const std::vector<Ev>& events, Assigner assigner, std::int64_t L,
                    std::int64_t B, std::int64_t E, int parallelism, int salts = 0) {
  auto rows = std::make_shared<RowSink>();
  Outcome out;
  meterstream::Pipeline p;
  auto keyed = p.source(meterstream::from_vector(events))
                   .with_watermarks(meterstream::bounded_out_of_orderness(std::chrono::milliseconds(B))
                                        .with_emit_every(E),
                                    &ev_ts)
                   .key_by(&ev_key);
  auto aggregate = [&](auto stream) {
    auto results = stream.window(assigner)
                       .allowed_lateness(std::chrono::milliseconds(L))
                       .aggregate(CountSum{});
    results.late().sink(meterstream::collect_into(out.late));
    results.sink(rows);
  };
  if (salts > 0) {
    aggregate(keyed.salted(salts));
  } else {
    aggregate(keyed);
  }
  meterstream::StatusOr<meterstream::Job> job = p.build(options(parallelism));
  INFO(job.status().ToString());
  REQUIRE(job.ok());
  const meterstream::Status s = job->run();
  INFO(s.ToString());
  REQUIRE(s.ok());
  auto m = job->metrics();
  out.rows = rows->rows();
  out.late = sorted(out.late);
  out.late_metric = m["window_late_records"];
  if (salts == 0) out.results_metric = m["window_results"];
  out.source_records = m["source_records"];
  return out;
}

inline void check_against_reference(const Outcome& got, const Reference& ref, std::size_t inputs) {
  CHECK(got.rows.size() == ref.rows.size());
  CHECK(got.rows == ref.rows);
  CHECK(got.late == sorted(ref.late));
  CHECK(got.late_metric == static_cast<std::int64_t>(ref.late.size()));
  if (got.results_metric >= 0) {
    CHECK(got.results_metric == static_cast<std::int64_t>(ref.rows.size()));
  }
  CHECK(got.source_records == static_cast<std::int64_t>(inputs));
}

}  // namespace meterstream::test::window_reference
