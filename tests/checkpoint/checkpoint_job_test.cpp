// Jobs that are cancelled after a few checkpoints and restored: the
// committed output of the two runs together must equal the uninterrupted
// run's exactly (checkpoint/checkpoint.hpp).
//
// Each first run reads a paced source (it sleeps every few hundred records,
// so that it lasts about a second), is cancelled once some checkpoints have
// completed, and the same pipeline is built again with RestoreFrom::latest()
// and run to the end at full speed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/checkpoint_jobs.hpp"
#include "common/count_sum.hpp"
#include "common/temp_dir.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

// --seed 1 --meters 1000 --events 200000
const mt::WorkloadRow& q1_row() { return mt::kQ1Rows[0]; }
const mt::WorkloadRow& q2_row() { return mt::kQ2Rows[0]; }

struct Q1Case {
  int cut_threads;
  int restore_threads;
  bool rocksdb;
  bool dedup = false;
};

// Q1 (or Q2) cut after two checkpoints and restored; the committed output
// must give the workload row's totals.
void cut_and_restore_q1(const Q1Case& c) {
  INFO("threads " << c.cut_threads << " -> " << c.restore_threads << ", "
                  << (c.rocksdb ? "rocksdb" : "memory") << (c.dedup ? ", Q2" : ", Q1"));
  const mt::WorkloadRow& row = c.dedup ? q2_row() : q1_row();
  mt::TempDir dir("q1-restore");
  auto storage = mt::local_storage(dir.str("chk"));
  const std::string out = dir.str("out");

  mt::Pace pace;
  ms::JobOptions o;
  o.parallelism = c.cut_threads;
  o.checkpoint = ms::enable_checkpointing(30ms, storage);
  if (c.rocksdb) o.state_backend = mt::tiny_rocksdb(dir.str("state"));
  {
    ms::Job job = mt::build_job(mt::q1_pipeline(row, pace, out, c.dedup), o);
    const mt::CutRun cut =
        mt::run_and_cancel(job, 2, static_cast<std::int64_t>(row.events / 3));
    CHECK(cut.metrics.at("checkpoints_failed") == 0);
    if (c.rocksdb) CHECK(cut.metrics.at("window_spilled_bytes") > 0);
  }
  if (c.rocksdb) {
    // Spilled windows went through RocksDB snapshots: SST files shared by
    // the checkpoints.
    auto shared = storage->list("shared/");
    REQUIRE(shared.ok());
    CHECK_FALSE(shared->empty());
  }
  const std::int64_t resume_at = mt::newest_generator_position(*storage);
  CHECK(resume_at > 0);
  CHECK(resume_at < static_cast<std::int64_t>(row.events));

  pace.slow->store(false);
  o.parallelism = c.restore_threads;
  o.checkpoint.restore = ms::RestoreFrom::latest();
  o.state_backend = nullptr;  // closes the cut run's RocksDB before it is opened again
  if (c.rocksdb) o.state_backend = mt::tiny_rocksdb(dir.str("state"));
  const auto m = mt::run_to_end(mt::q1_pipeline(row, pace, out, c.dedup), o);
  // The restored run read from the checkpoint's position on, not from 0.
  CHECK(m.at("source_records") == static_cast<std::int64_t>(row.events) - resume_at);
  mt::check_q1_committed(out, row.expected);
}

}  // namespace

TEST_CASE("Q1 cut after two checkpoints and restored at 1 thread commits the exact totals",
          "[checkpoint]") {
  cut_and_restore_q1({1, 1, false});
}

TEST_CASE("Q1 restored with another parallelism commits the exact totals", "[checkpoint]") {
  cut_and_restore_q1({1, 3, false});
  cut_and_restore_q1({3, 2, false});
}

TEST_CASE("Q1 on RocksDB with spilled windows restores exactly, rescaled too",
          "[checkpoint][rocksdb]") {
  cut_and_restore_q1({1, 1, true});
  cut_and_restore_q1({1, 3, true});
  cut_and_restore_q1({3, 2, true});
}

namespace {

// A pipeline over a paced source, writing lines exactly once into a folder.
using MakePipeline = std::function<ms::Pipeline(const mt::Pace&, const std::string& out_dir)>;

struct Backend {
  bool rocksdb = false;
  std::size_t budget = std::size_t{256} << 10;
  // The operator_memory_ratio of the restored run (the cut run has 0.75).
  double restore_ratio = 0.75;
};

std::shared_ptr<ms::StateBackend> make_backend(const Backend& b, const std::string& dir,
                                               bool restoring = false) {
  return b.rocksdb ? mt::tiny_rocksdb(dir, b.budget, restoring ? b.restore_ratio : 0.75)
                   : nullptr;
}

// The committed lines of an uninterrupted run of `make` (checkpointed too,
// so that the sink commits the same way).
std::vector<std::string> uninterrupted(const MakePipeline& make, int threads, const Backend& b,
                                       std::map<std::string, std::int64_t>* metrics = nullptr) {
  mt::TempDir dir("uninterrupted");
  mt::Pace pace;
  pace.slow->store(false);
  ms::JobOptions o;
  o.parallelism = threads;
  o.checkpoint = ms::enable_checkpointing(30ms, mt::local_storage(dir.str("chk")));
  o.state_backend = make_backend(b, dir.str("state"));
  auto m = mt::run_to_end(make(pace, dir.str("out")), o);
  if (metrics != nullptr) *metrics = m;
  return mt::committed_lines(dir.str("out"));
}

// Runs `make` paced, cancels it after two checkpoints and a third of
// `records`, restores the newest checkpoint with `restore_threads` and runs
// it to the end. Returns the committed lines.
std::vector<std::string> cut_and_restore(const MakePipeline& make, std::int64_t records,
                                         int cut_threads, int restore_threads, const Backend& b,
                                         std::map<std::string, std::int64_t>* restored_metrics =
                                             nullptr) {
  INFO("threads " << cut_threads << " -> " << restore_threads << ", "
                  << (b.rocksdb ? "rocksdb" : "memory"));
  mt::TempDir dir("cut");
  auto storage = mt::local_storage(dir.str("chk"));
  mt::Pace pace;
  ms::JobOptions o;
  o.parallelism = cut_threads;
  o.checkpoint = ms::enable_checkpointing(30ms, storage);
  o.state_backend = make_backend(b, dir.str("state"));
  {
    ms::Job job = mt::build_job(make(pace, dir.str("out")), o);
    const mt::CutRun cut = mt::run_and_cancel(job, 2, records / 3);
    CHECK(cut.metrics.at("checkpoints_failed") == 0);
  }
  pace.slow->store(false);
  o.parallelism = restore_threads;
  o.checkpoint.restore = ms::RestoreFrom::latest();
  o.state_backend = nullptr;  // closes the cut run's RocksDB before it is opened again
  o.state_backend = make_backend(b, dir.str("state"), /*restoring=*/true);
  auto m = mt::run_to_end(make(pace, dir.str("out")), o);
  CHECK(m.at("source_records") < records);  // resumed, not started over
  if (restored_metrics != nullptr) *restored_metrics = m;
  return mt::committed_lines(dir.str("out"));
}

std::string reading_line(const ms::MeterReading& r) {
  return std::to_string(r.meter_id) + "," + std::to_string(r.seq) + "," + std::to_string(r.ts_ms);
}

}  // namespace

TEST_CASE("Q2 (dedup_by_sequence, then Q1) cut and restored commits the exact totals",
          "[checkpoint][dedup][rocksdb]") {
  for (const Q1Case& c : {Q1Case{1, 1, false, true}, Q1Case{2, 3, true, true}}) {
    cut_and_restore_q1(c);
  }
}

TEST_CASE("dedup_by_sequence restored drops exactly the duplicates of the uninterrupted run",
          "[checkpoint][dedup][rocksdb]") {
  const mt::WorkloadRow& row = q2_row();
  const MakePipeline make = [&](const mt::Pace& pace, const std::string& out) {
    ms::Pipeline p;
    p.source(mt::paced_source(mt::row_events(row), pace))
        .key_by(&ms::MeterReading::meter_id)
        .dedup_by_sequence(&ms::MeterReading::seq)
        .input()
        .map(reading_line)
        .sink(mt::line_sink(out));
    return p;
  };
  const auto records = static_cast<std::int64_t>(row.events);
  std::map<std::string, std::int64_t> m;
  const std::vector<std::string> expected = uninterrupted(make, 2, {}, &m);
  // WORKLOAD.md: 1003 of the row's events are retries.
  CHECK(m["dedup_dropped"] == static_cast<std::int64_t>(row.expected.duplicates_dropped));
  REQUIRE(expected.size() == row.events - row.expected.duplicates_dropped);
  CHECK(std::adjacent_find(expected.begin(), expected.end()) == expected.end());
  CHECK(cut_and_restore(make, records, 1, 1, {}) == expected);
  CHECK(cut_and_restore(make, records, 2, 3, {true}) == expected);
  // State spilled to RocksDB, restored into a job with a far smaller share
  // of the budget for operators (whose share rounds to nothing): the restore
  // reads the spilled state back and the duplicates are still dropped.
  CHECK(cut_and_restore(make, records, 2, 2, {true, std::size_t{256} << 10, 1e-9}) == expected);
}

TEST_CASE("dedup_by with a time to live restored keeps exactly the uninterrupted run's records",
          "[checkpoint][dedup][rocksdb]") {
  const mt::WorkloadRow& row = q2_row();
  const MakePipeline make = [&](const mt::Pace& pace, const std::string& out) {
    ms::Pipeline p;
    p.source(mt::paced_source(mt::row_events(row), pace))
        .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(5min).with_emit_every(500),
                         &ms::MeterReading::ts_ms)
        // An id per (meter, sequence number), remembered for 10 minutes of
        // event time: retries that come later are kept again.
        .dedup_by([](const ms::MeterReading& r) { return (r.meter_id << 32) | r.seq; }, 10min)
        .map(reading_line)
        .sink(mt::line_sink(out));
    return p;
  };
  const auto records = static_cast<std::int64_t>(row.events);
  std::map<std::string, std::int64_t> m;
  const std::vector<std::string> expected = uninterrupted(make, 2, {}, &m);
  CHECK(m["dedup_dropped"] > 0);
  CHECK(expected.size() == row.events - static_cast<std::uint64_t>(m["dedup_dropped"]));
  CHECK(cut_and_restore(make, records, 1, 1, {}) == expected);
  // 16 MiB: with less the ids' write-back cache thrashes RocksDB for seconds.
  CHECK(cut_and_restore(make, records, 3, 2, {true, std::size_t{16} << 20}) == expected);
}

namespace {

struct Rec {
  std::int64_t key;
  std::int64_t ts;
  std::int64_t val;
};

// `n` records of 20 keys, 10 ms apart, in bursts of 1000 records separated by
// 5 s of silence; every 97th is 1.5 s late, every 1009th 20 s late.
std::shared_ptr<const std::vector<Rec>> bursty_records(int n) {
  auto v = std::make_shared<std::vector<Rec>>();
  for (int i = 0; i < n; ++i) {
    std::int64_t ts = 1000000 + std::int64_t{i} * 10 + std::int64_t{i / 1000} * 5000;
    if (i % 97 == 0) ts -= 1500;
    if (i % 1009 == 0) ts -= 20000;
    v->push_back(Rec{i % 20, ts, (i * 7919) % 1000});
  }
  return v;
}

// Per key: a running total (ValueState), counts per second (MapState) emitted
// by an event-time timer at the end of each second, and one processing-time
// timer per key that fires only once `*open` (until then it re-arms itself),
// so that in a cut run it is always pending at a checkpoint.
struct PerSecond {
  std::shared_ptr<std::atomic<bool>> open;

  void process_element(const Rec& r, ms::ProcessContext<std::int64_t, std::string>& ctx) {
    auto total = ctx.value_state<std::int64_t>("total");
    const std::int64_t n = total.value().value_or(0) + 1;
    total.update(n);
    if (n == 1) ctx.register_processing_time_timer(ctx.current_processing_time());
    auto per_second = ctx.map_state<std::int64_t, std::int64_t>("per-second");
    const std::int64_t second = ms::window_start(r.ts, 1000);
    per_second.put(second, per_second.get(second).value_or(0) + 1);
    ctx.register_event_time_timer(second + 999);
  }

  void on_timer(ms::Timestamp t, ms::TimeDomain domain,
                ms::ProcessContext<std::int64_t, std::string>& ctx) {
    const std::string key = std::to_string(ctx.key());
    if (domain == ms::TimeDomain::kProcessingTime) {
      if (!open->load()) {
        ctx.register_processing_time_timer(ctx.current_processing_time() + 20);
        return;
      }
      auto fired = ctx.value_state<std::int64_t>("processing-timer-fired");
      const std::int64_t n = fired.value().value_or(0) + 1;
      fired.update(n);
      ctx.emit("p," + key + "," + std::to_string(n));
      return;
    }
    auto per_second = ctx.map_state<std::int64_t, std::int64_t>("per-second");
    const std::int64_t second = t - 999;
    const std::optional<std::int64_t> count = per_second.get(second);
    if (!count) return;
    per_second.remove(second);
    const std::int64_t total = ctx.value_state<std::int64_t>("total").value().value_or(0);
    ctx.emit("e," + key + "," + std::to_string(second) + "," + std::to_string(*count) + "," +
             std::to_string(total));
  }
};

ms::SourceStream<Rec> paced_rec_source(ms::Pipeline& p, const mt::Pace& pace, int n) {
  static std::map<int, std::shared_ptr<const std::vector<Rec>>> cache;
  auto& records = cache[n];
  if (!records) records = bursty_records(n);
  return p.source(mt::paced_source(records, pace));
}

}  // namespace

TEST_CASE("keyed process state and pending event-time and processing-time timers survive a restore",
          "[checkpoint][rocksdb]") {
  constexpr int kRecords = 100000;
  // Closed while a run is to be cut: its processing-time timers stay pending.
  auto open = std::make_shared<std::atomic<bool>>(true);
  const MakePipeline make = [&](const mt::Pace& pace, const std::string& out) {
    ms::Pipeline p;
    paced_rec_source(p, pace, kRecords)
        .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(2s).with_emit_every(100),
                         &Rec::ts)
        .key_by(&Rec::key)
        .process<std::string>(PerSecond{open})
        .sink(mt::line_sink(out));
    return p;
  };
  const std::vector<std::string> expected = uninterrupted(make, 2, {});
  // Each key's processing-time timer fired once; the per-second counts add
  // up to every record.
  std::int64_t fired = 0, counted = 0;
  for (const std::string& line : expected) {
    if (line.rfind("p,", 0) == 0) {
      ++fired;
      CHECK(line.substr(line.size() - 2) == ",1");
    } else {
      const auto c = line.find(',', line.find(',', 2) + 1);
      counted += std::stoll(line.substr(c + 1, line.find(',', c + 1) - c - 1));
    }
  }
  CHECK(fired == 20);
  CHECK(counted == kRecords);

  for (auto [cut, restore, rocksdb] : {std::tuple{1, 1, false}, std::tuple{2, 3, true}}) {
    open->store(false);
    const MakePipeline gated = [&](const mt::Pace& pace, const std::string& out) {
      // The restored run builds its pipeline after the cut: open it then.
      if (!pace.slow->load()) open->store(true);
      return make(pace, out);
    };
    CHECK(cut_and_restore(gated, kRecords, cut, restore, {rocksdb}) == expected);
  }
}

TEST_CASE("session windows restored fire exactly the uninterrupted run's sessions",
          "[checkpoint][window]") {
  constexpr int kRecords = 100000;
  const MakePipeline make = [&](const mt::Pace& pace, const std::string& out) {
    ms::Pipeline p;
    paced_rec_source(p, pace, kRecords)
        .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(2s).with_emit_every(100),
                         &Rec::ts)
        .key_by(&Rec::key)
        .window(ms::session(1s))
        .allowed_lateness(3s)
        .aggregate(mt::CountSum<Rec>{})
        .map([](const ms::WindowResult<std::int64_t, mt::CountSum<Rec>::Acc>& r) {
          return std::to_string(r.key) + "," + std::to_string(r.start) + "," +
                 std::to_string(r.end) + "," + std::to_string(r.value.count) + "," +
                 std::to_string(r.value.sum);
        })
        .sink(mt::line_sink(out));
    return p;
  };
  const std::vector<std::string> expected = uninterrupted(make, 1, {});
  // 100 bursts of 20 keys at least; late records re-fire some.
  CHECK(expected.size() >= 2000);
  CHECK(cut_and_restore(make, kRecords, 1, 1, {}) == expected);
  CHECK(cut_and_restore(make, kRecords, 1, 2, {}) == expected);
}

TEST_CASE("a file source restores at its byte position", "[checkpoint][files]") {
  constexpr int kLines = 60000;
  mt::TempDir dir("file-source");
  const std::string input = dir.str("input.txt");
  std::vector<std::string> lines;
  {
    std::ofstream f(input);
    for (int i = 0; i < kLines; ++i) {
      lines.push_back(std::to_string(i) + ",meter-" + std::to_string(i % 97) + "," +
                      std::string(static_cast<std::size_t>(i % 13), 'x'));
      f << lines.back() << '\n';
    }
  }
  std::sort(lines.begin(), lines.end());
  const MakePipeline make = [&](const mt::Pace& pace, const std::string& out) {
    ms::Pipeline p;
    // The parser paces the read: lines are parsed in order, one at a time.
    auto parse = [pace](std::string_view line) -> std::optional<std::string> {
      const std::int64_t i = std::stoll(std::string(line.substr(0, line.find(','))));
      if (i % 100 == 0 && pace.slow->load()) std::this_thread::sleep_for(pace.pause);
      return std::string(line);
    };
    p.source(ms::file_source(input, parse))
        .rebalance()
        .map([](const std::string& s) { return s; })
        .sink(mt::line_sink(out));
    return p;
  };
  for (auto [cut, restore] : {std::pair{1, 1}, std::pair{2, 1}}) {
    INFO("threads " << cut << " -> " << restore);
    mt::TempDir run("file-source-run");
    auto storage = mt::local_storage(run.str("chk"));
    mt::Pace pace;
    ms::JobOptions o;
    o.parallelism = cut;
    o.checkpoint = ms::enable_checkpointing(30ms, storage);
    {
      ms::Job job = mt::build_job(make(pace, run.str("out")), o);
      mt::run_and_cancel(job, 2, kLines / 3);
    }
    // The newest checkpoint's position: "<byte offset>:<line number>".
    const std::vector<std::int64_t> ids = mt::completed_ids(*storage);
    REQUIRE(!ids.empty());
    const std::string position = mt::split_position(mt::read_metadata(*storage, ids.back()));
    const std::int64_t offset = std::stoll(position.substr(0, position.find(':')));
    const std::int64_t line = std::stoll(position.substr(position.find(':') + 1));
    INFO("position " << position);
    REQUIRE(line > 0);
    REQUIRE(line < kLines);
    // The offset is where line `line` + 1 starts in the file.
    std::int64_t expected_offset = 0;
    {
      std::ifstream f(input);
      std::string l;
      for (std::int64_t k = 0; k < line && std::getline(f, l); ++k) {
        expected_offset += static_cast<std::int64_t>(l.size()) + 1;
      }
    }
    CHECK(offset == expected_offset);

    pace.slow->store(false);
    o.parallelism = restore;
    o.checkpoint.restore = ms::RestoreFrom::latest();
    const auto m = mt::run_to_end(make(pace, run.str("out")), o);
    CHECK(m.at("source_records") == kLines - line);
    CHECK(mt::committed_lines(run.str("out")) == lines);
  }
}

TEST_CASE("a shared file of the checkpoints always holds the same RocksDB file",
          "[checkpoint][rocksdb]") {
  // Shared files are named by their content's SHA-256. RocksDB names its SST
  // files by number and never reuses a number, so one shared path stands
  // for one file name in every checkpoint of a run. Many small checkpoints
  // of small SST files: RocksDB compacts and deletes files all along, and
  // the file system hands their inodes to new files of the same size.
  constexpr int kRecords = 100000;
  mt::TempDir dir("shared-names");
  auto storage = mt::local_storage(dir.str("chk"));
  auto open = std::make_shared<std::atomic<bool>>(true);
  mt::Pace pace;
  // About 1.5 s of input: at least 10 checkpoints even on a loaded machine
  // (a checkpoint flushes RocksDB; at 1 ms a pause, 9 was seen).
  pace.pause = std::chrono::microseconds(3000);
  ms::Pipeline p;
  paced_rec_source(p, pace, kRecords)
      .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(2s).with_emit_every(100),
                       &Rec::ts)
      .key_by(&Rec::key)
      .process<std::string>(PerSecond{open})
      .sink(mt::line_sink(dir.str("out")));
  ms::JobOptions o;
  o.parallelism = 2;
  o.checkpoint = ms::enable_checkpointing(5ms, storage);
  o.checkpoint.retained = 1000000;
  o.state_backend = mt::tiny_rocksdb(dir.str("state"));
  const auto m = mt::run_to_end(p, o);
  CHECK(m.at("checkpoints_completed") >= 10);

  std::map<std::string, std::set<std::string>> names;  // shared path -> file names
  for (std::int64_t id : mt::completed_ids(*storage)) {
    const nlohmann::json meta = mt::read_metadata(*storage, id);
    for (const auto& op : meta.at("operators")) {
      for (const auto& store : op.at("stores")) {
        for (const auto& f : store.at("files")) {
          if (f.at("shared").get<bool>()) {
            names[f.at("path").get<std::string>()].insert(f.at("name").get<std::string>());
          }
        }
      }
    }
  }
  CHECK(names.size() >= 10);
  for (const auto& [path, files] : names) {
    INFO(path << " holds " << files.size() << " different files");
    CHECK(files.size() == 1);
  }
}
