// A split that goes idle first publishes the watermark of the records it has
// read (time/watermark_strategy.hpp), also when the strategy emits on the
// record count alone (with_emit_on_no_data(false)).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/count_sum.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

struct Ev {
  std::int64_t key;
  std::int64_t ts;
  std::int64_t val;
};

std::int64_t ev_key(const Ev& e) { return e.key; }
std::int64_t ev_ts(const Ev& e) { return e.ts; }

using CountSum = ms::test::CountSum<Ev>;
using Result = ms::WindowResult<std::int64_t, CountSum::Acc>;

// One split: 30 records at 0, 100, ..., 2900 ms in its first poll, then no
// data for now until `release` is set (or 10 s passed), then its end.
class PauseSource final : public ms::Source<Ev> {
 public:
  std::string name() const override { return "pause"; }
  ms::StatusOr<std::vector<std::unique_ptr<ms::SplitReader<Ev>>>> create_splits() override {
    std::vector<std::unique_ptr<ms::SplitReader<Ev>>> out;
    out.push_back(std::make_unique<Reader>(this));
    return out;
  }
  std::atomic<bool> release{false};
  std::atomic<bool> ended{false};

 private:
  class Reader final : public ms::SplitReader<Ev> {
   public:
    explicit Reader(PauseSource* s) : s_(s) {}
    ms::StatusOr<Poll> poll(std::vector<Ev>& out, std::size_t, std::vector<std::string>&) override {
      if (!sent_) {
        for (std::int64_t i = 0; i < 30; ++i) out.push_back(Ev{0, 100 * i, 1});
        sent_ = true;
        started_ = std::chrono::steady_clock::now();
        return Poll::kNoDataNow;
      }
      if (s_->release || std::chrono::steady_clock::now() - started_ > 10s) {
        s_->ended = true;
        return Poll::kEnd;
      }
      std::this_thread::sleep_for(1ms);
      return Poll::kNoDataNow;
    }
    std::string name() const override { return "pause"; }

   private:
    PauseSource* s_;
    bool sent_ = false;
    std::chrono::steady_clock::time_point started_;
  };
};

}  // namespace

TEST_CASE("a split going idle publishes the watermark of the records it has read",
          "[runtime]") {
  for (bool emit_on_no_data : {false, true}) {
    INFO("with_emit_on_no_data(" << emit_on_no_data << ")");
    auto source = std::make_shared<PauseSource>();
    std::mutex mu;
    std::vector<std::pair<std::int64_t, bool>> fired;  // window start, after the end
    ms::Pipeline p;
    p.source(std::shared_ptr<ms::Source<Ev>>(source))
        .with_watermarks(ms::bounded_out_of_orderness(0ms)
                             .with_emit_every(1000)
                             .with_emit_on_no_data(emit_on_no_data)
                             .with_idleness(20ms),
                         &ev_ts)
        .key_by(&ev_key)
        .window(ms::tumbling(1000ms))
        .aggregate(CountSum{})
        .sink(ms::callback_sink<Result>([&, source](const Result& r) {
          std::lock_guard<std::mutex> lock(mu);
          fired.emplace_back(r.start, source->ended.load());
          if (r.start == 1000) source->release = true;
        }));
    ms::JobOptions o;
    o.parallelism = 1;
    const ms::Status s = p.run(o);
    INFO(s.ToString());
    REQUIRE(s.ok());
    // The records' watermark (2899) closes [0, 1000) and [1000, 2000) while
    // the split pauses; [2000, 3000) closes at its end.
    REQUIRE(fired.size() == 3);
    CHECK(fired[0] == std::pair<std::int64_t, bool>{0, false});
    CHECK(fired[1] == std::pair<std::int64_t, bool>{1000, false});
    CHECK(fired[2] == std::pair<std::int64_t, bool>{2000, true});
  }
}
