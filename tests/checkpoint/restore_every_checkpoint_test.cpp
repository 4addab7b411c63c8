// Restoring any checkpoint of a run gives the uninterrupted output exactly.
//
// Two splits at different paces (one ends early, one keeps going), so that
// checkpoints land while a split ends, while a gate aligns, and at the end of
// input; the output goes through the exactly-once file sink. Every checkpoint
// of the run is restored into a copy of the run's folders and run to the end:
// the committed output must count every record once. This is the
// deterministic counterpart of bench/crash_resume.sh for the interleavings a
// review found (a split ending after a barrier, a restored worker's first
// report, restoring an older checkpoint than the newest).
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/temp_dir.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace fs = std::filesystem;
using meterstream::test::TempDir;
using namespace std::chrono_literals;

namespace {

struct Ev {
  std::int64_t key;
  std::int64_t ts;
};

// Returns up to `per_poll` records per poll after sleeping `sleep_ms`.
class PacedSplit final : public ms::SplitReader<Ev> {
 public:
  PacedSplit(int id, std::uint64_t total, std::size_t per_poll, int sleep_ms)
      : id_(id), total_(total), per_poll_(per_poll), sleep_ms_(sleep_ms) {}
  ms::StatusOr<Poll> poll(std::vector<Ev>& out, std::size_t max,
                          std::vector<std::string>&) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    for (std::size_t i = 0; i < std::min(max, per_poll_) && pos_ < total_; ++i, ++pos_) {
      out.push_back(Ev{static_cast<std::int64_t>(pos_ % 16), 1});
    }
    return pos_ >= total_ ? Poll::kEnd : Poll::kMore;
  }
  std::string name() const override { return "paced" + std::to_string(id_); }
  ms::StatusOr<std::string> position() const override { return std::to_string(pos_); }
  ms::Status seek(std::string_view p) override {
    pos_ = std::stoull(std::string(p));
    return ms::Status();
  }

 private:
  int id_;
  std::uint64_t total_;
  std::size_t per_poll_;
  int sleep_ms_;
  std::uint64_t pos_ = 0;
};

class PacedSource final : public ms::Source<Ev> {
 public:
  std::string name() const override { return "paced"; }
  ms::StatusOr<std::vector<std::unique_ptr<ms::SplitReader<Ev>>>> create_splits() override {
    std::vector<std::unique_ptr<ms::SplitReader<Ev>>> v;
    v.push_back(std::make_unique<PacedSplit>(0, 3000, 10, 1));  // ends after ~300 polls
    v.push_back(std::make_unique<PacedSplit>(1, 20, 1, 20));    // one record per 20 ms
    return v;
  }
};

constexpr long kRecords = 3020;

struct Count {
  using accumulator_type = std::int64_t;
  std::int64_t create() const { return 0; }
  void add(std::int64_t& a, const Ev&) const { a += 1; }
  void merge(std::int64_t& a, const std::int64_t& b) const { a += b; }
  std::int64_t result(const std::int64_t& a) const { return a; }
};

ms::Status run(const std::string& base, std::chrono::milliseconds interval, ms::RestoreFrom from,
               int threads) {
  ms::Pipeline p;
  p.source(std::shared_ptr<ms::Source<Ev>>(std::make_shared<PacedSource>()))
      .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(0ms), &Ev::ts)
      .key_by(&Ev::key)
      .window(ms::tumbling(1000000ms))
      .aggregate(Count{})
      .map([](const auto& r) { return std::to_string(r.key) + "," + std::to_string(r.value); })
      .sink(ms::exactly_once_file_sink<std::string>(base + "/out",
                                                    [](const std::string& s) { return s; }));
  ms::JobOptions o;
  o.parallelism = threads;
  MS_ASSIGN_OR_RETURN(auto storage, ms::make_local_checkpoint_storage({base + "/chk"}));
  o.checkpoint = ms::enable_checkpointing(interval, std::move(storage));
  o.checkpoint.retained = 1000;
  o.checkpoint.local_dir = base + "/work";
  o.checkpoint.restore = from;
  return p.run(o);
}

// The records counted by the committed output.
long committed(const std::string& out) {
  long total = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    if (e.path().extension() != ".csv") continue;
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) total += std::stol(line.substr(line.find(',') + 1));
  }
  return total;
}

std::vector<std::int64_t> checkpoint_ids(const std::string& chk) {
  std::vector<std::int64_t> ids;
  for (const auto& e : fs::directory_iterator(chk)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("chk-", 0) == 0 && fs::exists(e.path() / "_metadata")) {
      ids.push_back(std::stoll(name.substr(4)));
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace

TEST_CASE("every checkpoint of a run restores to the uninterrupted output", "[checkpoint]") {
  TempDir dir;
  const std::string run1 = dir.str("run");
  REQUIRE(run(run1, 10ms, ms::RestoreFrom::none(), 2).ok());
  REQUIRE(committed(run1 + "/out") == kRecords);
  const std::vector<std::int64_t> ids = checkpoint_ids(run1 + "/chk");
  REQUIRE(ids.size() >= 5);  // 10 ms apart over a run of about 400 ms

  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t id = ids[i];
    const int threads = static_cast<int>(i % 3) + 1;  // rescaled two times in three
    {
      INFO("restoring checkpoint " << id << " with " << threads << " threads");
      const std::string copy = dir.str("r" + std::to_string(id) + "-" + std::to_string(threads));
      fs::create_directories(copy);
      fs::copy(run1 + "/chk", copy + "/chk", fs::copy_options::recursive);
      fs::copy(run1 + "/out", copy + "/out", fs::copy_options::recursive);
      REQUIRE(run(copy, 100000ms, ms::RestoreFrom::id(id), threads).ok());
      CHECK(committed(copy + "/out") == kRecords);
      // Newer checkpoints went with the output the sink discarded.
      CHECK(checkpoint_ids(copy + "/chk").back() > id);  // the restored run's final one
    }
  }
}

TEST_CASE("restoring an older checkpoint, then the newest, stays exact", "[checkpoint]") {
  TempDir dir;
  const std::string base = dir.str("run");
  REQUIRE(run(base, 10ms, ms::RestoreFrom::none(), 2).ok());
  const std::vector<std::int64_t> ids = checkpoint_ids(base + "/chk");
  REQUIRE(ids.size() >= 3);
  // Back to an early checkpoint: the later ones must never be restored again.
  REQUIRE(run(base, 10ms, ms::RestoreFrom::id(ids[1]), 2).ok());
  CHECK(committed(base + "/out") == kRecords);
  for (std::int64_t id : checkpoint_ids(base + "/chk")) {
    CHECK((id <= ids[1] || id > ids.back()));
  }
  REQUIRE(run(base, 10ms, ms::RestoreFrom::latest(), 3).ok());
  CHECK(committed(base + "/out") == kRecords);
}
