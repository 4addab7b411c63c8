// Job lifecycle corners: a failed start, a pipeline changed after build(),
// processing-time timers at the end of input, side outputs without event time.
#include <chrono>
#include <stdexcept>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

struct Ev {
  std::uint64_t key;
  std::int64_t ts;
};

// Re-arms a processing-time timer per key, forever: it must stop at the end.
struct Heartbeat {
  void process_element(const Ev& e, ms::ProcessContext<std::uint64_t, Ev>& ctx) {
    ctx.register_processing_time_timer(ctx.current_processing_time() + 1);
    ctx.emit(e);
  }
  void on_timer(ms::Timestamp, ms::TimeDomain, ms::ProcessContext<std::uint64_t, Ev>& ctx) {
    ctx.register_processing_time_timer(ctx.current_processing_time() + 1);
  }
};

}  // namespace

TEST_CASE("wait() after a failed start() returns the start error", "[dsl]") {
  ms::Pipeline p;
  std::vector<std::string> out;
  p.source(ms::file_source("/nonexistent/meterstream/input.txt")).sink(ms::collect_into(out));
  auto job = p.build();
  REQUIRE(job.ok());
  const ms::Status started = job->start();
  REQUIRE_FALSE(started.ok());
  CHECK(job->finished());
  const ms::Status waited = job->wait();
  CHECK(waited.code() == started.code());
  CHECK_THAT(std::string(waited.message()), Catch::Contains("/nonexistent/meterstream/input.txt"));
}

TEST_CASE("steps added to a pipeline after build() are not part of the built job", "[dsl]") {
  ms::Pipeline p;
  std::vector<int> out;
  p.source(ms::from_vector(std::vector<int>{1, 2, 3})).sink(ms::collect_into(out));
  auto job = p.build();
  REQUIRE(job.ok());
  p.source(ms::from_vector(std::vector<int>{4}));  // never sunk, never validated
  REQUIRE(job->run().ok());
  CHECK(out.size() == 3);
}

TEST_CASE("processing-time timers stop firing at the end of input", "[dsl]") {
  std::vector<Ev> input;
  for (std::uint64_t i = 0; i < 2000; ++i) input.push_back({i % 50, static_cast<std::int64_t>(i)});
  for (int p : {1, 2, 3}) {
    ms::Pipeline pipeline;
    std::vector<Ev> out;
    pipeline.source(ms::from_vector(input))
        .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
        .key_by(&Ev::key)
        .process<Ev>(Heartbeat{})
        .rebalance()
        .sink(ms::collect_into(out));
    ms::JobOptions o;
    o.parallelism = p;
    auto job = pipeline.build(o);
    REQUIRE(job.ok());
    REQUIRE(job->run().ok());  // returns: no timer keeps a worker alive or sends after the end
    CHECK(out.size() == input.size());
  }
}

TEST_CASE("a source's undecodable records have no event time to window by", "[dsl]") {
  ms::Pipeline p;
  std::vector<ms::WindowResult<std::string, std::uint64_t>> out;
  auto src = p.source(ms::file_source("unused.txt"));
  src.undecodable()
      .key_by([](const std::string& s) { return s; })
      .window(ms::tumbling(1min))
      .aggregate(ms::Count{})
      .sink(ms::collect_into(out));
  std::vector<std::string> lines;
  src.with_watermarks(ms::bounded_out_of_orderness(0ms), [](const std::string&) { return 0; })
      .sink(ms::collect_into(lines));
  auto job = p.build();
  REQUIRE_FALSE(job.ok());
  CHECK_THAT(std::string(job.status().message()), Catch::Contains("no event time"));
}

TEST_CASE("dedup_by needs event time for its time to live", "[dsl][dedup]") {
  ms::Pipeline p;
  std::vector<Ev> out;
  p.source(ms::from_vector(std::vector<Ev>{{1, 0}})).dedup_by(&Ev::key, 1min).sink(ms::collect_into(out));
  auto job = p.build();
  REQUIRE_FALSE(job.ok());
  CHECK_THAT(std::string(job.status().message()), Catch::Contains("dedup_by()"));
  CHECK_THAT(std::string(job.status().message()), Catch::Contains("with_watermarks"));
}

TEST_CASE("a key function that throws stops the job with an error naming the step", "[dsl]") {
  for (int p : {1, 2, 3}) {
    ms::Pipeline pipeline;
    std::vector<ms::WindowResult<std::uint64_t, std::uint64_t>> out;
    pipeline.source(ms::from_vector(std::vector<Ev>{{1, 0}, {2, 1}, {3, 2}}))
        .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
        .key_by([](const Ev& e) -> std::uint64_t {
          if (e.key == 2) throw std::runtime_error("bad meter id");
          return e.key;
        })
        .window(ms::tumbling(1min))
        .aggregate(ms::Count{})
        .sink(ms::collect_into(out));
    ms::JobOptions o;
    o.parallelism = p;
    auto job = pipeline.build(o);
    REQUIRE(job.ok());
    const ms::Status s = job->run();
    CHECK(s.code() == absl::StatusCode::kInternal);
    CHECK_THAT(std::string(s.message()), Catch::Contains("partitioning into window(tumbling 1min).aggregate"));
    CHECK_THAT(std::string(s.message()), Catch::Contains("bad meter id"));
  }
}
