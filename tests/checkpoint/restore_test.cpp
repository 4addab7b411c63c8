// Which checkpoint a job restores (RestoreFrom), what happens when
// checkpoints do not verify, retention, and the errors of checkpointed jobs
// (checkpoint/checkpoint.hpp).
//
// Most cases start from one Q1 run cut after a few checkpoints, copied into a
// fresh folder per case; the restored run's source_records tells from which
// checkpoint it resumed (the generator's position is a record index).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "bench/q1_pipeline.hpp"
#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const mt::WorkloadRow& row() { return mt::kQ1Rows[0]; }

// A Q1 run cut after `checkpoints` checkpoints: its checkpoint folder "chk"
// and output folder "out", kept in `dir`.
struct Cut {
  bool rocksdb = false;
  mt::TempDir dir{"restore-cut"};
  std::vector<std::int64_t> ids;               // completed checkpoints
  std::map<std::int64_t, std::int64_t> position;  // id -> record index it resumes at
};

ms::JobOptions q1_options(const mt::TempDir& dir, bool rocksdb, int retained) {
  ms::JobOptions o;
  o.parallelism = 1;
  o.checkpoint = ms::enable_checkpointing(25ms, mt::local_storage(dir.str("chk")));
  o.checkpoint.retained = retained;
  if (rocksdb) o.state_backend = mt::tiny_rocksdb(dir.str("state"));
  return o;
}

void cut_q1(Cut* cut, int checkpoints, int retained = 10) {
  mt::Pace pace;
  ms::JobOptions o = q1_options(cut->dir, cut->rocksdb, retained);
  ms::Job job = mt::build_job(mt::q1_pipeline(row(), pace, cut->dir.str("out")), o);
  mt::run_and_cancel(job, checkpoints, static_cast<std::int64_t>(row().events / 3));
  cut->ids = mt::completed_ids(*o.checkpoint.storage);
  for (std::int64_t id : cut->ids) {
    cut->position[id] = mt::generator_position(*o.checkpoint.storage, id);
  }
}

// A copy of a cut run's folders, to restore in one way.
struct Copy {
  mt::TempDir dir{"restore-copy"};
  explicit Copy(const Cut& cut) {
    fs::copy(cut.dir.path / "chk", dir.path / "chk", fs::copy_options::recursive);
    fs::copy(cut.dir.path / "out", dir.path / "out", fs::copy_options::recursive);
  }
  fs::path file(const std::string& storage_path) const { return dir.path / "chk" / storage_path; }
};

// Restores `copy` with `from` at full speed and runs Q1 to the end.
ms::Status restore_q1(const Copy& copy, ms::RestoreFrom from, bool rocksdb,
                      std::map<std::string, std::int64_t>* metrics = nullptr,
                      int max_parallelism = ms::kDefaultMaxParallelism) {
  mt::Pace pace;
  pace.slow->store(false);
  ms::JobOptions o = q1_options(copy.dir, rocksdb, 10);
  o.max_parallelism = max_parallelism;
  o.checkpoint.restore = from;
  ms::StatusOr<ms::Job> job = mt::q1_pipeline(row(), pace, copy.dir.str("out")).build(o);
  if (!job.ok()) return job.status();
  ms::Status s = job->run();
  if (metrics != nullptr) *metrics = job->metrics();
  return s;
}

// Restores `copy` with `from`; checks that it resumed at checkpoint
// `expected_id` and that the committed output is exact.
void check_restores(const Cut& cut, const Copy& copy, ms::RestoreFrom from,
                    std::int64_t expected_id) {
  std::map<std::string, std::int64_t> m;
  const ms::Status s = restore_q1(copy, from, cut.rocksdb, &m);
  INFO(s.ToString());
  REQUIRE(s.ok());
  CHECK(m.at("source_records") ==
        static_cast<std::int64_t>(row().events) - cut.position.at(expected_id));
  mt::check_q1_committed(copy.dir.str("out"), row().expected);
}

// Flips one byte in the middle of a local storage object (its trailer's
// checksum no longer matches).
void corrupt(const fs::path& file) {
  REQUIRE(fs::exists(file));
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  const auto size = static_cast<std::streamoff>(fs::file_size(file));
  f.seekg(size / 3);
  char c = 0;
  f.get(c);
  f.seekp(size / 3);
  f.put(static_cast<char>(c ^ 0x5a));
}

std::set<std::string> referenced_files(ms::CheckpointStorage& storage, std::int64_t id) {
  const nlohmann::json meta = mt::read_metadata(storage, id);
  return meta.at("files").get<std::set<std::string>>();
}

}  // namespace

TEST_CASE("RestoreFrom::id and RestoreFrom::path restore that checkpoint, exactly",
          "[checkpoint]") {
  Cut cut;
  cut_q1(&cut, 3);
  REQUIRE(cut.ids.size() >= 3);
  // Distinct positions: each restore below is told apart by where it resumes.
  REQUIRE(cut.position.at(cut.ids[0]) < cut.position.at(cut.ids[1]));
  const std::int64_t first = cut.ids[0];
  const std::int64_t second = cut.ids[1];
  char dir[32];
  std::snprintf(dir, sizeof dir, "chk-%010lld", static_cast<long long>(second));

  struct Case {
    const char* what;
    ms::RestoreFrom from;
    std::int64_t expected;
  };
  for (const Case& c : {Case{"by id, the oldest", ms::RestoreFrom::id(first), first},
                        Case{"by the path of its folder", ms::RestoreFrom::path(dir), second},
                        Case{"by the path of its metadata",
                             ms::RestoreFrom::path(mt::metadata_path(second)), second},
                        Case{"latest, the newest", ms::RestoreFrom::latest(), cut.ids.back()}}) {
    INFO(c.what);
    Copy copy(cut);
    check_restores(cut, copy, c.from, c.expected);
  }
}

TEST_CASE("latest without a checkpoint starts afresh and a restart after the end reads nothing",
          "[checkpoint]") {
  mt::TempDir dir("restore-final");
  mt::Pace pace;
  pace.slow->store(false);
  ms::JobOptions o = q1_options(dir, false, 10);
  o.checkpoint.restore = ms::RestoreFrom::latest();
  auto m = mt::run_to_end(mt::q1_pipeline(row(), pace, dir.str("out")), o);
  CHECK(m.at("source_records") == static_cast<std::int64_t>(row().events));
  mt::check_q1_committed(dir.str("out"), row().expected);
  // Run again (a restart after the job ended): the final checkpoint has
  // every split at its end, the output stays as it is.
  for (int threads : {1, 3}) {
    INFO("restarted at " << threads << " threads");
    o.parallelism = threads;
    m = mt::run_to_end(mt::q1_pipeline(row(), pace, dir.str("out")), o);
    CHECK(m.at("source_records") == 0);
    CHECK(m.at("sink_records") == 0);
    mt::check_q1_committed(dir.str("out"), row().expected);
  }
}

TEST_CASE("restoring a checkpoint that does not exist is kNotFound naming it", "[checkpoint]") {
  Cut cut;
  cut_q1(&cut, 2);
  Copy copy(cut);
  const std::int64_t missing = cut.ids.back() + 100;
  for (ms::RestoreFrom from :
       {ms::RestoreFrom::id(missing), ms::RestoreFrom::path(mt::metadata_path(missing))}) {
    const ms::Status s = restore_q1(copy, from, false);
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kNotFound);
    CHECK_THAT(std::string(s.message()), Catch::Contains(mt::metadata_path(missing)));
  }
  // A path that is not a checkpoint's.
  const ms::Status s = restore_q1(copy, ms::RestoreFrom::path("shared/x.sst"), false);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(s.message()), Catch::Contains("shared/x.sst"));
  // Nothing was restored or committed: the cut run's output is untouched.
  CHECK(mt::committed_lines(copy.dir.str("out")) == mt::committed_lines(cut.dir.str("out")));
}

TEST_CASE("a corrupt newest metadata makes latest fall back to the previous checkpoint",
          "[checkpoint]") {
  Cut cut;
  cut_q1(&cut, 3);
  REQUIRE(cut.ids.size() >= 2);
  const std::int64_t newest = cut.ids.back();
  const std::int64_t previous = cut.ids[cut.ids.size() - 2];
  REQUIRE(cut.position.at(previous) < cut.position.at(newest));
  Copy copy(cut);
  corrupt(copy.file(mt::metadata_path(newest)));
  check_restores(cut, copy, ms::RestoreFrom::latest(), previous);
  // Retention of the restored run removed the checkpoint that did not verify.
  auto storage = mt::local_storage(copy.dir.str("chk"));
  auto left = storage->list(mt::metadata_path(newest).substr(0, 15));
  REQUIRE(left.ok());
  CHECK(left->empty());
  // Asked for by id, the corrupt one is an error.
  Copy again(cut);
  corrupt(again.file(mt::metadata_path(newest)));
  const ms::Status s = restore_q1(again, ms::RestoreFrom::id(newest), false);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(s.message()), Catch::Contains(mt::metadata_path(newest)));
}

TEST_CASE("when no checkpoint verifies, latest is kDataLoss naming every metadata file",
          "[checkpoint]") {
  Cut cut;
  cut_q1(&cut, 2);
  Copy copy(cut);
  for (std::int64_t id : cut.ids) corrupt(copy.file(mt::metadata_path(id)));
  const ms::Status s = restore_q1(copy, ms::RestoreFrom::latest(), false);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kDataLoss);
  for (std::int64_t id : cut.ids) {
    CHECK_THAT(std::string(s.message()), Catch::Contains(mt::metadata_path(id)));
  }
}

TEST_CASE("a corrupt or missing shared SST file of the newest checkpoint makes latest fall back",
          "[checkpoint][rocksdb]") {
  Cut cut;
  cut.rocksdb = true;
  cut_q1(&cut, 3);
  REQUIRE(cut.ids.size() >= 2);
  auto storage = mt::local_storage(cut.dir.str("chk"));
  const std::int64_t newest = cut.ids.back();
  const std::set<std::string> newest_files = referenced_files(*storage, newest);
  // A shared file of the newest checkpoint that older ones do not all use;
  // the restore falls back to the newest checkpoint without it.
  std::optional<std::string> victim;
  std::int64_t fallback = 0;
  for (const std::string& f : newest_files) {
    if (f.rfind("shared/", 0) != 0) continue;
    for (auto it = cut.ids.rbegin() + 1; it != cut.ids.rend(); ++it) {
      if (referenced_files(*storage, *it).count(f) == 0) {
        victim = f;
        fallback = *it;
        break;
      }
    }
    if (victim) break;
  }
  REQUIRE(victim);
  INFO("victim " << *victim << ", falling back to " << fallback);
  REQUIRE(cut.position.at(fallback) < cut.position.at(newest));

  {
    INFO("corrupt");
    Copy copy(cut);
    corrupt(copy.file(*victim));
    check_restores(cut, copy, ms::RestoreFrom::latest(), fallback);
  }
  {
    INFO("deleted");
    Copy copy(cut);
    REQUIRE(fs::remove(copy.file(*victim)));
    check_restores(cut, copy, ms::RestoreFrom::latest(), fallback);
  }
}

namespace {

// Checks the storage after retention: `retained` checkpoints with metadata,
// no file of another checkpoint, and exactly the shared files they reference.
void check_retention(ms::CheckpointStorage& storage, std::size_t retained) {
  const std::vector<std::int64_t> ids = mt::completed_ids(storage);
  CHECK(ids.size() == retained);
  std::set<std::string> referenced;
  for (std::int64_t id : ids) {
    for (const std::string& f : referenced_files(storage, id)) referenced.insert(f);
  }
  auto chk = storage.list("chk-");
  REQUIRE(chk.ok());
  for (const std::string& p : *chk) {
    INFO(p);
    const std::int64_t id = std::stoll(p.substr(4, p.find('/') - 4));
    CHECK(std::find(ids.begin(), ids.end(), id) != ids.end());
  }
  auto shared = storage.list("shared/");
  REQUIRE(shared.ok());
  for (const std::string& p : *shared) {
    INFO(p << " is not referenced by a kept checkpoint");
    CHECK(referenced.count(p) == 1);
  }
  for (const std::string& f : referenced) {
    INFO(f << " is referenced but missing");
    CHECK(storage.exists(f).value());
  }
}

}  // namespace

TEST_CASE("retention keeps the newest checkpoints and only the shared files they use",
          "[checkpoint][rocksdb]") {
  Cut cut;
  cut.rocksdb = true;
  cut_q1(&cut, 5, /*retained=*/2);
  auto storage = mt::local_storage(cut.dir.str("chk"));
  INFO("after the cut run");
  check_retention(*storage, 2);
  auto shared = storage->list("shared/");
  REQUIRE(shared.ok());
  CHECK_FALSE(shared->empty());

  // The restored run reads which files the kept checkpoints of the cut run
  // use, and goes on applying retention to them.
  mt::Pace pace;
  pace.slow->store(false);
  ms::JobOptions o = q1_options(cut.dir, true, 2);
  o.checkpoint.storage = storage;
  o.checkpoint.restore = ms::RestoreFrom::latest();
  mt::run_to_end(mt::q1_pipeline(row(), pace, cut.dir.str("out")), o);
  INFO("after the restored run");
  check_retention(*storage, 2);
  mt::check_q1_committed(cut.dir.str("out"), row().expected);
}

// ---- errors -----------------------------------------------------------------

namespace {

// An endless split that does not implement position().
class Unpositioned final : public ms::SplitReader<std::int64_t> {
 public:
  ms::StatusOr<Poll> poll(std::vector<std::int64_t>& out, std::size_t max,
                          std::vector<std::string>&) override {
    for (std::size_t i = 0; i < max; ++i) out.push_back(next_++);
    std::this_thread::sleep_for(1ms);
    return Poll::kMore;
  }
  std::string name() const override { return "meters-on-the-wire"; }

 private:
  std::int64_t next_ = 0;
};

class UnpositionedSource final : public ms::Source<std::int64_t> {
 public:
  std::string name() const override { return "wire"; }
  ms::StatusOr<std::vector<std::unique_ptr<ms::SplitReader<std::int64_t>>>> create_splits()
      override {
    std::vector<std::unique_ptr<ms::SplitReader<std::int64_t>>> out;
    out.push_back(std::make_unique<Unpositioned>());
    return out;
  }
};

}  // namespace

TEST_CASE("a split without position() fails the job at the first checkpoint naming it",
          "[checkpoint]") {
  mt::TempDir dir("unpositioned");
  std::vector<std::int64_t> out;
  ms::Pipeline p;
  p.source(std::shared_ptr<ms::Source<std::int64_t>>(std::make_shared<UnpositionedSource>()))
      .filter([](const std::int64_t& x) { return x % 1000 == 0; })
      .sink(ms::collect_into(out));
  ms::JobOptions o;
  o.parallelism = 2;
  o.checkpoint = ms::enable_checkpointing(20ms, mt::local_storage(dir.str("chk")));
  ms::Job job = mt::build_job(p, o);
  const ms::Status s = job.run();  // the source never ends: only the error stops it
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kUnimplemented);
  CHECK_THAT(std::string(s.message()), Catch::Contains("meters-on-the-wire"));
  CHECK(job.metrics()["checkpoints_completed"] == 0);
  CHECK(mt::completed_ids(*o.checkpoint.storage).empty());
}

TEST_CASE("restoring into a pipeline with another operator layout is kFailedPrecondition",
          "[checkpoint]") {
  Cut cut;
  cut_q1(&cut, 2);
  auto storage = mt::local_storage(cut.dir.str("chk"));
  const nlohmann::json meta = mt::read_metadata(*storage, cut.ids.back());
  std::set<std::string> operators;
  for (const auto& op : meta.at("operators")) {
    operators.insert(op.at("operator").get<std::string>());
  }
  REQUIRE(!operators.empty());

  // The same query with a filter in front of the windows: the window
  // operator has another name, the checkpoint's has no home.
  mt::Pace pace;
  pace.slow->store(false);
  ms::Pipeline p;
  p.source(mt::paced_source(mt::row_events(row()), pace))
      .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(300s).with_emit_every(1000),
                       &ms::MeterReading::ts_ms)
      .filter([](const ms::MeterReading& r) { return r.wh > 0; })
      .key_by(&ms::MeterReading::meter_id)
      .window(ms::tumbling(60s))
      .aggregate(ms::Q1Aggregate{})
      .map(ms::q1_result_line)
      .sink(mt::line_sink(cut.dir.str("out")));
  ms::JobOptions o = q1_options(cut.dir, false, 10);
  o.checkpoint.restore = ms::RestoreFrom::latest();
  ms::Job job = mt::build_job(p, o);
  const ms::Status s = job.run();
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(s.message()), Catch::Contains(*operators.begin()));
}

TEST_CASE("restoring with another max_parallelism is kFailedPrecondition", "[checkpoint]") {
  Cut cut;
  cut_q1(&cut, 2);
  Copy copy(cut);
  for (ms::RestoreFrom from : {ms::RestoreFrom::latest(), ms::RestoreFrom::id(cut.ids.back())}) {
    const ms::Status s = restore_q1(copy, from, false, nullptr, 64);
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(s.message()), Catch::Contains("max_parallelism"));
    CHECK_THAT(std::string(s.message()), Catch::Contains("128"));
    CHECK_THAT(std::string(s.message()), Catch::Contains("64"));
  }
}

TEST_CASE("invalid checkpoint options fail the job at start", "[checkpoint]") {
  mt::TempDir dir("bad-options");
  auto storage = mt::local_storage(dir.str("chk"));
  struct Case {
    const char* what;
    ms::CheckpointOptions options;
    const char* expected;
  };
  std::vector<Case> cases;
  cases.push_back({"no storage", ms::enable_checkpointing(20ms, nullptr), "storage"});
  {
    ms::CheckpointOptions c;
    c.restore = ms::RestoreFrom::latest();
    cases.push_back({"a restore without storage", c, "storage"});
  }
  {
    ms::CheckpointOptions c = ms::enable_checkpointing(20ms, storage);
    c.retained = 0;
    cases.push_back({"retained 0", c, "retained"});
  }
  {
    ms::CheckpointOptions c = ms::enable_checkpointing(20ms, storage);
    c.max_consecutive_failures = 0;
    cases.push_back({"max_consecutive_failures 0", c, "max_consecutive_failures"});
  }
  cases.push_back({"a negative interval", ms::enable_checkpointing(-5ms, storage), "interval"});
  for (const Case& c : cases) {
    INFO(c.what);
    std::vector<std::int64_t> out;
    ms::Pipeline p;
    p.source(ms::from_vector(std::vector<std::int64_t>{1, 2, 3})).sink(ms::collect_into(out));
    ms::JobOptions o;
    o.parallelism = 1;
    o.checkpoint = c.options;
    ms::StatusOr<ms::Job> job = p.build(o);
    ms::Status s = job.ok() ? job->run() : job.status();
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(s.message()), Catch::Contains(c.expected));
    CHECK(out.empty());
  }
}
