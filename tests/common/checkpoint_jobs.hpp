// Helpers for job-level checkpoint tests (tests/checkpoint/, tests/e2e/):
// a slow source over pre-generated events, Q1/Q2 written through the
// exactly-once file sink, and "run until N checkpoints, then cancel".
// Results are compared exactly; time only decides where a run is cut, never
// what the committed output holds.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "bench/output_check.hpp"
#include "bench/q1_baseline.hpp"
#include "bench/q1_pipeline.hpp"
#include "common/temp_dir.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/connectors/files/files.hpp"
#include "meterstream/meterstream.hpp"
#include "meterstream/state/rocksdb_state_backend.hpp"

namespace meterstream::test {

namespace fs = std::filesystem;

inline std::shared_ptr<CheckpointStorage> local_storage(const std::string& dir) {
  LocalCheckpointStorageOptions o;
  o.directory = dir;
  auto s = make_local_checkpoint_storage(o);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::shared_ptr<CheckpointStorage>(std::move(s).value());
}

// The events of a workload row, generated once per process.
inline std::shared_ptr<const std::vector<MeterReading>> row_events(const WorkloadRow& row) {
  static std::map<std::uint64_t, std::shared_ptr<const std::vector<MeterReading>>> cache;
  auto& slot = cache[row.seed * 1000003 + row.events];
  if (!slot) {
    auto v = std::make_shared<std::vector<MeterReading>>();
    v->reserve(row.events);
    SmartMeterGenerator gen(row.workload());
    MeterReading r;
    while (gen.next(&r)) v->push_back(r);
    slot = std::move(v);
  }
  return slot;
}

// How fast a slow source reads: it sleeps `pause` every `every` records while
// `*slow` is true. The restored run clears it and reads at full speed.
struct Pace {
  std::shared_ptr<std::atomic<bool>> slow = std::make_shared<std::atomic<bool>>(true);
  std::uint64_t every = 200;
  std::chrono::microseconds pause{1000};
};

// from_generator() over `events`: f(i) = events[i]; position i survives a
// restore (f(i) does not depend on earlier calls).
template <typename T>
auto paced_source(std::shared_ptr<const std::vector<T>> events, Pace pace) {
  return from_generator([events, pace](std::uint64_t i) -> std::optional<T> {
    if (i >= events->size()) return std::nullopt;
    if (i % pace.every == 0 && i > 0 && pace.slow->load()) std::this_thread::sleep_for(pace.pause);
    return (*events)[static_cast<std::size_t>(i)];
  });
}

// The lines of a stream of strings, written exactly once into `dir`.
inline std::shared_ptr<Sink<std::string>> line_sink(const std::string& dir) {
  return exactly_once_file_sink<std::string>(dir, [](const std::string& s) { return s; });
}

// Q1 (or Q2 with dedup) of `row` over a paced source, windows written as
// check-output lines, exactly once, to `out_dir`; Q1 with key_by().salted(salts).
inline Pipeline q1_pipeline(const WorkloadRow& row, const Pace& pace, const std::string& out_dir,
                            bool dedup = false, int salts = 1) {
  const Q1Params q = row.params(dedup);
  Pipeline p;
  auto keyed = p.source(paced_source(row_events(row), pace))
                   .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                                        std::chrono::milliseconds(q.bound_ms))
                                        .with_emit_every(q.wm_every),
                                    &MeterReading::ts_ms)
                   .key_by(&MeterReading::meter_id);
  auto sink = line_sink(out_dir);
  const auto window = tumbling(std::chrono::milliseconds(q.window_ms));
  if (dedup) {
    keyed.dedup_by_sequence(&MeterReading::seq, q.dedup_horizon)
        .window(window)
        .aggregate(Q1Aggregate{})
        .map(q1_result_line)
        .sink(sink);
  } else {
    keyed.salted(salts).window(window).aggregate(Q1Aggregate{}).map(q1_result_line).sink(sink);
  }
  return p;
}

// A RocksDB state backend at `dir` with a tiny budget, so that the windows of
// the 1000 meters of the Q1 row spill (1 MiB does not make them).
inline std::shared_ptr<StateBackend> tiny_rocksdb(const std::string& dir,
                                                  std::size_t budget = std::size_t{256} << 10,
                                                  double operator_memory_ratio = 0.75) {
  RocksDBStateBackendOptions o;
  o.path = dir;
  o.memory_budget_bytes = budget;
  o.operator_memory_ratio = operator_memory_ratio;
  auto b = make_rocksdb_state_backend(o);
  INFO(b.status().ToString());
  REQUIRE(b.ok());
  return *std::move(b);
}

// What a cancelled run left.
struct CutRun {
  std::map<std::string, std::int64_t> metrics;
};

// Starts `job`, waits until it has completed `checkpoints` checkpoints and
// read at least `min_records` records, cancels it and waits. The job must
// not have finished by then (the pace is too fast otherwise).
inline CutRun run_and_cancel(Job& job, std::int64_t checkpoints, std::int64_t min_records) {
  REQUIRE(job.start().ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    auto m = job.metrics();
    if (m["checkpoints_completed"] >= checkpoints && m["source_records"] >= min_records) break;
    if (job.finished()) {
      const Status s = job.wait();
      FAIL("the job ended before it could be cancelled (status " << s.ToString()
                                                                 << "): slow the source down");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      job.cancel();
      (void)job.wait();
      FAIL("no " << checkpoints << " checkpoints and " << min_records << " records in 60 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  job.cancel();
  const Status s = job.wait();
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kCancelled);
  return CutRun{job.metrics()};
}

// Builds and runs `p` to the end; returns its metrics.
inline std::map<std::string, std::int64_t> run_to_end(const Pipeline& p, const JobOptions& o) {
  StatusOr<Job> job = p.build(o);
  INFO(job.status().ToString());
  REQUIRE(job.ok());
  const Status s = job->run();
  INFO(s.ToString());
  REQUIRE(s.ok());
  return job->metrics();
}

inline Job build_job(const Pipeline& p, const JobOptions& o) {
  StatusOr<Job> job = p.build(o);
  INFO(job.status().ToString());
  REQUIRE(job.ok());
  return *std::move(job);
}

// The committed output of an exactly-once file sink: every line of the
// folder's *.csv files, sorted.
inline std::vector<std::string> committed_lines(const std::string& dir) {
  std::vector<std::string> lines;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.size() < 4 || name[0] == '.' ||
        name.compare(name.size() - 4, 4, ".csv") != 0) {
      continue;
    }
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

// Checks the committed Q1 output of `dir` against the expected totals.
inline void check_q1_committed(const std::string& dir, const Q1Totals& expected) {
  StatusOr<bench::OutputCheck> c = bench::check_q1_output(dir);
  INFO(c.status().ToString());
  REQUIRE(c.ok());
  CHECK(c->repeated == 0);
  CHECK(c->malformed == 0);
  CHECK(c->totals.windows == expected.windows);
  CHECK(c->totals.total_count == expected.total_count);
  CHECK(c->totals.sum_wh == expected.sum_wh);
  CHECK(c->totals.digest == expected.digest);
}

// "chk-<id, 10 digits>/_metadata": where checkpoint `id`'s metadata is.
inline std::string metadata_path(std::int64_t id) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "chk-%010lld/_metadata", static_cast<long long>(id));
  return buf;
}

// A checkpoint's metadata (JSON), read and verified through the storage.
inline nlohmann::json read_metadata(CheckpointStorage& storage, std::int64_t id) {
  StatusOr<std::string> bytes = storage.get(metadata_path(id));
  INFO(metadata_path(id) << ": " << bytes.status().ToString());
  REQUIRE(bytes.ok());
  return nlohmann::json::parse(*bytes);
}

// The ids of the checkpoints that have a metadata file, ascending.
inline std::vector<std::int64_t> completed_ids(CheckpointStorage& storage) {
  StatusOr<std::vector<std::string>> paths = storage.list("chk-");
  REQUIRE(paths.ok());
  std::vector<std::int64_t> ids;
  for (const std::string& p : *paths) {
    const auto slash = p.find('/');
    if (slash == std::string::npos || p.substr(slash) != "/_metadata") continue;
    ids.push_back(std::stoll(p.substr(4, slash - 4)));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

// The position of the only split of the only source in a checkpoint's
// metadata (stored as hex), as SplitReader::position() wrote it.
inline std::string split_position(const nlohmann::json& meta) {
  REQUIRE(meta.at("sources").size() == 1);
  const std::string hex = meta.at("sources").at(0).at("position").get<std::string>();
  std::string bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

// The record index at which checkpoint `id` resumes a generator source (its
// position is the decimal index).
inline std::int64_t generator_position(CheckpointStorage& storage, std::int64_t id) {
  return std::stoll(split_position(read_metadata(storage, id)));
}

// The record index at which the newest completed checkpoint resumes a
// generator source; fails the test when no checkpoint completed.
inline std::int64_t newest_generator_position(CheckpointStorage& storage) {
  const std::vector<std::int64_t> ids = completed_ids(storage);
  REQUIRE(!ids.empty());
  return generator_position(storage, ids.back());
}

}  // namespace meterstream::test
