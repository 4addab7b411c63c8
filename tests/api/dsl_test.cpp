// The DSL end to end: transformations, sources and sinks, keyed process
// functions with state and timers, errors of user code and of the plan.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "common/temp_dir.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using meterstream::test::TempDir;
using namespace std::chrono_literals;

namespace {

constexpr int kParallelisms[] = {1, 2, 3};

ms::JobOptions options(int parallelism) {
  ms::JobOptions o;
  o.parallelism = parallelism;
  return o;
}

template <typename T>
std::vector<T> sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs the pipeline; fails the test with the status message when it fails.
ms::Job build_ok(const ms::Pipeline& p, ms::JobOptions o) {
  ms::StatusOr<ms::Job> job = p.build(std::move(o));
  INFO(job.status().ToString());
  REQUIRE(job.ok());
  return *std::move(job);
}

void run_ok(const ms::Pipeline& p, ms::JobOptions o) {
  ms::Job job = build_ok(p, std::move(o));
  const ms::Status s = job.run();
  INFO(s.ToString());
  REQUIRE(s.ok());
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

std::vector<std::int64_t> iota(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

}  // namespace

TEST_CASE("map, filter and flat_map chains give what a loop over the input gives", "[dsl]") {
  const std::vector<std::int64_t> input = iota(5000);
  // The reference, computed with a plain loop.
  std::vector<std::string> expected;
  for (std::int64_t x : input) {
    const std::int64_t y = x * 3 + 1;
    if (y % 2 != 0) continue;
    for (std::int64_t k = 0; k < x % 3; ++k) expected.push_back(std::to_string(y) + "/" + std::to_string(k));
  }
  for (int parallelism : kParallelisms) {
    for (int splits : {1, 4}) {
      INFO("parallelism " << parallelism << " splits " << splits);
      std::vector<std::string> got;
      ms::Pipeline p;
      p.source(ms::from_vector(input, splits))
          .map([](const std::int64_t& x) { return std::make_pair(x, x * 3 + 1); })
          .filter([](const std::pair<std::int64_t, std::int64_t>& v) { return v.second % 2 == 0; })
          .flat_map<std::string>(
              [](const std::pair<std::int64_t, std::int64_t>& v, ms::Emitter<std::string>& out) {
                for (std::int64_t k = 0; k < v.first % 3; ++k) {
                  out.emit(std::to_string(v.second) + "/" + std::to_string(k));
                }
              })
          .sink(ms::collect_into(got));
      run_ok(p, options(parallelism));
      CHECK(sorted(got) == sorted(expected));
    }
  }
}

TEST_CASE("from_vector with one split keeps the input order at parallelism 1", "[dsl]") {
  const std::vector<std::int64_t> input = iota(3000);
  std::vector<std::int64_t> got;
  ms::Pipeline p;
  p.source(ms::from_vector(input)).map([](const std::int64_t& x) { return x; }).sink(
      ms::collect_into(got));
  run_ok(p, options(1));
  CHECK(got == input);
}

TEST_CASE("from_vector with several splits reads every record once", "[dsl]") {
  const std::vector<std::int64_t> input = iota(10007);
  for (int parallelism : kParallelisms) {
    for (int splits : {2, 3, 7}) {
      INFO("parallelism " << parallelism << " splits " << splits);
      std::vector<std::int64_t> got;
      ms::Pipeline p;
      p.source(ms::from_vector(input, splits)).sink(ms::collect_into(got));
      ms::Job job = build_ok(p, options(parallelism));
      REQUIRE(job.run().ok());
      CHECK(sorted(got) == input);
      CHECK(job.metrics()["source_records"] == static_cast<std::int64_t>(input.size()));
    }
  }
}

TEST_CASE("from_generator calls the function until it returns nullopt", "[dsl]") {
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::vector<std::uint64_t> got;
    ms::Pipeline p;
    p.source(ms::from_generator([](std::uint64_t i) -> std::optional<std::uint64_t> {
       if (i >= 2500) return std::nullopt;
       return i * i;
     }))
        .rebalance()
        .sink(ms::collect_into(got));
    run_ok(p, options(parallelism));
    std::vector<std::uint64_t> expected;
    for (std::uint64_t i = 0; i < 2500; ++i) expected.push_back(i * i);
    CHECK(sorted(got) == expected);
  }
}

TEST_CASE("callback_sink sees every record once", "[dsl]") {
  const std::vector<std::int64_t> input = iota(4000);
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::mutex mu;
    std::vector<std::int64_t> got;
    std::atomic<std::int64_t> sum{0};
    ms::Pipeline p;
    p.source(ms::from_vector(input, 3))
        .map([](const std::int64_t& x) { return x * 2; })
        .sink(ms::callback_sink<std::int64_t>([&](const std::int64_t& v) {
          sum += v;
          std::lock_guard<std::mutex> lock(mu);
          got.push_back(v);
        }));
    run_ok(p, options(parallelism));
    std::int64_t expected_sum = 0;
    std::vector<std::int64_t> expected;
    for (std::int64_t x : input) {
      expected_sum += 2 * x;
      expected.push_back(2 * x);
    }
    CHECK(sum.load() == expected_sum);
    CHECK(sorted(got) == expected);
  }
}

TEST_CASE("rebalance keeps every record", "[dsl]") {
  const std::vector<std::int64_t> input = iota(20000);
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::vector<std::int64_t> got;
    std::mutex mu;
    std::set<std::thread::id> threads;
    ms::Pipeline p;
    p.source(ms::from_vector(input))
        .rebalance()
        .map([&](const std::int64_t& x) {
          std::lock_guard<std::mutex> lock(mu);
          threads.insert(std::this_thread::get_id());
          return x + 1;
        })
        .sink(ms::collect_into(got));
    ms::JobOptions o = options(parallelism);
    o.batch_size = 64;
    run_ok(p, o);
    std::vector<std::int64_t> expected;
    for (std::int64_t x : input) expected.push_back(x + 1);
    CHECK(sorted(got) == expected);
    // Round-robin over the workers: each one maps some records.
    CHECK(threads.size() == static_cast<std::size_t>(parallelism));
  }
}

TEST_CASE("file_source and file_sink round trip, undecodable lines go to the side output",
          "[dsl]") {
  TempDir dir;
  const std::string in_path = dir.str("in.txt");
  const std::string out_path = dir.str("out.txt");
  const std::string bad_path = dir.str("bad.txt");
  // Numbers, with some lines that do not parse.
  std::vector<std::string> lines;
  std::vector<std::int64_t> numbers;
  std::vector<std::string> expected_bad;
  for (int i = 0; i < 3000; ++i) {
    std::string line;
    if (i % 97 == 13) {
      line = "oops " + std::to_string(i);
      expected_bad.push_back(in_path + ":" + std::to_string(i + 1) + ": " + line);
    } else {
      line = std::to_string(i * 7 - 100);
      numbers.push_back(i * 7 - 100);
    }
    lines.push_back(line);
  }
  {
    std::ofstream out(in_path);
    for (const std::string& l : lines) out << l << '\n';
  }
  auto parse = [](std::string_view line) -> std::optional<std::int64_t> {
    if (line.empty()) return std::nullopt;
    std::size_t i = line[0] == '-' ? 1 : 0;
    if (i == line.size()) return std::nullopt;
    std::int64_t v = 0;
    for (; i < line.size(); ++i) {
      if (line[i] < '0' || line[i] > '9') return std::nullopt;
      v = v * 10 + (line[i] - '0');
    }
    return line[0] == '-' ? -v : v;
  };
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    ms::Pipeline p;
    auto src = p.source(ms::file_source(in_path, parse));
    src.undecodable().sink(ms::file_sink(bad_path));
    src.rebalance()
        .map([](const std::int64_t& v) { return v * 2; })
        .sink(ms::file_sink<std::int64_t>(out_path,
                                          [](const std::int64_t& v) { return std::to_string(v); }));
    ms::JobOptions o = options(parallelism);
    o.batch_size = 100;
    ms::Job job = build_ok(p, o);
    const ms::Status s = job.run();
    INFO(s.ToString());
    REQUIRE(s.ok());

    std::vector<std::int64_t> got;
    for (const std::string& l : read_lines(out_path)) got.push_back(std::stoll(l));
    std::vector<std::int64_t> expected;
    for (std::int64_t v : numbers) expected.push_back(v * 2);
    CHECK(sorted(got) == sorted(expected));
    CHECK(sorted(read_lines(bad_path)) == sorted(expected_bad));
    auto metrics = job.metrics();
    CHECK(metrics["source_undecodable"] == static_cast<std::int64_t>(expected_bad.size()));
    CHECK(metrics["source_records"] == static_cast<std::int64_t>(numbers.size()));
  }
}

TEST_CASE("undecodable lines are counted when the side output is not used", "[dsl]") {
  TempDir dir;
  const std::string in_path = dir.str("in.txt");
  {
    std::ofstream out(in_path);
    out << "a\n\nb\nxx\n";
  }
  std::vector<std::string> got;
  ms::Pipeline p;
  p.source(ms::file_source(in_path, [](std::string_view l) -> std::optional<std::string> {
     if (l.size() != 1) return std::nullopt;
     return std::string(l);
   }))
      .sink(ms::collect_into(got));
  ms::Job job = build_ok(p, options(2));
  REQUIRE(job.run().ok());
  CHECK(sorted(got) == std::vector<std::string>{"a", "b"});
  CHECK(job.metrics()["source_undecodable"] == 2);
}

TEST_CASE("a file_source parser that throws fails the job naming the source, file and line",
          "[dsl]") {
  TempDir dir;
  const std::string in_path = dir.str("events.csv");
  {
    std::ofstream out(in_path);
    out << "1\n2\nthree\n4\n";
  }
  std::vector<std::uint64_t> got;
  ms::Pipeline p;
  p.source(ms::file_source(in_path, [](std::string_view l) -> std::optional<std::uint64_t> {
     return std::stoull(std::string(l));  // throws std::invalid_argument on "three"
   }))
      .sink(ms::collect_into(got));
  ms::Job job = build_ok(p, options(2));
  const ms::Status s = job.run();
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  const std::string msg(s.message());
  CHECK(contains(msg, "file_source(" + in_path + ")"));
  CHECK(contains(msg, in_path + ":3"));
  CHECK(contains(msg, "stoull"));
}

TEST_CASE("a missing input file fails run() with the path in the message", "[dsl]") {
  TempDir dir;
  const std::string missing = dir.str("does-not-exist.txt");
  std::vector<std::string> got;
  ms::Pipeline p;
  p.source(ms::file_source(missing)).sink(ms::collect_into(got));
  ms::StatusOr<ms::Job> job = p.build(options(2));
  ms::Status s = job.ok() ? job->run() : job.status();
  CHECK(s.code() == absl::StatusCode::kNotFound);
  CHECK(contains(std::string(s.message()), missing));
  CHECK(got.empty());
}

// --- Keyed process functions ---

namespace {

struct Event {
  std::int64_t key;
  std::int64_t ts;
  std::int64_t value;
};

// Counts records per key in a ValueState and emits (key, running count).
struct RunningCount {
  void process_element(const Event& e, ms::ProcessContext<std::int64_t, std::pair<std::int64_t, std::int64_t>>& ctx) {
    auto count = ctx.value_state<std::int64_t>("count");
    const std::int64_t c = count.value().value_or(0) + 1;
    count.update(c);
    ctx.emit({e.key, c});
  }
};

struct PassThrough {
  void process_element(const std::int64_t& x, ms::ProcessContext<std::int64_t, std::int64_t>& ctx) {
    ctx.emit(x);
  }
};

std::vector<Event> keyed_events(int n, int keys) {
  std::vector<Event> v;
  std::uint64_t x = 12345;
  for (int i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v.push_back(Event{static_cast<std::int64_t>((x >> 33) % static_cast<std::uint64_t>(keys)),
                      1000 + i, static_cast<std::int64_t>((x >> 20) % 100)});
  }
  return v;
}

}  // namespace

TEST_CASE("a keyed process function counts per key with ValueState", "[dsl]") {
  const std::vector<Event> input = keyed_events(6000, 37);
  // Reference: the running count of each key, in input order.
  std::vector<std::pair<std::int64_t, std::int64_t>> expected;
  std::map<std::int64_t, std::int64_t> counts;
  for (const Event& e : input) expected.emplace_back(e.key, ++counts[e.key]);
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::vector<std::pair<std::int64_t, std::int64_t>> got;
    ms::Pipeline p;
    p.source(ms::from_vector(input))
        .key_by([](const Event& e) { return e.key; })
        .process<std::pair<std::int64_t, std::int64_t>>(RunningCount{})
        .sink(ms::collect_into(got));
    run_ok(p, options(parallelism));
    CHECK(sorted(got) == sorted(expected));
  }
}

namespace {

// Sums values per (key, value % 5) bucket in a MapState; on every record emits
// the bucket's new sum and the number of buckets the key has.
struct BucketSums {
  struct Out {
    std::int64_t key, bucket, sum, buckets;
    bool operator<(const Out& o) const {
      return std::tie(key, bucket, sum, buckets) < std::tie(o.key, o.bucket, o.sum, o.buckets);
    }
    bool operator==(const Out& o) const {
      return std::tie(key, bucket, sum, buckets) == std::tie(o.key, o.bucket, o.sum, o.buckets);
    }
  };
  void process_element(const Event& e, ms::ProcessContext<std::int64_t, Out>& ctx) {
    auto sums = ctx.map_state<std::int64_t, std::int64_t>("sums");
    const std::int64_t bucket = e.value % 5;
    const std::int64_t s = sums.get(bucket).value_or(0) + e.value;
    sums.put(bucket, s);
    std::int64_t buckets = 0;
    sums.for_each([&](const std::int64_t&, const std::int64_t&) { ++buckets; });
    ctx.emit(Out{e.key, bucket, s, buckets});
  }
};

}  // namespace

TEST_CASE("a keyed process function keeps per-key MapState", "[dsl]") {
  const std::vector<Event> input = keyed_events(3000, 11);
  std::vector<BucketSums::Out> expected;
  std::map<std::int64_t, std::map<std::int64_t, std::int64_t>> ref;
  for (const Event& e : input) {
    auto& m = ref[e.key];
    m[e.value % 5] += e.value;
    expected.push_back(BucketSums::Out{e.key, e.value % 5, m[e.value % 5],
                                       static_cast<std::int64_t>(m.size())});
  }
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::vector<BucketSums::Out> got;
    ms::Pipeline p;
    p.source(ms::from_vector(input))
        .key_by([](const Event& e) { return e.key; })
        .process<BucketSums::Out>(BucketSums{})
        .sink(ms::collect_into(got));
    run_ok(p, options(parallelism));
    CHECK(sorted(got) == sorted(expected));
  }
}

namespace {

struct Fired {
  std::int64_t key;
  std::int64_t timer;
  std::int64_t watermark;  // the watermark when it fired
  std::int64_t seen;       // records of the key seen when it fired
};

// For each record registers an event-time timer at ts + 100; on the timer
// emits (key, time, watermark, records seen).
struct EventTimers {
  void process_element(const Event& e, ms::ProcessContext<std::int64_t, Fired>& ctx) {
    auto seen = ctx.value_state<std::int64_t>("seen");
    seen.update(seen.value().value_or(0) + 1);
    ctx.register_event_time_timer(e.ts + 100);
  }
  void on_timer(ms::Timestamp t, ms::TimeDomain domain, ms::ProcessContext<std::int64_t, Fired>& ctx) {
    if (domain != ms::TimeDomain::kEventTime) throw std::runtime_error("wrong domain");
    ctx.emit(Fired{ctx.key(), t, ctx.current_watermark(), ctx.value_state<std::int64_t>("seen").value().value_or(-1)});
  }
};

}  // namespace

namespace {

void check_event_timers(int n) {
  // Keys 0..4, timestamps increasing by 10 with a small disorder.
  std::vector<Event> input;
  for (int i = 0; i < n; ++i) {
    const std::int64_t ts = 10 * i + ((i % 7) * 13) % 40;
    input.push_back(Event{i % 5, ts, i});
  }
  const std::int64_t bound = 50;
  // Reference: simulate the source's watermarks (every 10 records,
  // max ts - bound - 1); a timer t of key k fires at the first watermark >= t,
  // or at end of input (kMaxTimestamp), having seen the key's records before
  // that watermark.
  std::map<std::pair<std::int64_t, std::int64_t>, std::pair<std::int64_t, std::int64_t>> expected;
  {
    std::set<std::pair<std::int64_t, std::int64_t>> pending;  // (time, key)
    std::map<std::int64_t, std::int64_t> seen;
    std::int64_t max_ts = ms::kMinTimestamp;
    std::int64_t wm = ms::kMinTimestamp;
    auto advance = [&](std::int64_t w) {
      while (!pending.empty() && pending.begin()->first <= w) {
        auto [t, k] = *pending.begin();
        pending.erase(pending.begin());
        expected[{k, t}] = {w, seen[k]};
      }
    };
    for (std::size_t i = 0; i < input.size(); ++i) {
      const Event& e = input[i];
      ++seen[e.key];
      pending.emplace(e.ts + 100, e.key);
      max_ts = std::max(max_ts, e.ts);
      if ((i + 1) % 10 == 0) {
        wm = std::max(wm, max_ts - bound - 1);
        advance(wm);
      }
    }
    advance(ms::kMaxTimestamp);
  }
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::mutex mu;
    std::map<std::int64_t, std::vector<Fired>> per_key;  // in firing order
    ms::Pipeline p;
    p.source(ms::from_vector(input))
        .with_watermarks(ms::bounded_out_of_orderness(std::chrono::milliseconds(bound)).with_emit_every(10),
                         [](const Event& e) { return e.ts; })
        .key_by([](const Event& e) { return e.key; })
        .process<Fired>(EventTimers{})
        .sink(ms::callback_sink<Fired>([&](const Fired& f) {
          std::lock_guard<std::mutex> lock(mu);
          per_key[f.key].push_back(f);
        }));
    run_ok(p, options(parallelism));
    std::size_t total = 0;
    for (const auto& [key, fired] : per_key) {
      total += fired.size();
      for (std::size_t i = 0; i < fired.size(); ++i) {
        const Fired& f = fired[i];
        INFO("key " << key << " timer " << f.timer);
        if (i > 0) CHECK(fired[i - 1].timer < f.timer);  // in time order, deduplicated
        CHECK(f.watermark >= f.timer);
        auto it = expected.find({key, f.timer});
        REQUIRE(it != expected.end());
        CHECK(f.watermark == it->second.first);
        CHECK(f.seen == it->second.second);
      }
    }
    CHECK(total == expected.size());
  }
}

}  // namespace

TEST_CASE("event-time timers fire in order once the watermark passes them and at end of input",
          "[dsl]") {
  // 2005 records: the last watermark boundary (every 10) is not the last record.
  check_event_timers(2005);
}

TEST_CASE("the watermark due after the last record is emitted before the end of input", "[dsl]") {
  // 2000 records with a watermark every 10: the 2000th record is both the last
  // and a watermark boundary. The source must still emit max ts - bound - 1
  // (WORKLOAD.md: after every E-th event) before kMaxTimestamp, so the timers
  // it passes fire at that watermark, not at end of input.
  check_event_timers(2000);
}

namespace {

// Registers a processing-time timer 50 ms after the first record of each key.
struct ProcessingTimer {
  struct Out {
    std::int64_t key;
    std::int64_t registered;  // processing time of the registration
    std::int64_t timer;
    std::int64_t fired_at;    // processing time on_timer ran
    bool processing_domain;
  };
  void process_element(const Event&, ms::ProcessContext<std::int64_t, Out>& ctx) {
    auto reg = ctx.value_state<std::int64_t>("registered");
    if (reg.value()) return;
    const std::int64_t now = ctx.current_processing_time();
    reg.update(now);
    ctx.register_processing_time_timer(now + 50);
  }
  void on_timer(ms::Timestamp t, ms::TimeDomain domain, ms::ProcessContext<std::int64_t, Out>& ctx) {
    ctx.emit(Out{ctx.key(), ctx.value_state<std::int64_t>("registered").value().value_or(-1), t,
                 ms::processing_time_now(), domain == ms::TimeDomain::kProcessingTime});
  }
};

}  // namespace

TEST_CASE("a processing-time timer fires once the wall clock reaches it", "[dsl]") {
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::mutex mu;
    std::vector<ProcessingTimer::Out> got;
    const auto start = std::chrono::steady_clock::now();
    ms::Pipeline p;
    // ~200 ms of input: 2 keys, a record every 4 ms.
    p.source(ms::from_generator([start](std::uint64_t i) -> std::optional<Event> {
       if (std::chrono::steady_clock::now() - start > 200ms) return std::nullopt;
       std::this_thread::sleep_for(4ms);
       return Event{static_cast<std::int64_t>(i % 2), static_cast<std::int64_t>(i), 0};
     }))
        .key_by([](const Event& e) { return e.key; })
        .process<ProcessingTimer::Out>(ProcessingTimer{})
        .sink(ms::callback_sink<ProcessingTimer::Out>([&](const ProcessingTimer::Out& o) {
          std::lock_guard<std::mutex> lock(mu);
          got.push_back(o);
        }));
    ms::JobOptions o = options(parallelism);
    o.batch_size = 1;  // records reach the process function as they are made
    run_ok(p, o);
    REQUIRE(got.size() == 2);
    std::set<std::int64_t> keys;
    for (const auto& out : got) {
      keys.insert(out.key);
      CHECK(out.processing_domain);
      CHECK(out.timer == out.registered + 50);
      CHECK(out.fired_at >= out.timer);
    }
    CHECK(keys == std::set<std::int64_t>{0, 1});
  }
}

TEST_CASE("an exception in a user map function fails run() with kInternal naming the operator",
          "[dsl]") {
  for (int parallelism : kParallelisms) {
    INFO("parallelism " << parallelism);
    std::vector<std::int64_t> got;
    ms::Pipeline p;
    p.source(ms::from_vector(iota(100000), 3))
        .rebalance()
        .map([](const std::int64_t& x) {
          if (x == 4321) throw std::runtime_error("bad record 4321");
          return x;
        })
        .key_by([](const std::int64_t& x) { return x % 10; })
        .process<std::int64_t>(PassThrough{})
        .sink(ms::collect_into(got));
    ms::Job job = build_ok(p, options(parallelism));
    const ms::Status s = job.run();  // must return, not hang
    CHECK(s.code() == absl::StatusCode::kInternal);
    const std::string msg(s.message());
    INFO(msg);
    CHECK(contains(msg, "map"));
    CHECK(contains(msg, "bad record 4321"));
  }
}

// --- Bad plans and options, reported by build() before any record flows ---

namespace {

// A source that counts the records it hands out (none must flow on a bad plan).
std::shared_ptr<ms::Source<std::int64_t>> counting_source(std::atomic<int>* polled) {
  return ms::from_generator([polled](std::uint64_t i) -> std::optional<std::int64_t> {
    ++*polled;
    if (i >= 10) return std::nullopt;
    return static_cast<std::int64_t>(i);
  });
}

void check_build_error(const ms::Pipeline& p, const std::vector<std::string>& words,
                       const std::atomic<int>& polled, ms::JobOptions o = options(2)) {
  ms::StatusOr<ms::Job> job = p.build(std::move(o));
  REQUIRE_FALSE(job.ok());
  const std::string msg(job.status().message());
  INFO(msg);
  CHECK((job.status().code() == absl::StatusCode::kInvalidArgument ||
         job.status().code() == absl::StatusCode::kFailedPrecondition));
  for (const std::string& w : words) CHECK(contains(msg, w));
  CHECK(polled.load() == 0);
}

struct Sum {
  using accumulator_type = std::int64_t;
  std::int64_t create() const { return 0; }
  void add(std::int64_t& a, const std::int64_t& v) const { a += v; }
  void merge(std::int64_t& a, const std::int64_t& b) const { a += b; }
  std::int64_t result(const std::int64_t& a) const { return a; }
};

auto ident() {
  return [](const std::int64_t& x) { return x; };
}

}  // namespace

TEST_CASE("build() reports a tumbling window of size 0", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<ms::WindowResult<std::int64_t, std::int64_t>> out;
  ms::Pipeline p;
  p.source(counting_source(&polled))
      .with_watermarks(ms::bounded_out_of_orderness(0ms), ident())
      .key_by(ident())
      .window(ms::tumbling(0ms))
      .aggregate(Sum{})
      .sink(ms::collect_into(out));
  check_build_error(p, {"tumbling()", "size > 0", "0 ms"}, polled);
}

TEST_CASE("build() reports a sliding window with slide 0", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<ms::WindowResult<std::int64_t, std::int64_t>> out;
  ms::Pipeline p;
  p.source(counting_source(&polled))
      .with_watermarks(ms::bounded_out_of_orderness(0ms), ident())
      .key_by(ident())
      .window(ms::sliding(10ms, 0ms))
      .aggregate(Sum{})
      .sink(ms::collect_into(out));
  check_build_error(p, {"sliding()", "slide"}, polled);
}

TEST_CASE("build() reports sub-millisecond window durations, naming the unit", "[dsl]") {
  using namespace std::chrono_literals;
  struct Case {
    std::vector<std::string> words;
    std::function<void(ms::Stream<std::int64_t>, std::vector<ms::WindowResult<std::int64_t, std::int64_t>>*)> window;
  };
  const std::vector<Case> cases = {
      {{"tumbling()", "size 500us", "whole number of milliseconds"},
       [](auto s, auto* out) {
         s.key_by(ident()).window(ms::tumbling(500us)).aggregate(Sum{}).sink(
             ms::collect_into(*out));
       }},
      {{"tumbling()", "size 1500000ns"},
       [](auto s, auto* out) {
         s.key_by(ident()).window(ms::tumbling(1500000ns)).aggregate(Sum{}).sink(
             ms::collect_into(*out));
       }},
      {{"sliding()", "slide 250us"},
       [](auto s, auto* out) {
         s.key_by(ident()).window(ms::sliding(1s, 250us)).aggregate(Sum{}).sink(
             ms::collect_into(*out));
       }},
      {{"session()", "gap 10us"},
       [](auto s, auto* out) {
         s.key_by(ident()).window(ms::session(10us)).aggregate(Sum{}).sink(
             ms::collect_into(*out));
       }},
      {{"allowed_lateness()", "100us"},
       [](auto s, auto* out) {
         s.key_by(ident()).window(ms::tumbling(1s)).allowed_lateness(100us).aggregate(Sum{}).sink(
             ms::collect_into(*out));
       }},
  };
  for (const Case& c : cases) {
    INFO(c.words[0] << " " << c.words[1]);
    std::atomic<int> polled{0};
    std::vector<ms::WindowResult<std::int64_t, std::int64_t>> out;
    ms::Pipeline p;
    c.window(p.source(counting_source(&polled))
                 .with_watermarks(ms::bounded_out_of_orderness(0ms), ident()),
             &out);
    check_build_error(p, c.words, polled);
  }
  // 1500us is not whole milliseconds either; 2000us is.
  CHECK(ms::tumbling(1500us).inexact == "size 1500us");
  CHECK(ms::tumbling(2000us).inexact.empty());
  CHECK(ms::tumbling(2000us).size_ms == 2);
}

TEST_CASE("build() reports a sub-millisecond out-of-orderness bound or idleness", "[dsl]") {
  using namespace std::chrono_literals;
  for (const auto& [strategy, word] :
       {std::pair{ms::bounded_out_of_orderness(500us), std::string("bounded_out_of_orderness() of 500us")},
        std::pair{ms::bounded_out_of_orderness(1s).with_idleness(1500us),
                  std::string("with_idleness() of 1500us")}}) {
    std::atomic<int> polled{0};
    std::vector<std::int64_t> out;
    ms::Pipeline p;
    p.source(counting_source(&polled)).with_watermarks(strategy, ident()).sink(
        ms::collect_into(out));
    check_build_error(p, {"with_watermarks()", word, "whole number of milliseconds"}, polled);
  }
}

TEST_CASE("build() refuses a sliding window whose slide exceeds its size", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<ms::WindowResult<std::int64_t, std::int64_t>> out;
  ms::Pipeline p;
  p.source(counting_source(&polled))
      .with_watermarks(ms::bounded_out_of_orderness(0ms), ident())
      .key_by(ident())
      .window(ms::sliding(std::chrono::minutes(1), std::chrono::minutes(10)))
      .aggregate(Sum{})
      .sink(ms::collect_into(out));
  check_build_error(p, {"sliding()", "600000 ms", "60000 ms", "drop the records"}, polled);
}

namespace {
struct DoubleTs {
  double ts_s;
  std::int64_t ts_ms;
};
// with_watermarks() static_asserts on this trait: a double (or a duration, or
// a bool) does not compile as a timestamp; integral milliseconds and
// callables returning them do.
static_assert(!ms::detail::is_timestamp_fn_v<decltype(&DoubleTs::ts_s), DoubleTs>);
static_assert(!ms::detail::is_timestamp_fn_v<double (*)(const DoubleTs&), DoubleTs>);
static_assert(
    !ms::detail::is_timestamp_fn_v<std::chrono::milliseconds (*)(const DoubleTs&), DoubleTs>);
static_assert(!ms::detail::is_timestamp_fn_v<bool (*)(const DoubleTs&), DoubleTs>);
static_assert(ms::detail::is_timestamp_fn_v<decltype(&DoubleTs::ts_ms), DoubleTs>);
static_assert(ms::detail::is_timestamp_fn_v<std::uint64_t (*)(const DoubleTs&), DoubleTs>);
}  // namespace

TEST_CASE("build() reports a session gap of 0", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<ms::WindowResult<std::int64_t, std::int64_t>> out;
  ms::Pipeline p;
  p.source(counting_source(&polled))
      .with_watermarks(ms::bounded_out_of_orderness(0ms), ident())
      .key_by(ident())
      .window(ms::session(0ms))
      .aggregate(Sum{})
      .sink(ms::collect_into(out));
  check_build_error(p, {"session()", "gap"}, polled);
}

TEST_CASE("build() reports a negative allowed lateness", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<ms::WindowResult<std::int64_t, std::int64_t>> out;
  ms::Pipeline p;
  p.source(counting_source(&polled))
      .with_watermarks(ms::bounded_out_of_orderness(0ms), ident())
      .key_by(ident())
      .window(ms::tumbling(10ms))
      .allowed_lateness(-5ms)
      .aggregate(Sum{})
      .sink(ms::collect_into(out));
  check_build_error(p, {"allowed_lateness()", "-5"}, polled);
}

TEST_CASE("build() reports a negative out-of-orderness bound", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<std::int64_t> out;
  ms::Pipeline p;
  p.source(counting_source(&polled))
      .with_watermarks(ms::bounded_out_of_orderness(-1s), ident())
      .sink(ms::collect_into(out));
  check_build_error(p, {"bounded_out_of_orderness()", "-1000"}, polled);
}

TEST_CASE("build() reports a negative bound given to with_watermarks after a map", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<std::int64_t> out;
  ms::Pipeline p;
  p.source(counting_source(&polled))
      .map(ident())
      .with_watermarks(ms::bounded_out_of_orderness(-1s), ident())
      .sink(ms::collect_into(out));
  check_build_error(p, {"bounded_out_of_orderness()", "-1000"}, polled);
}

TEST_CASE("build() reports a window on a stream without event time", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<ms::WindowResult<std::int64_t, std::int64_t>> out;
  ms::Pipeline p;
  p.source(counting_source(&polled))
      .key_by(ident())
      .window(ms::tumbling(10ms))
      .aggregate(Sum{})
      .sink(ms::collect_into(out));
  check_build_error(p, {"window()", "with_watermarks()"}, polled);
}

TEST_CASE("a stream handle used twice feeds both steps", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<std::int64_t> out1, out2;
  ms::Pipeline p;
  auto s = p.source(counting_source(&polled));
  s.map([](const std::int64_t& x) { return x + 1; }).sink(ms::collect_into(out1));
  s.map([](const std::int64_t& x) { return x + 2; }).sink(ms::collect_into(out2));
  run_ok(p, options(2));
  std::vector<std::int64_t> plus1, plus2;
  for (std::int64_t x : iota(10)) {
    plus1.push_back(x + 1);
    plus2.push_back(x + 2);
  }
  CHECK(sorted(out1) == plus1);
  CHECK(sorted(out2) == plus2);
}

TEST_CASE("build() reports a parallelism of 0 and one above max_parallelism", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<std::int64_t> out;
  ms::Pipeline p;
  p.source(counting_source(&polled)).sink(ms::collect_into(out));
  check_build_error(p, {"parallelism", "got 0"}, polled, options(0));
  ms::JobOptions o = options(9);
  o.max_parallelism = 8;
  check_build_error(p, {"parallelism (9)", "max_parallelism (8)"}, polled, o);
  // Sanity: the same plan builds and runs with good options.
  run_ok(p, options(2));
  CHECK(sorted(out) == iota(10));
}

TEST_CASE("build() reports a stream that is never sunk", "[dsl]") {
  std::atomic<int> polled{0};
  std::vector<std::int64_t> out;
  ms::Pipeline p;
  auto s = p.source(counting_source(&polled)).map(ident());
  s.filter([](const std::int64_t& x) { return x > 3; });  // dangling
  check_build_error(p, {"'filter'", "never consumed", "sink"}, polled);
}

TEST_CASE("build() reports a null sink", "[dsl]") {
  std::atomic<int> polled{0};
  ms::Pipeline p;
  p.source(counting_source(&polled)).map(ident()).sink(nullptr);
  check_build_error(p, {"sink()", "null"}, polled);
}

namespace {
// An accumulator without a Codec: a window over it cannot be checkpointed.
struct NoCodecAcc {
  std::string seen;
};
struct Concat {
  using accumulator_type = NoCodecAcc;
  NoCodecAcc create() const { return {}; }
  void add(NoCodecAcc& a, const std::int64_t& v) const { a.seen += std::to_string(v); }
  void merge(NoCodecAcc& a, const NoCodecAcc& b) const { a.seen += b.seen; }
  std::string result(const NoCodecAcc& a) const { return a.seen; }
};
}  // namespace

TEST_CASE("a checkpointed window whose accumulator has no Codec fails naming the type",
          "[dsl]") {
  ms::test::TempDir dir("no-codec");
  std::vector<ms::WindowResult<std::int64_t, std::string>> out;
  ms::Pipeline p;
  p.source(ms::from_vector(std::vector<std::int64_t>{1, 2, 3}))
      .with_watermarks(ms::bounded_out_of_orderness(0ms), ident())
      .key_by(ident())
      .window(ms::tumbling(10ms))
      .aggregate(Concat{})
      .sink(ms::collect_into(out));
  ms::LocalCheckpointStorageOptions so;
  so.directory = dir.str("chk");
  auto storage = ms::make_local_checkpoint_storage(so);
  REQUIRE(storage.ok());
  ms::JobOptions o = options(1);
  o.checkpoint = ms::enable_checkpointing(
      20ms, std::shared_ptr<ms::CheckpointStorage>(std::move(storage).value()));
  auto job = p.build(o);
  REQUIRE(job.ok());
  const ms::Status s = job->run();
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(contains(std::string(s.message()), "NoCodecAcc"));
  CHECK(contains(std::string(s.message()), "Codec"));
}
