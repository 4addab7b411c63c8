// The commit-point seam (runtime/operator.hpp): a sink whose commit() is the
// checkpoint's commit point (SinkBase::commit_point(), what the transactional
// Kafka sink is) decides which checkpoint a job restores; sources hear of
// every committed checkpoint (SourceBase::checkpoint_committed()).
//
// The commit-point sink here keeps its commit record in a file of its own,
// the way the Kafka sink keeps it in the consumer group's offset metadata.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/checkpoint_jobs.hpp"
#include "common/forwarding_storage.hpp"
#include "common/temp_dir.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

// What the sinks and the source were told, in order.
struct Log {
  std::mutex mu;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(std::move(e));
  }
  std::vector<std::string> take() {
    std::lock_guard<std::mutex> lock(mu);
    return events;
  }
};

// Records every commit and recover; as a commit point, stores the id of the
// last committed checkpoint in `ledger` (a file).
class LedgerSink final : public ms::Sink<std::int64_t> {
 public:
  LedgerSink(std::string tag, std::string ledger, std::shared_ptr<Log> log,
             bool fail_final = false)
      : tag_(std::move(tag)), ledger_(std::move(ledger)), log_(std::move(log)),
        fail_final_(fail_final) {}

  std::string name() const override { return "ledger:" + tag_; }
  bool commit_point() const override { return !ledger_.empty(); }

  ms::StatusOr<std::int64_t> committed_checkpoint() override {
    std::ifstream in(ledger_);
    std::int64_t id = 0;
    if (in) in >> id;
    return id;
  }
  ms::Status recover(std::int64_t restored, const std::vector<std::string>&) override {
    log_->add(tag_ + " recover " + std::to_string(restored));
    return ms::Status();
  }
  ms::Status commit(const ms::CheckpointCommit& c, const std::vector<std::string>& prepared) override {
    log_->add(tag_ + " commit " + std::to_string(c.id) + " prepared " +
              std::to_string(prepared.size()) + (c.transactional ? " transactional" : ""));
    // As a Kafka transaction whose commit fails (e.g. aborted by the broker):
    // nothing is recorded, the output of the checkpoint is not published.
    if (fail_final_ && c.final) return absl::UnavailableError(tag_ + ": the final commit failed");
    if (!ledger_.empty()) std::ofstream(ledger_, std::ios::trunc) << c.id;
    return ms::Status();
  }
  ms::StatusOr<std::unique_ptr<ms::SinkWriter<std::int64_t>>> create_writer(int, int) override {
    return std::unique_ptr<ms::SinkWriter<std::int64_t>>(
        std::make_unique<Writer>(ledger_.empty(), barriers));
  }
  // The last checkpoint barrier a writer passed (prepare_commit()).
  std::shared_ptr<std::atomic<std::int64_t>> barriers =
      std::make_shared<std::atomic<std::int64_t>>(0);

 private:
  // As a commit point it stages nothing (as a Kafka writer whose records
  // went into the open transaction): it must still be committed every time.
  // Otherwise it stages a token for each epoch that had records.
  class Writer final : public ms::SinkWriter<std::int64_t> {
   public:
    Writer(bool stages, std::shared_ptr<std::atomic<std::int64_t>> barriers)
        : stages_(stages), barriers_(std::move(barriers)) {}
    ms::Status write(const ms::RecordBatch<std::int64_t>& b) override {
      wrote_ |= b.size() > 0;
      return ms::Status();
    }
    ms::Status close() override { return ms::Status(); }
    ms::StatusOr<std::string> prepare_commit(std::int64_t epoch) override {
      barriers_->store(epoch);
      const bool staged = stages_ && wrote_;
      wrote_ = false;
      return staged ? "epoch-" + std::to_string(epoch) : std::string();
    }

   private:
    bool stages_;
    std::shared_ptr<std::atomic<std::int64_t>> barriers_;
    bool wrote_ = false;
  };
  std::string tag_, ledger_;
  std::shared_ptr<Log> log_;
  bool fail_final_;
};

// A paced generator source that logs checkpoint_committed() calls.
class LoggingSource final : public ms::Source<std::int64_t> {
 public:
  LoggingSource(std::shared_ptr<Log> log, mt::Pace pace, std::int64_t n)
      : log_(std::move(log)),
        inner_(ms::from_generator([pace, n](std::uint64_t i) -> std::optional<std::int64_t> {
          if (static_cast<std::int64_t>(i) >= n) return std::nullopt;
          if (i % pace.every == 0 && i > 0 && pace.slow->load()) std::this_thread::sleep_for(pace.pause);
          return static_cast<std::int64_t>(i);
        })) {}
  std::string name() const override { return "logging"; }
  ms::StatusOr<std::vector<std::unique_ptr<ms::SplitReader<std::int64_t>>>> create_splits()
      override {
    return inner_->create_splits();
  }
  ms::Status checkpoint_committed(const ms::CheckpointCommit& c) override {
    std::string e = "source committed " + std::to_string(c.id) + " splits " +
                    std::to_string(c.splits.size());
    for (const auto& s : c.splits) e += " " + s.source;
    if (c.transactional) e += " transactional";
    log_->add(e);
    return ms::Status();
  }

 private:
  std::shared_ptr<Log> log_;
  std::shared_ptr<ms::Source<std::int64_t>> inner_;
};

struct Setup {
  mt::TempDir dir{"commit-point"};
  std::shared_ptr<ms::CheckpointStorage> storage = mt::local_storage(dir.str("chk"));
  std::shared_ptr<Log> log = std::make_shared<Log>();
  std::string ledger = dir.str("ledger");

  // A job with the commit-point sink, another sink, and the logging source.
  // fail_final: "kafka" or "other", the sink whose commit of the final
  // checkpoint fails.
  ms::StatusOr<ms::Job> job(const mt::Pace& pace, ms::RestoreFrom from, bool two_points = false,
                            const std::string& fail_final = "") {
    ms::Pipeline p;
    // The failing "other" sink gets the longer input: it has output in the
    // final checkpoint (a sink with nothing staged is not committed).
    const std::int64_t n_other = fail_final == "other" ? 25000 : 15000;
    p.source(std::shared_ptr<ms::Source<std::int64_t>>(std::make_shared<LoggingSource>(log, pace, 20000)))
        .map([](std::int64_t v) { return v; })
        .sink(std::make_shared<LedgerSink>("kafka", ledger, log, fail_final == "kafka"));
    p.source(std::shared_ptr<ms::Source<std::int64_t>>(std::make_shared<LoggingSource>(log, pace, n_other)))
        .map([](std::int64_t v) { return v * 2; })
        .sink(std::make_shared<LedgerSink>("other", two_points ? ledger + "2" : "", log,
                                           fail_final == "other"));
    ms::JobOptions o;
    o.parallelism = 1;
    o.checkpoint = ms::enable_checkpointing(20ms, storage);
    o.checkpoint.restore = from;
    o.checkpoint.retained = 100;
    return p.build(o);
  }
};

std::vector<std::string> with_prefix(const std::vector<std::string>& all, const std::string& p) {
  std::vector<std::string> out;
  for (const auto& e : all) {
    if (e.rfind(p, 0) == 0) out.push_back(e);
  }
  return out;
}

}  // namespace

TEST_CASE("a commit-point sink commits every checkpoint first, and sources hear of it after",
          "[checkpoint]") {
  Setup s;
  mt::Pace pace;
  pace.every = 100;
  auto job = s.job(pace, ms::RestoreFrom::none());
  REQUIRE(job.ok());
  REQUIRE(job->run().ok());
  const std::int64_t completed = job->metrics()["checkpoints_completed"];
  REQUIRE(completed >= 3);

  // Checkpoint by checkpoint: the commit point (with nothing prepared), then
  // the other sink (when it staged something), then each source with its
  // own split only.
  std::vector<std::string> commits;
  for (const auto& e : s.log->take()) {
    if (e.find("recover") == std::string::npos) commits.push_back(e);
  }
  // Ids increase; one may be skipped (a checkpoint triggered as the input
  // ended is not completed: the final checkpoint takes the next id).
  std::size_t at = 0;
  std::int64_t other_commits = 0, seen = 0, last_id = 0;
  while (at < commits.size()) {
    const std::string& head = commits[at];
    REQUIRE(head.rfind("kafka commit ", 0) == 0);
    const std::int64_t id = std::stoll(head.substr(std::string("kafka commit ").size()));
    INFO("checkpoint " << id);
    CHECK(id > last_id);
    last_id = id;
    ++seen;
    const std::string n = std::to_string(id);
    CHECK(commits[at++] == "kafka commit " + n + " prepared 0");
    if (at < commits.size() && commits[at].rfind("other commit " + n + " prepared ", 0) == 0) {
      CHECK(commits[at++] == "other commit " + n + " prepared 1 transactional");
      ++other_commits;
    }
    REQUIRE(at + 1 < commits.size());
    CHECK(commits[at++] == "source committed " + n + " splits 1 source:logging#0 transactional");
    CHECK(commits[at++] == "source committed " + n + " splits 1 source:logging#3 transactional");
  }
  CHECK(seen == completed);
  CHECK(other_commits >= 2);
  std::ifstream ledger(s.ledger);
  std::int64_t last = 0;
  ledger >> last;
  CHECK(last == last_id);
}

TEST_CASE("restore takes the checkpoint the commit-point sink committed, not the newest metadata",
          "[checkpoint]") {
  Setup s;
  mt::Pace pace;
  pace.every = 100;
  {
    auto job = s.job(pace, ms::RestoreFrom::none());
    REQUIRE(job.ok());
    REQUIRE(job->run().ok());
    REQUIRE(job->metrics()["checkpoints_completed"] >= 3);
  }
  // As if the process died after writing checkpoint 3's metadata and before
  // its commit point committed: only checkpoint 2 is committed.
  std::ofstream(s.ledger, std::ios::trunc) << 2;
  REQUIRE(s.storage->get("chk-0000000003/_metadata").ok());

  SECTION("latest() restores the committed one and removes the newer metadata") {
    auto job = s.job(pace, ms::RestoreFrom::latest());
    REQUIRE(job.ok());
    pace.slow->store(false);
    REQUIRE(job->run().ok());
    const auto recovers = with_prefix(s.log->take(), "kafka recover");
    REQUIRE(recovers.size() == 2);
    CHECK(recovers[1] == "kafka recover 2");
  }
  SECTION("id() of another checkpoint is refused") {
    auto job = s.job(pace, ms::RestoreFrom::id(3));
    REQUIRE(job.ok());
    const ms::Status st = job->run();
    CHECK(st.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(st.message()), Catch::Contains("committed the output of checkpoint 2"));
  }
  SECTION("a committed checkpoint whose metadata is gone is data loss, not an older one") {
    REQUIRE(s.storage->remove("chk-0000000002/_metadata").ok());
    auto job = s.job(pace, ms::RestoreFrom::latest());
    REQUIRE(job.ok());
    const ms::Status st = job->run();
    CHECK(st.code() == absl::StatusCode::kDataLoss);
    CHECK_THAT(std::string(st.message()), Catch::Contains("committed checkpoint 2"));
  }
}

TEST_CASE("a job with two commit-point sinks is refused", "[checkpoint]") {
  Setup s;
  auto job = s.job(mt::Pace{}, ms::RestoreFrom::none(), /*two_points=*/true);
  REQUIRE(job.ok());
  const ms::Status st = job->run();
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(st.message()), Catch::Contains("one transactional (commit-point) sink"));
}

// The end of input commits the rest of the output in the final checkpoint:
// when a sink cannot commit it, that output is not published, and the job
// must say so (it once returned OK, and a supervisor saw a finished job).
TEST_CASE("a failed commit of the final checkpoint fails the job", "[checkpoint]") {
  const std::string which = GENERATE(as<std::string>{}, "kafka", "other");
  INFO("failing sink: " << which);
  Setup s;
  auto job = s.job(mt::Pace{}, ms::RestoreFrom::none(), false, which);
  REQUIRE(job.ok());
  const ms::Status st = job->run();
  CHECK(st.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(st.message()), Catch::Contains(which + ": the final commit failed"));
  CHECK_THAT(std::string(st.message()), Catch::Contains("final checkpoint"));
  if (which == "kafka") {
    // The commit point did not record the final checkpoint: a restart
    // restores the one before and writes the rest again.
    std::ifstream ledger(s.ledger);
    std::int64_t last = 0;
    ledger >> last;
    CHECK(last < job->metrics()["checkpoints_completed"]);
  }
}

namespace {

// Local storage whose put of `blocked` (a metadata file) waits until
// `release()` says so (at most 10 s), then fails: a storage outage that hits
// the checkpoint in flight as the input ends.
class BlockingStorage final : public mt::ForwardingStorage {
 public:
  BlockingStorage(std::shared_ptr<ms::CheckpointStorage> inner, std::string blocked,
                  std::function<bool()> release)
      : ForwardingStorage(std::move(inner)), blocked_(std::move(blocked)),
        release_(std::move(release)) {}
  ms::Status put(std::string_view path, std::string_view bytes) override {
    if (path != blocked_) return inner_->put(path, bytes);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!release_() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    return absl::UnavailableError("storage: writing " + blocked_ + " failed");
  }

 private:
  std::string blocked_;
  std::function<bool()> release_;
};

}  // namespace

// Checkpoint 1 is in flight when the input ends, and it fails (its metadata
// cannot be written) only after every worker finished: with a commit-point
// sink the job must fail and take no final checkpoint, whose commit would
// publish the output after checkpoint 1's barrier without checkpoint 1's own
// (the job once returned OK, having lost that output).
TEST_CASE("a checkpoint failing as the input ends fails the job and takes no final checkpoint",
          "[checkpoint]") {
  Setup s;
  std::atomic<ms::Job*> job_ptr{nullptr};
  // Released 200 ms after the workers finished: by then Job::wait() has read
  // the job's errors (none yet) and waits for the coordinator in finish().
  std::optional<std::chrono::steady_clock::time_point> finished_at;
  auto storage = std::make_shared<BlockingStorage>(
      s.storage, "chk-0000000001/_metadata", [&] {
        ms::Job* j = job_ptr.load();
        if (j == nullptr || !j->finished()) return false;
        const auto now = std::chrono::steady_clock::now();
        if (!finished_at) finished_at = now;
        return now - *finished_at >= 200ms;
      });
  auto sink = std::make_shared<LedgerSink>("kafka", s.ledger, s.log);
  // Records until the sink's writer has passed checkpoint 1's barrier.
  std::shared_ptr<std::atomic<std::int64_t>> barriers = sink->barriers;
  ms::Pipeline p;
  p.source(ms::from_generator([barriers](std::uint64_t i) -> std::optional<std::int64_t> {
     if (barriers->load() >= 1) return std::nullopt;
     std::this_thread::sleep_for(100us);
     return static_cast<std::int64_t>(i);
   }))
      .sink(sink);
  ms::JobOptions o;
  o.parallelism = 1;
  o.checkpoint = ms::enable_checkpointing(20ms, storage);
  o.checkpoint.retained = 100;
  auto job = p.build(o);
  REQUIRE(job.ok());
  job_ptr = &*job;
  REQUIRE(job->start().ok());
  const ms::Status st = job->wait();
  INFO(st.ToString());
  CHECK(st.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(st.message()), Catch::Contains("checkpoint 1 failed"));
  // No final checkpoint committed anything.
  CHECK(with_prefix(s.log->take(), "kafka commit").empty());
  std::ifstream ledger(s.ledger);
  std::int64_t last = 0;
  if (ledger) ledger >> last;
  CHECK(last == 0);
}
