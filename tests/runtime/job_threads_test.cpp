// Job's methods called from several threads (runtime/job.hpp): the races
// here are found by the tsan preset (scripts/test.sh runs it).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;

TEST_CASE(
    "finished() polled from another thread while start() fails sees the "
    "failure",
    "[runtime]") {
  for (int round = 0; round < 20; ++round) {
    std::vector<std::int64_t> out;
    ms::Pipeline p;
    p.source(ms::from_vector(std::vector<std::int64_t>{1, 2, 3}, 1))
        .sink(ms::collect_into(out));
    ms::JobOptions o;
    // Checkpoints without a storage: start() fails.
    o.checkpoint = ms::enable_checkpointing(20ms, nullptr);
    ms::StatusOr<ms::Job> job = p.build(o);
    REQUIRE(job.ok());
    const ms::Job* j = &*job;
    std::atomic<bool> seen{false};
    std::thread poller([j, &seen] {
      const auto deadline = std::chrono::steady_clock::now() + 10s;
      while (!j->finished() && std::chrono::steady_clock::now() < deadline) {
      }
      seen.store(j->finished());
    });
    const ms::Status started = job->start();
    poller.join();
    CHECK(started.code() == absl::StatusCode::kInvalidArgument);
    CHECK(seen.load());
    CHECK(job->wait().code() == absl::StatusCode::kInvalidArgument);
  }
}
