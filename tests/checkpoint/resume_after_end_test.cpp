// SplitReader::resumes_after_end(): a split whose end is found anew at each
// start (a bounded Kafka partition with bounded_end_at_each_start) reads on
// after a restore even when it had ended in the checkpoint, so records
// appended while the job was down are read exactly once; the default keeps
// an ended split ended (Flink's bounded semantics), and a job restored from
// its final checkpoint ends at once either way.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

// Partitions of values that tests append to; each split's end is the
// partition's size when the job starts (as a bounded Kafka partition's end
// offset). Positions are the next index, as decimal text.
struct Partitions {
  std::mutex mu;
  std::vector<std::vector<std::int64_t>> values;
  std::atomic<bool> slow{true};

  void append(std::size_t p, std::int64_t from, std::int64_t to) {
    std::lock_guard<std::mutex> lock(mu);
    for (std::int64_t v = from; v < to; ++v) values[p].push_back(v);
  }
};

class GrowingSource final : public ms::Source<std::int64_t> {
 public:
  GrowingSource(std::shared_ptr<Partitions> parts, bool resumes)
      : parts_(std::move(parts)), resumes_(resumes) {}
  std::string name() const override { return "growing"; }
  ms::StatusOr<std::vector<std::unique_ptr<ms::SplitReader<std::int64_t>>>> create_splits()
      override {
    std::vector<std::unique_ptr<ms::SplitReader<std::int64_t>>> out;
    std::lock_guard<std::mutex> lock(parts_->mu);
    for (std::size_t p = 0; p < parts_->values.size(); ++p) {
      out.push_back(std::make_unique<Split>(parts_, p, parts_->values[p].size(), resumes_));
    }
    return out;
  }

 private:
  class Split final : public ms::SplitReader<std::int64_t> {
   public:
    Split(std::shared_ptr<Partitions> parts, std::size_t p, std::size_t end, bool resumes)
        : parts_(std::move(parts)), p_(p), end_(end), resumes_(resumes) {}
    ms::StatusOr<Poll> poll(std::vector<std::int64_t>& out, std::size_t max,
                            std::vector<std::string>&) override {
      if (next_ >= end_) return Poll::kEnd;
      if (parts_->slow.load()) std::this_thread::sleep_for(1ms);
      std::lock_guard<std::mutex> lock(parts_->mu);
      const std::vector<std::int64_t>& v = parts_->values[p_];
      for (std::size_t n = 0; n < std::min<std::size_t>(max, 50) && next_ < end_; ++n) {
        out.push_back(v[next_++]);
      }
      return Poll::kMore;
    }
    std::string name() const override { return "part-" + std::to_string(p_); }
    ms::StatusOr<std::string> position() const override { return std::to_string(next_); }
    ms::Status seek(std::string_view position) override {
      next_ = std::stoull(std::string(position));
      return ms::Status();
    }
    bool resumes_after_end() const override { return resumes_; }

   private:
    std::shared_ptr<Partitions> parts_;
    std::size_t p_;
    std::size_t end_;
    bool resumes_;
    std::size_t next_ = 0;
  };

  std::shared_ptr<Partitions> parts_;
  bool resumes_;
};

ms::Pipeline lines_of(const std::shared_ptr<Partitions>& parts, bool resumes,
                      const std::string& out) {
  ms::Pipeline p;
  p.source(std::shared_ptr<ms::Source<std::int64_t>>(std::make_shared<GrowingSource>(parts, resumes)))
      .map([](std::int64_t v) { return std::to_string(v); })
      .sink(mt::line_sink(out));
  return p;
}

std::vector<std::string> as_lines(std::vector<std::int64_t> values) {
  std::vector<std::string> out;
  for (std::int64_t v : values) out.push_back(std::to_string(v));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("an ended split that resumes after its end reads what was appended while the job was down",
          "[checkpoint]") {
  const bool resumes = GENERATE(true, false);
  INFO((resumes ? "resumes_after_end" : "default: stays ended"));
  mt::TempDir dir("resume-after-end");
  auto storage = mt::local_storage(dir.str("chk"));
  const std::string out = dir.str("out");
  auto parts = std::make_shared<Partitions>();
  parts->values.resize(2);
  parts->append(0, 0, 100);             // ends early
  parts->append(1, 100000, 120000);     // still reading when the job is cut

  ms::JobOptions o;
  o.parallelism = 1;
  o.checkpoint = ms::enable_checkpointing(20ms, storage);
  {
    ms::Job job = mt::build_job(lines_of(parts, resumes, out), o);
    mt::run_and_cancel(job, 3, 2000);
  }
  const std::vector<std::int64_t> ids = mt::completed_ids(*storage);
  REQUIRE_FALSE(ids.empty());
  const nlohmann::json meta = mt::read_metadata(*storage, ids.back());
  REQUIRE(meta.at("sources").size() == 2);
  // Split 0 had ended, split 1 had not: the case under test.
  REQUIRE(meta.at("sources").at(0).at("ended").get<bool>());
  REQUIRE_FALSE(meta.at("sources").at(1).at("ended").get<bool>());

  // While the job is down, both partitions grow.
  parts->append(0, 100, 200);
  parts->append(1, 120000, 121000);
  parts->slow.store(false);
  o.checkpoint.restore = ms::RestoreFrom::latest();
  mt::run_to_end(lines_of(parts, resumes, out), o);

  std::vector<std::int64_t> expected;
  for (std::int64_t v = 0; v < (resumes ? 200 : 100); ++v) expected.push_back(v);
  for (std::int64_t v = 100000; v < 121000; ++v) expected.push_back(v);
  CHECK(mt::committed_lines(out) == as_lines(expected));

  // Restored from its final checkpoint, the job has ended: it reads nothing
  // more, whatever was appended.
  parts->append(0, 200, 300);
  parts->append(1, 121000, 122000);
  const auto m = mt::run_to_end(lines_of(parts, resumes, out), o);
  CHECK(m.at("source_records") == 0);
  CHECK(mt::committed_lines(out) == as_lines(expected));
}
