// JobOptions::log: what a job survives (a checkpoint that failed, one that
// does not verify on restore) reaches the hook, with its level and the id of
// the checkpoint, instead of stderr.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/checkpoint_jobs.hpp"
#include "common/forwarding_storage.hpp"
#include "common/temp_dir.hpp"
#include <catch2/catch.hpp>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

// Collects what a job logs; thread-safe, as the hook must be.
struct LogLines {
  struct Line {
    ms::LogLevel level;
    std::string message;
  };
  std::mutex mu;
  std::vector<Line> lines;

  ms::LogFunction hook() {
    return [this](ms::LogLevel level, std::string_view message) {
      std::lock_guard<std::mutex> lock(mu);
      lines.push_back({level, std::string(message)});
    };
  }
  // The lines of `level` that contain every one of `parts`.
  std::vector<std::string> find(ms::LogLevel level, const std::vector<std::string>& parts) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::string> out;
    for (const Line& l : lines) {
      bool all = l.level == level;
      for (const std::string& p : parts) all = all && l.message.find(p) != std::string::npos;
      if (all) out.push_back(l.message);
    }
    return out;
  }
  std::string all() {
    std::lock_guard<std::mutex> lock(mu);
    std::string out;
    for (const Line& l : lines) out += std::string(ms::to_string(l.level)) + ": " + l.message + "\n";
    return out;
  }
};

// A real local checkpoint folder whose first metadata write is refused, as a
// storage that is briefly down refuses it: the first checkpoint fails, the
// job goes on and the next one completes.
class MetadataRefusedOnce final : public mt::ForwardingStorage {
 public:
  explicit MetadataRefusedOnce(std::shared_ptr<ms::CheckpointStorage> inner)
      : ForwardingStorage(std::move(inner)) {}
  std::string name() const override { return "refused-once(" + inner_->name() + ")"; }
  ms::Status put(std::string_view path, std::string_view bytes) override {
    const std::string_view tail = "/_metadata";
    const bool metadata =
        path.size() >= tail.size() && path.substr(path.size() - tail.size()) == tail;
    if (metadata && !refused_.exchange(true)) {
      return absl::UnavailableError("injected: the metadata write is refused");
    }
    return inner_->put(path, bytes);
  }

 private:
  std::atomic<bool> refused_{false};
};

// An endless, slow source of numbers into an exactly-once line sink.
ms::Pipeline endless(const std::string& out) {
  ms::Pipeline p;
  p.source(ms::from_generator([](std::uint64_t i) -> std::optional<std::string> {
     if (i % 100 == 0) std::this_thread::sleep_for(1ms);
     return std::to_string(i);
   })).sink(mt::line_sink(out));
  return p;
}

}  // namespace

TEST_CASE("JobOptions::log defaults to stderr", "[checkpoint]") {
  const ms::JobOptions o;
  REQUIRE(o.log);
  CHECK(o.log.target<void (*)(ms::LogLevel, std::string_view)>() != nullptr);
  CHECK(*o.log.target<void (*)(ms::LogLevel, std::string_view)>() == &ms::log_to_stderr);
}

TEST_CASE("a failed checkpoint and a restore that skips a checkpoint reach JobOptions::log",
          "[checkpoint]") {
  mt::TempDir dir("log-hook");
  const std::string out = dir.str("out");
  auto local = mt::local_storage(dir.str("chk"));

  LogLines first;
  ms::JobOptions o;
  o.parallelism = 1;
  o.log = first.hook();
  o.checkpoint =
      ms::enable_checkpointing(20ms, std::make_shared<MetadataRefusedOnce>(local));
  {
    ms::Job job = mt::build_job(endless(out), o);
    const mt::CutRun cut = mt::run_and_cancel(job, 2, 1000);
    CHECK(cut.metrics.at("checkpoints_failed") == 1);
  }
  INFO(first.all());
  // Checkpoint 1 is the first one, and its metadata was refused.
  const auto failed =
      first.find(ms::LogLevel::kWarning, {"checkpoint 1 failed (1 in a row)", "injected"});
  CHECK(failed.size() == 1);

  // The newest checkpoint's metadata is damaged: a restore goes back to the
  // one before it and says so, then removes the damaged one.
  const std::vector<std::int64_t> ids = mt::completed_ids(*local);
  REQUIRE(ids.size() >= 2);
  const std::int64_t newest = ids.back();
  const std::int64_t older = ids[ids.size() - 2];
  REQUIRE(local->put(mt::metadata_path(newest), "this is not JSON").ok());

  LogLines second;
  o.log = second.hook();
  o.checkpoint = ms::enable_checkpointing(20ms, local);
  o.checkpoint.restore = ms::RestoreFrom::latest();
  {
    ms::Job job = mt::build_job(endless(out), o);
    REQUIRE(job.start().ok());
    job.cancel();
    (void)job.wait();
  }
  INFO(second.all());
  const auto skipped = second.find(
      ms::LogLevel::kWarning, {"checkpoint " + std::to_string(newest) + " does not verify",
                               "not JSON", "trying an older one"});
  CHECK(skipped.size() == 1);
  const auto removed = second.find(
      ms::LogLevel::kInfo, {"checkpoint " + std::to_string(newest) + " is newer than the one "
                                                                    "restored (" +
                            std::to_string(older) + ")"});
  CHECK(removed.size() == 1);
  CHECK(second.find(ms::LogLevel::kWarning, {"failed"}).empty());
}
