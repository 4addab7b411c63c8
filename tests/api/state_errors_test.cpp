// State errors in user functions (state/state.hpp, "Errors"): nothing is
// thrown into user code; the job fails with the error, naming the operator.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;

namespace {

struct Ev {
  std::int64_t key;
  std::int64_t value;
};

// Uses the name "s" as a value state, then as a map state (another kind: an
// error), catching anything thrown at it.
struct Misuse {
  std::atomic<int>* caught;
  std::atomic<int>* calls;
  void process_element(const Ev& e, ms::ProcessContext<std::int64_t, std::int64_t>& ctx) {
    ++*calls;
    try {
      auto v = ctx.value_state<std::int64_t>("s");
      v.update(e.value);
      auto m = ctx.map_state<std::int64_t, std::int64_t>("s");
      m.put(1, e.value);
      ctx.emit(e.value);
    } catch (...) {
      ++*caught;
    }
  }
};

}  // namespace

TEST_CASE("a state error in a process function fails the job naming the operator, no throw",
          "[dsl]") {
  std::vector<Ev> in;
  for (std::int64_t i = 0; i < 100; ++i) in.push_back({i % 7, i});
  std::atomic<int> caught{0};
  std::atomic<int> calls{0};
  std::vector<std::int64_t> out;
  ms::Pipeline p;
  p.source(ms::from_vector(in, 1))
      .key_by(&Ev::key)
      .process<std::int64_t>(Misuse{&caught, &calls})
      .sink(ms::collect_into(out));
  // One worker: with two, each may make its first call before the job stops.
  ms::JobOptions o;
  o.parallelism = 1;
  ms::StatusOr<ms::Job> job = p.build(o);
  REQUIRE(job.ok());
  const ms::Status s = job->run();
  INFO(s.ToString());
  CHECK(caught.load() == 0);  // no exception went through user code
  CHECK_FALSE(s.ok());
  CHECK(s.code() != absl::StatusCode::kInternal);  // the state layer's own code
  CHECK(std::string(s.message()).find("process") != std::string::npos);
  CHECK(std::string(s.message()).find("'s'") != std::string::npos);
  CHECK(calls.load() == 1);  // the job stopped at the first failing call
}
