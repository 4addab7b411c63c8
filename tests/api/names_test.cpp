// Operator names and uids (Stream::name(), Stream::uid()): the default names
// in errors and metrics, user names, and build()'s checks of uids.
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
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
  std::uint64_t seq = 0;
};

std::vector<Ev> events() { return {{1, 0, 1}, {2, 1, 1}, {1, 2, 2}, {1, 3, 2}, {3, 70000, 1}}; }

ms::JobOptions options(int p) {
  ms::JobOptions o;
  o.parallelism = p;
  return o;
}

// Runs `p`; returns the failed status (fails the test if it succeeds).
ms::Status run_failing(const ms::Pipeline& p, int parallelism) {
  ms::StatusOr<ms::Job> job = p.build(options(parallelism));
  INFO(job.status().ToString());
  REQUIRE(job.ok());
  const ms::Status s = job->run();
  INFO(s.ToString());
  REQUIRE_FALSE(s.ok());
  return s;
}

std::string msg(const ms::Status& s) { return std::string(s.message()); }

using Result = ms::WindowResult<std::uint64_t, std::uint64_t>;

}  // namespace

TEST_CASE("errors of throwing user code name the step by its default name", "[dsl]") {
  for (int par : {1, 2}) {
    INFO("parallelism " << par);
    {
      ms::Pipeline p;
      std::vector<Ev> out;
      p.source(ms::from_vector(events()))
          .map([](const Ev& e) -> Ev {
            if (e.key == 2) throw std::runtime_error("bad key");
            return e;
          })
          .sink(ms::collect_into(out));
      const ms::Status s = run_failing(p, par);
      CHECK(s.code() == absl::StatusCode::kInternal);
      CHECK_THAT(msg(s), Catch::StartsWith("map: user code threw: bad key"));
      CHECK_THAT(msg(s), !Catch::Contains("#"));
    }
    {
      // The window's reduce function throws on the second record of key 1.
      ms::Pipeline p;
      std::vector<ms::WindowResult<std::uint64_t, Ev>> out;
      p.source(ms::from_vector(events()))
          .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
          .key_by(&Ev::key)
          .window(ms::tumbling(1min))
          .reduce([](const Ev&, const Ev&) -> Ev { throw std::runtime_error("no reduce"); })
          .sink(ms::collect_into(out));
      const ms::Status s = run_failing(p, par);
      CHECK_THAT(msg(s), Catch::Contains("window(tumbling 1min).reduce: user code threw: no reduce"));
    }
    {
      // The key function runs in the partitioning into the window.
      ms::Pipeline p;
      std::vector<Result> out;
      p.source(ms::from_vector(events()))
          .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
          .key_by([](const Ev& e) -> std::uint64_t {
            if (e.key == 3) throw std::runtime_error("bad meter id");
            return e.key;
          })
          .window(ms::sliding(10min, 1min))
          .aggregate(ms::Count{})
          .sink(ms::collect_into(out));
      const ms::Status s = run_failing(p, par);
      CHECK_THAT(msg(s), Catch::Contains("partitioning into window(sliding 10min/1min).aggregate: "
                                         "user code threw: bad meter id"));
    }
  }
}

TEST_CASE("name() shows in errors and in the per-operator metrics", "[dsl]") {
  {
    ms::Pipeline p;
    std::vector<ms::WindowResult<std::uint64_t, Ev>> out;
    p.source(ms::from_vector(events()))
        .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
        .key_by(&Ev::key)
        .window(ms::tumbling(1min))
        .reduce([](const Ev&, const Ev&) -> Ev { throw std::runtime_error("no reduce"); })
        .name("latest per minute")
        .uid("latest-v1")
        .sink(ms::collect_into(out));
    const ms::Status s = run_failing(p, 2);
    CHECK_THAT(msg(s), Catch::StartsWith("latest per minute: user code threw: no reduce"));
    CHECK_THAT(msg(s), !Catch::Contains("latest-v1"));  // the uid is state identity only
  }
  {
    ms::Pipeline p;
    std::vector<Result> out;
    auto counts = p.source(ms::from_vector(events()))
                      .name("readings")
                      .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
                      .key_by(&Ev::key)
                      .dedup_by_sequence(&Ev::seq)
                      .window(ms::tumbling(1min))
                      .aggregate(ms::Count{})
                      .name("usage per minute");
    std::vector<Ev> late;
    counts.late().sink(ms::collect_into(late)).name("too late");
    counts.sink(ms::collect_into(out)).name("results");
    ms::StatusOr<ms::Job> job = p.build(options(2));
    REQUIRE(job.ok());
    REQUIRE(job->run().ok());
    const std::map<std::string, std::int64_t> m = job->metrics();
    // {1,2,2} -> one duplicate of key 1 dropped; windows: key 1 and 2 in
    // [0, 1min), key 3 in [1min, 2min).
    REQUIRE(out.size() == 3);
    CHECK(m.at("window_results{operator=\"usage per minute\"}") == 3);
    CHECK(m.at("window_late_records{operator=\"usage per minute\"}") == 0);
    CHECK(m.at("dedup_dropped{operator=\"key_by.dedup_by_sequence\"}") == 1);
    CHECK(m.at("sink_records{operator=\"results\"}") == 3);
    CHECK(m.at("sink_records{operator=\"too late\"}") == 0);
    CHECK(m.at("source_records{operator=\"readings\"}") == 5);
    CHECK(m.at("window_results") == 3);  // the job-wide totals stay
    for (const auto& [name, value] : m) CHECK_THAT(name, !Catch::Contains("#"));
  }
}

TEST_CASE("build() refuses two operators with one uid, naming both", "[dsl]") {
  ms::Pipeline p;
  std::vector<Result> out;
  p.source(ms::from_vector(events()))
      .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
      .key_by(&Ev::key)
      .dedup_by_sequence(&Ev::seq)
      .uid("usage")
      .window(ms::tumbling(1min))
      .aggregate(ms::Count{})
      .name("usage per minute")
      .uid("usage")
      .sink(ms::collect_into(out));
  ms::StatusOr<ms::Job> job = p.build();
  REQUIRE_FALSE(job.ok());
  INFO(job.status().ToString());
  CHECK(job.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(msg(job.status()), Catch::Contains("uid 'usage'"));
  CHECK_THAT(msg(job.status()), Catch::Contains("'key_by.dedup_by_sequence'"));
  CHECK_THAT(msg(job.status()), Catch::Contains("'usage per minute'"));
}

TEST_CASE("empty names and uids, and name() on key_by, are plan errors", "[dsl]") {
  std::vector<Ev> out;
  {
    ms::Pipeline p;
    p.source(ms::from_vector(events())).map([](const Ev& e) { return e; }).uid("").sink(
        ms::collect_into(out));
    ms::StatusOr<ms::Job> job = p.build();
    REQUIRE_FALSE(job.ok());
    CHECK(job.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(msg(job.status()), Catch::Contains("uid(): the uid of 'map' must not be empty"));
  }
  {
    ms::Pipeline p;
    p.source(ms::from_vector(events())).name("").sink(ms::collect_into(out));
    ms::StatusOr<ms::Job> job = p.build();
    REQUIRE_FALSE(job.ok());
    CHECK_THAT(msg(job.status()), Catch::Contains("name(): the name of 'source:"));
  }
  {
    ms::Pipeline p;
    std::vector<Result> results;
    p.source(ms::from_vector(events()))
        .with_watermarks(ms::bounded_out_of_orderness(0ms), &Ev::ts)
        .key_by(&Ev::key)
        .name("keyed")
        .window(ms::tumbling(1min))
        .aggregate(ms::Count{})
        .sink(ms::collect_into(results));
    ms::StatusOr<ms::Job> job = p.build();
    REQUIRE_FALSE(job.ok());
    CHECK_THAT(msg(job.status()), Catch::Contains("key_by() adds no step"));
  }
}
