// readme_tour: the code of README.md's DSL tour, as a program that CI builds
// and runs. README.md quotes the regions between "// [readme:NAME]" and
// "// [readme:end]" verbatim, and the test docs/readme_code_is_compiled
// (tests/CMakeLists.txt, cmake/check_readme_snippets.cmake) fails when a
// ```cpp block of README.md is not such a quote.
//
//   smart_meter_source --with_watermarks--+--> key_by(meter_id) --> tumbling(1
//   min) + Usage
//                                         |                            | | |
//                                         results        late() | v v |
//                                         collect_into    file_sink late.csv
//                                         |
//                                         +--> filter(voltage < 200 V) -->
//                                         callback_sink (count)
//
// Then the same windows again, checkpointed into a RocksDB backend and
// written exactly once to OUT/*.csv.
//
// Usage: readme_tour [DIR]   (default: a temporary folder, removed at the end)
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <stdlib.h>

#include <meterstream/meterstream.hpp>

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

// [readme:usage]
// Energy per meter and window, in Flink's AggregateFunction shape.
struct Usage {
  using accumulator_type = std::uint64_t;
  std::uint64_t create() const { return 0; }
  void add(std::uint64_t& wh, const ms::MeterReading& r) const { wh += r.wh; }
  void merge(std::uint64_t& wh, const std::uint64_t& more) const { wh += more; }
  std::uint64_t result(const std::uint64_t& wh) const { return wh; }
};

std::string to_csv(const ms::MeterReading& r) {
  return std::to_string(r.meter_id) + "," + std::to_string(r.ts_ms) + "," +
         std::to_string(r.wh);
}
// [readme:end]

std::string to_csv_line(
    const ms::WindowResult<std::uint64_t, std::uint64_t>& w) {
  return std::to_string(w.key) + "," + std::to_string(w.start) + "," +
         std::to_string(w.value);
}

// The tour: one stream, two consumers.
ms::Status tour(const std::string& dir,
                const ms::SmartMeterWorkload& workload) {
  // [readme:tour]
  ms::Pipeline p;
  auto readings = p.source(ms::smart_meter_source(workload))
                      .with_watermarks(ms::bounded_out_of_orderness(5min),
                                       &ms::MeterReading::ts_ms);
  auto per_minute =
      readings.key_by(&ms::MeterReading::meter_id)
          .window(ms::tumbling(1min))
          .aggregate(Usage{});  // Stream<ms::WindowResult<uint64_t, uint64_t>>
  per_minute.late().sink(
      ms::file_sink<ms::MeterReading>(dir + "/late.csv", to_csv));
  std::vector<ms::WindowResult<std::uint64_t, std::uint64_t>> results;
  per_minute.sink(ms::collect_into(results));
  // The same readings feed a second consumer: voltage sags, as they arrive.
  std::atomic<std::uint64_t> sags{0};
  readings.filter([](const ms::MeterReading& r) { return r.voltage_dv < 2000; })
      .sink(ms::callback_sink<ms::MeterReading>(
          [&sags](const ms::MeterReading&) { ++sags; }));
  MS_ASSIGN_OR_RETURN(ms::Job job,
                      p.build(ms::JobOptions{}));  // plan errors come back here
  MS_RETURN_IF_ERROR(job.run());
  // [readme:end]
  std::uint64_t wh = 0;
  for (const auto& w : results) wh += w.value;
  std::printf("tour: %zu windows, %llu Wh, %llu voltage sags\n", results.size(),
              static_cast<unsigned long long>(wh),
              static_cast<unsigned long long>(sags.load()));
  return ms::Status();
}

// Names and uids: the labels of errors and metrics, the identity of state.
ms::Status names(const ms::SmartMeterWorkload& workload) {
  ms::Pipeline p;
  auto readings = p.source(ms::smart_meter_source(workload))
                      .with_watermarks(ms::bounded_out_of_orderness(5min),
                                       &ms::MeterReading::ts_ms);
  std::vector<ms::WindowResult<std::uint64_t, std::uint64_t>> results;
  // [readme:names]
  readings.key_by(&ms::MeterReading::meter_id)
      .window(ms::tumbling(1min))
      .aggregate(Usage{})
      .name("usage per minute")  // errors: "usage per minute: user code threw: ..."
      .uid("usage-v1")           // checkpointed state is found under "usage-v1"
      .sink(ms::collect_into(results))
      .uid("usage-out");
  // [readme:end]
  MS_ASSIGN_OR_RETURN(ms::Job job, p.build(ms::JobOptions{}));
  MS_RETURN_IF_ERROR(job.run());
  const std::int64_t named =
      job.metrics()["window_results{operator=\"usage per minute\"}"];
  if (named != static_cast<std::int64_t>(results.size())) {
    return absl::InternalError("the per-step metric does not count the windows");
  }
  std::printf("names: %lld windows counted under \"usage per minute\"\n",
              static_cast<long long>(named));
  return ms::Status();
}

// The tour's windows again, on RocksDB, checkpointed, written exactly once.
ms::Status durable(const std::string& dir,
                   const ms::SmartMeterWorkload& workload) {
  ms::Pipeline p;
  auto per_minute = p.source(ms::smart_meter_source(workload))
                        .with_watermarks(ms::bounded_out_of_orderness(5min),
                                         &ms::MeterReading::ts_ms)
                        .key_by(&ms::MeterReading::meter_id)
                        .window(ms::tumbling(1min))
                        .aggregate(Usage{});
  // [readme:rocksdb]
  ms::RocksDBStateBackendOptions rocks;
  rocks.path = dir + "/state";  // one RocksDB per process, locked while open
  rocks.memory_budget_bytes =
      64 << 20;  // RocksDB cache + memtables + operators' tables
  ms::JobOptions options;
  MS_ASSIGN_OR_RETURN(options.state_backend,
                      ms::make_rocksdb_state_backend(rocks));
  // [readme:end]
  // [readme:checkpoints]
  MS_ASSIGN_OR_RETURN(std::shared_ptr<ms::CheckpointStorage> storage,
                      ms::make_checkpoint_storage(dir + "/chk"));
  options.checkpoint = ms::enable_checkpointing(1s, storage);
  options.checkpoint.restore =
      ms::RestoreFrom::latest();  // resume from the newest, if any
  per_minute.map(to_csv_line)
      .sink(ms::exactly_once_file_sink<std::string>(
          dir + "/out", [](const std::string& l) { return l; }));
  // [readme:end]
  MS_ASSIGN_OR_RETURN(ms::Job job, p.build(options));
  MS_RETURN_IF_ERROR(job.run());
  std::printf("durable: %lld checkpoints, windows in %s/out/*.csv\n",
              static_cast<long long>(job.metrics()["checkpoints_completed"]),
              dir.c_str());
  return ms::Status();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  bool temporary = false;
  if (argc > 2) {
    std::fprintf(stderr, "usage: readme_tour [DIR]\n");
    return 2;
  }
  if (argc == 2) {
    dir = argv[1];
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::fprintf(stderr, "readme_tour: cannot create %s: %s\n", dir.c_str(),
                   ec.message().c_str());
      return 1;
    }
  } else {
    std::error_code ec;
    std::string tmpl =
        (std::filesystem::temp_directory_path(ec) / "readme_tour-XXXXXX")
            .string();
    if (ec || mkdtemp(tmpl.data()) == nullptr) {
      std::fprintf(stderr, "readme_tour: cannot create a temporary folder\n");
      return 1;
    }
    dir = tmpl;
    temporary = true;
  }
  ms::SmartMeterWorkload workload;  // WORKLOAD.md's generator, a smaller run
  workload.meters = 1000;
  workload.events = 200000;
  if (ms::Status s = tour(dir, workload); !s.ok()) {
    std::fprintf(stderr, "readme_tour: %s\n", s.ToString().c_str());
    return 1;
  }
  if (ms::Status s = names(workload); !s.ok()) {
    std::fprintf(stderr, "readme_tour: %s\n", s.ToString().c_str());
    return 1;
  }
  const ms::Status s = durable(dir, workload);
  if (!s.ok()) std::fprintf(stderr, "readme_tour: %s\n", s.ToString().c_str());
  if (temporary) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return s.ok() ? 0 : 1;
}
