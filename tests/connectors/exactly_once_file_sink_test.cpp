// exactly_once_file_sink(): staging at prepare_commit(), publishing at
// commit(), cleaning at recover(). Drives writers and the sink directly, as
// the runtime does at barriers and checkpoints (no pipeline).

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/temp_dir.hpp"
#include "meterstream/connectors/files/files.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace fs = std::filesystem;
using meterstream::test::TempDir;

namespace {

std::shared_ptr<ms::Sink<int>> int_sink(const fs::path& dir) {
  return ms::exactly_once_file_sink<int>(dir.string(),
                                         [](int v) { return "v" + std::to_string(v); });
}

std::unique_ptr<ms::SinkWriter<int>> writer_of(ms::Sink<int>& sink, int worker,
                                               int parallelism = 2) {
  auto w = sink.create_writer(worker, parallelism);
  REQUIRE(w.ok());
  return std::move(w).value();
}

void write(ms::SinkWriter<int>& w, std::vector<int> values) {
  ms::RecordBatch<int> batch;
  batch.values = std::move(values);
  REQUIRE(w.write(batch).ok());
}

std::string prepare(ms::SinkWriter<int>& w, std::int64_t epoch) {
  auto name = w.prepare_commit(epoch);
  REQUIRE(name.ok());
  return *name;
}

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

// What a reader of the output sees: the committed files.
std::set<std::string> committed_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const std::string& name : files_in(dir)) {
    if (fs::path(name).extension() == ".csv") names.insert(name);
  }
  return names;
}

std::string content(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void touch(const fs::path& path, const std::string& text = "x\n") {
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("staged records are invisible until commit, and commit is idempotent",
          "[checkpoint][sink]") {
  TempDir dir;
  auto sink = int_sink(dir.path);
  auto w = writer_of(*sink, 0);
  write(*w, {1, 2});
  write(*w, {3});
  const std::string name = prepare(*w, 1);
  CHECK(name == "part-0000000001-w0.csv.staged");
  CHECK(files_in(dir.path) == std::set<std::string>{name});
  CHECK(committed_in(dir.path).empty());
  CHECK(content(dir.path / name) == "v1\nv2\nv3\n");

  REQUIRE(sink->commit(ms::CheckpointCommit(), {name}).ok());
  CHECK(files_in(dir.path) == std::set<std::string>{"part-0000000001-w0.csv"});
  CHECK(content(dir.path / "part-0000000001-w0.csv") == "v1\nv2\nv3\n");

  // Again, e.g. on restore of the same checkpoint: nothing changes.
  REQUIRE(sink->commit(ms::CheckpointCommit(), {name}).ok());
  REQUIRE(sink->commit(ms::CheckpointCommit(), {"", name}).ok());
  CHECK(files_in(dir.path) == std::set<std::string>{"part-0000000001-w0.csv"});
  CHECK(content(dir.path / "part-0000000001-w0.csv") == "v1\nv2\nv3\n");
  REQUIRE(w->close().ok());
}

TEST_CASE("records after a barrier go to the file of the next prepare_commit",
          "[checkpoint][sink]") {
  TempDir dir;
  auto sink = int_sink(dir.path);
  auto w = writer_of(*sink, 1);
  write(*w, {1});
  CHECK(prepare(*w, 4) == "part-0000000004-w1.csv.staged");
  write(*w, {2, 3});
  // The epoch in the name is that of the prepare_commit that closes the file,
  // whatever came before (a failed checkpoint may skip ids).
  CHECK(prepare(*w, 6) == "part-0000000006-w1.csv.staged");
  CHECK(content(dir.path / "part-0000000004-w1.csv.staged") == "v1\n");
  CHECK(content(dir.path / "part-0000000006-w1.csv.staged") == "v2\nv3\n");
  REQUIRE(sink->commit(ms::CheckpointCommit(), {"part-0000000004-w1.csv.staged", "part-0000000006-w1.csv.staged"}).ok());
  CHECK(committed_in(dir.path) ==
        std::set<std::string>{"part-0000000004-w1.csv", "part-0000000006-w1.csv"});
  REQUIRE(w->close().ok());
}

TEST_CASE("an epoch without records stages nothing and leaves no empty file",
          "[checkpoint][sink]") {
  TempDir dir;
  auto sink = int_sink(dir.path);
  auto w = writer_of(*sink, 0);
  CHECK(prepare(*w, 1).empty());
  write(*w, {});
  CHECK(prepare(*w, 2).empty());
  CHECK(files_in(dir.path).empty());
  write(*w, {7});
  CHECK(prepare(*w, 3) == "part-0000000003-w0.csv.staged");
  CHECK(prepare(*w, 4).empty());
  CHECK(files_in(dir.path) == std::set<std::string>{"part-0000000003-w0.csv.staged"});
  REQUIRE(w->close().ok());
}

TEST_CASE("writers of different workers never share a file", "[checkpoint][sink]") {
  TempDir dir;
  auto sink = int_sink(dir.path);
  auto w0 = writer_of(*sink, 0);
  auto w1 = writer_of(*sink, 1);
  write(*w0, {1});
  write(*w1, {100});
  write(*w0, {2});
  write(*w1, {200});
  const std::string n0 = prepare(*w0, 1);
  const std::string n1 = prepare(*w1, 1);
  CHECK(n0 != n1);
  REQUIRE(sink->commit(ms::CheckpointCommit(), {n0, n1}).ok());
  CHECK(content(dir.path / "part-0000000001-w0.csv") == "v1\nv2\n");
  CHECK(content(dir.path / "part-0000000001-w1.csv") == "v100\nv200\n");
  REQUIRE(w0->close().ok());
  REQUIRE(w1->close().ok());
}

TEST_CASE("commit of a file that is neither staged nor committed is data loss naming it",
          "[checkpoint][sink]") {
  TempDir dir;
  auto sink = int_sink(dir.path);
  touch(dir.path / "part-0000000002-w0.csv.staged", "v2\n");
  const ms::Status s =
      sink->commit(ms::CheckpointCommit(), {"part-0000000001-w0.csv.staged", "part-0000000002-w0.csv.staged"});
  CHECK(s.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(s.message()), Catch::Contains("part-0000000001-w0.csv.staged"));
  // The other name is committed anyway.
  CHECK(committed_in(dir.path) == std::set<std::string>{"part-0000000002-w0.csv"});

  for (const char* bad : {"../part-0000000001-w0.csv.staged", "part-0000000001-w0.csv",
                          "notes.staged", "part-x-w0.csv.staged", "part-1-w.csv.staged"}) {
    INFO(bad);
    const ms::Status b = sink->commit(ms::CheckpointCommit(), {bad});
    CHECK(b.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(b.message()), Catch::Contains(bad));
  }
}

TEST_CASE("recover discards what the restored checkpoint does not keep, then commits it",
          "[checkpoint][sink]") {
  TempDir dir;
  const fs::path& d = dir.path;
  {
    // An earlier run: epochs 1 and 2 committed, 3 staged by both workers and
    // committed by one, 4 staged, 5 in progress when it crashed.
    auto sink = int_sink(d);
    auto w0 = writer_of(*sink, 0);
    auto w1 = writer_of(*sink, 1);
    for (std::int64_t epoch = 1; epoch <= 4; ++epoch) {
      const int v = static_cast<int>(epoch);
      write(*w0, {v});
      write(*w1, {100 + v});
      const std::string n0 = prepare(*w0, epoch);
      const std::string n1 = prepare(*w1, epoch);
      if (epoch <= 2) REQUIRE(sink->commit(ms::CheckpointCommit(), {n0, n1}).ok());
      if (epoch == 3) REQUIRE(sink->commit(ms::CheckpointCommit(), {n0}).ok());
    }
    write(*w0, {5});
    // The crash: the writers go away without staging epoch 5.
  }
  // Output of a later epoch that an earlier run had published, and files
  // that are not the sink's.
  touch(d / "part-0000000007-w3.csv");
  touch(d / "notes.txt");
  touch(d / "other.staged");
  touch(d / "readme.csv");
  CHECK(files_in(d).count("part-inprogress-w0.staged") == 1);

  auto sink = int_sink(d);
  const std::vector<std::string> keep = {"part-0000000003-w0.csv.staged",
                                         "part-0000000003-w1.csv.staged"};
  REQUIRE(sink->recover(3, keep).ok());
  const std::set<std::string> expected = {"part-0000000001-w0.csv",
                                          "part-0000000001-w1.csv",
                                          "part-0000000002-w0.csv",
                                          "part-0000000002-w1.csv",
                                          "part-0000000003-w0.csv",
                                          "part-0000000003-w1.csv",
                                          "notes.txt",
                                          "other.staged",
                                          "readme.csv"};
  CHECK(files_in(d) == expected);
  CHECK(content(d / "part-0000000003-w0.csv") == "v3\n");
  CHECK(content(d / "part-0000000003-w1.csv") == "v103\n");

  // Recovering again (a crash during recovery) gives the same folder.
  REQUIRE(int_sink(d)->recover(3, keep).ok());
  CHECK(files_in(d) == expected);

  // Restoring an older checkpoint drops the later epochs' output.
  REQUIRE(int_sink(d)->recover(1, {}).ok());
  CHECK(committed_in(d) ==
        std::set<std::string>{"part-0000000001-w0.csv", "part-0000000001-w1.csv", "readme.csv"});

  // A checkpointed job that starts without a checkpoint refuses a folder
  // with published output, and deletes nothing of it.
  const std::set<std::string> before = files_in(d);
  const ms::Status fresh = int_sink(d)->recover(0, {});
  CHECK(fresh.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(fresh.message()), Catch::Contains(d.string()) &&
                                               Catch::Contains("part-0000000001-w0.csv") &&
                                               Catch::Contains("published output"));
  CHECK(files_in(d) == before);
  // Unpublished leftovers alone (staged, in progress) are deleted.
  fs::remove(d / "part-0000000001-w0.csv");
  fs::remove(d / "part-0000000001-w1.csv");
  touch(d / "part-0000000009-w0.csv.staged");
  touch(d / "part-inprogress-w1.staged");
  REQUIRE(int_sink(d)->recover(0, {}).ok());
  CHECK(files_in(d) == std::set<std::string>{"notes.txt", "other.staged", "readme.csv"});
}

TEST_CASE("a second run into a folder with published output is refused at start, deleting "
          "nothing",
          "[checkpoint][sink]") {
  TempDir dir;
  const fs::path& d = dir.path;
  for (const bool checkpointed : {false, true}) {
    INFO((checkpointed ? "checkpointed" : "without checkpointing"));
    fs::remove_all(d / "out");
    const fs::path out = d / "out";
    const fs::path chk = d / ("chk" + std::to_string(checkpointed));
    auto run = [&]() {
      std::vector<int> values(1000);
      for (int i = 0; i < 1000; ++i) values[static_cast<std::size_t>(i)] = i;
      ms::Pipeline p;
      p.source(ms::from_vector(values)).sink(int_sink(out));
      ms::JobOptions o;
      o.parallelism = 2;
      if (checkpointed) {
        ms::LocalCheckpointStorageOptions so;
        so.directory = chk.string();
        auto storage = ms::make_local_checkpoint_storage(so);
        REQUIRE(storage.ok());
        o.checkpoint = ms::enable_checkpointing(std::chrono::milliseconds(20),
                                                std::shared_ptr<ms::CheckpointStorage>(
                                                    std::move(storage).value()));
      }
      auto job = p.build(o);
      REQUIRE(job.ok());
      ms::Status s = job->run();
      return std::make_pair(s, job->metrics()["source_records"]);
    };
    const auto first = run();
    REQUIRE(first.first.ok());
    const std::set<std::string> published = committed_in(out);
    REQUIRE_FALSE(published.empty());
    std::map<std::string, std::string> contents;
    for (const std::string& f : published) contents[f] = content(out / f);

    // The same job again, without restoring: refused before reading a record.
    const auto second = run();
    INFO(second.first.ToString());
    CHECK(second.first.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(second.first.message()),
               Catch::Contains(out.string()) && Catch::Contains("published output"));
    CHECK(second.second == 0);
    CHECK(committed_in(out) == published);
    for (const std::string& f : published) CHECK(content(out / f) == contents[f]);
  }
}

TEST_CASE("recover fails with data loss when a kept file has vanished", "[checkpoint][sink]") {
  TempDir dir;
  const ms::Status s = int_sink(dir.path)->recover(2, {"part-0000000002-w0.csv.staged"});
  CHECK(s.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(s.message()), Catch::Contains("part-0000000002-w0.csv.staged"));
}

TEST_CASE("the sink creates its folder and rejects a path that is not a folder",
          "[checkpoint][sink]") {
  TempDir dir;
  const fs::path nested = dir.path / "a" / "b" / "out";
  auto created = int_sink(nested)->create_writer(0, 1);
  REQUIRE(created.ok());
  CHECK(fs::is_directory(nested));
  REQUIRE(int_sink(dir.path / "c" / "out")->recover(0, {}).ok());
  CHECK(fs::is_directory(dir.path / "c" / "out"));

  const fs::path file = dir.path / "a-file";
  touch(file);
  auto w = int_sink(file)->create_writer(0, 1);
  REQUIRE_FALSE(w.ok());
  CHECK(w.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(w.status().message()), Catch::Contains(file.string()));
  CHECK_THAT(std::string(w.status().message()), Catch::Contains("not a folder"));
  const ms::Status r = int_sink(file)->recover(0, {});
  CHECK(r.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(r.message()), Catch::Contains(file.string()));

  // Below a file: cannot be created.
  const fs::path below = file / "out";
  auto b = int_sink(below)->create_writer(0, 1);
  REQUIRE_FALSE(b.ok());
  CHECK_THAT(std::string(b.status().message()), Catch::Contains(below.string()));

  auto empty = ms::exactly_once_file_sink<int>("", [](int v) {
                 return std::to_string(v);
               })->create_writer(0, 1);
  CHECK(empty.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("prepare_commit epochs must increase, and a failed writer keeps failing",
          "[checkpoint][sink]") {
  TempDir dir;
  auto sink = int_sink(dir.path);
  auto w = writer_of(*sink, 0);
  CHECK(w->prepare_commit(-1).status().code() == absl::StatusCode::kInvalidArgument);
  write(*w, {1});
  CHECK(prepare(*w, 2) == "part-0000000002-w0.csv.staged");
  write(*w, {2});
  // Staging epoch 2 again would replace the first file.
  const auto again = w->prepare_commit(2);
  CHECK(again.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(content(dir.path / "part-0000000002-w0.csv.staged") == "v1\n");
  ms::RecordBatch<int> batch;
  batch.values = {3};
  CHECK(w->write(batch).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(w->prepare_commit(3).status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(w->close().code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("close with records that were never staged is an error", "[checkpoint][sink]") {
  TempDir dir;
  auto sink = int_sink(dir.path);
  auto w = writer_of(*sink, 0);
  write(*w, {1});
  const ms::Status s = w->close();
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(s.message()), Catch::Contains("part-inprogress-w0.staged"));
  CHECK(committed_in(dir.path).empty());
}

namespace {

// The lines of a text file.
std::vector<std::string> lines_of(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("file_sink appends when a job restores, so a re-run of a finished job keeps its file",
          "[checkpoint][sink]") {
  TempDir dir;
  const fs::path out = dir.path / "out.txt";
  std::vector<int> values(1000);
  for (int i = 0; i < 1000; ++i) values[static_cast<std::size_t>(i)] = i;
  auto run = [&](bool restore) {
    ms::Pipeline p;
    p.source(ms::from_vector(values)).sink(ms::file_sink<int>(out.string(), [](int v) {
      return std::to_string(v);
    }));
    ms::JobOptions o;
    o.parallelism = 2;
    ms::LocalCheckpointStorageOptions so;
    so.directory = (dir.path / "chk").string();
    auto storage = ms::make_local_checkpoint_storage(so);
    REQUIRE(storage.ok());
    o.checkpoint = ms::enable_checkpointing(
        std::chrono::milliseconds(20),
        std::shared_ptr<ms::CheckpointStorage>(std::move(storage).value()));
    if (restore) o.checkpoint.restore = ms::RestoreFrom::latest();
    auto job = p.build(o);
    REQUIRE(job.ok());
    const ms::Status s = job->run();
    INFO(s.ToString());
    REQUIRE(s.ok());
    return job->metrics()["source_records"];
  };
  CHECK(run(false) == 1000);
  std::vector<std::string> first = lines_of(out);
  std::sort(first.begin(), first.end());
  CHECK(first.size() == 1000);
  // Restoring the finished job's last checkpoint: nothing left to read, and
  // the file is not truncated.
  CHECK(run(true) == 0);
  std::vector<std::string> again = lines_of(out);
  std::sort(again.begin(), again.end());
  CHECK(again == first);
  // A fresh start writes the file anew.
  CHECK(run(false) == 1000);
  CHECK(lines_of(out).size() == 1000);
}

namespace {
struct Reading {
  std::uint64_t meter_id;
  std::int64_t ts_ms;
  std::int64_t wh;
};
struct WattHours {
  using accumulator_type = std::int64_t;
  std::int64_t create() const { return 0; }
  void add(std::int64_t& a, const Reading& r) const { a += r.wh; }
  void merge(std::int64_t& a, const std::int64_t& b) const { a += b; }
  std::int64_t result(const std::int64_t& a) const { return a; }
};
}  // namespace

TEST_CASE("the files.hpp example compiles and runs", "[checkpoint][sink]") {
  using namespace std::chrono_literals;
  namespace ms = meterstream;
  TempDir dir;
  const std::string usage_dir = (dir.path / "usage").string();
  const std::vector<Reading> events = {{1, 0, 5}, {2, 10, 7}, {1, 59'999, 1}, {1, 60'000, 3}};
  ms::Pipeline p;
  auto readings = p.source(ms::from_vector(events))
                      .with_watermarks(ms::bounded_out_of_orderness(0ms), &Reading::ts_ms);
  // --- files.hpp's example, as quoted there ---
  using Usage = ms::WindowResult<std::uint64_t, std::int64_t>;  // meter, Wh per minute
  readings.key_by(&Reading::meter_id)
      .window(ms::tumbling(1min))
      .aggregate(WattHours{})
      .sink(ms::exactly_once_file_sink<Usage>(usage_dir, [](const Usage& u) {
        return std::to_string(u.key) + "," + std::to_string(u.start) + "," +
               std::to_string(u.value);
      }));
  // --- end of the example ---
  auto job = p.build(ms::JobOptions{});
  REQUIRE(job.ok());
  REQUIRE(job->run().ok());
  std::vector<std::string> lines;
  for (const std::string& f : committed_in(usage_dir)) {
    for (const std::string& l : lines_of(fs::path(usage_dir) / f)) lines.push_back(l);
  }
  std::sort(lines.begin(), lines.end());
  CHECK(lines == std::vector<std::string>{"1,0,6", "1,60000,3", "2,0,7"});
}
