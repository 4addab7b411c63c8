// `meterstream-bench join`: temporal_join() of the readings with the
// calibration stream, then Q1 (docs/workload-calibration.md).
#include "join.hpp"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>

#include "bench/bench_util.hpp"
#include "bench/q1_baseline.hpp"
#include "bench/q1_pipeline.hpp"
#include "meterstream/api/keyed_stream.hpp"
#include "meterstream/api/pipeline.hpp"
#include "meterstream/api/temporal_join.hpp"
#include "meterstream/api/windowed_stream.hpp"
#include "meterstream/connectors/memory/memory.hpp"

namespace meterstream {

JoinTotals run_join_baseline(const std::vector<MeterReading>& events,
                             const std::vector<Calibration>& calibration, const Q1Params& params) {
  // Per meter, its versions by validity time (the later of two equal ones).
  std::unordered_map<std::uint64_t, std::map<std::int64_t, Calibration>> versions;
  for (const Calibration& c : calibration) versions[c.meter_id][c.valid_from_ms] = c;
  JoinTotals t;
  std::vector<MeterReading> calibrated;
  calibrated.reserve(events.size());
  for (const MeterReading& r : events) {
    auto it = versions.find(r.meter_id);
    const Calibration* v = nullptr;
    if (it != versions.end()) {
      auto u = it->second.upper_bound(r.ts_ms);
      if (u != it->second.begin()) v = &std::prev(u)->second;
    }
    if (v == nullptr) {
      ++t.unmatched;
      continue;
    }
    ++t.joined;
    calibrated.push_back(calibrate(r, *v));
  }
  t.q1 = run_q1_baseline(calibrated, params);
  return t;
}

JoinTotals run_join_pipeline(const std::vector<MeterReading>& events,
                             const std::vector<Calibration>& calibration, const Q1Params& params,
                             int threads, const std::string& state, const std::string& state_dir,
                             Status* error) {
  *error = Status();
  BenchStateBackend state_backend;
  if (Status opened = state_backend.open(state, state_dir, params.state_memory_mb); !opened.ok()) {
    *error = opened;
    return {};
  }
  JobOptions options;
  options.parallelism = threads;
  options.state_backend = state_backend.backend;

  std::mutex mu;
  Q1Totals totals;
  Pipeline p;
  auto readings = p.source(from_vector(events))
                      .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                                           std::chrono::milliseconds(params.bound_ms))
                                           .with_emit_every(params.wm_every),
                                       &MeterReading::ts_ms);
  // The changelog is in validity order: a watermark after every version.
  auto calib = p.source(from_vector(calibration))
                   .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                                        std::chrono::milliseconds(0))
                                        .with_emit_every(1),
                                    &Calibration::valid_from_ms);
  auto joined = temporal_join(readings, &MeterReading::meter_id, calib, &Calibration::meter_id,
                              &calibrate, "calibrate");
  joined.joined.key_by(&MeterReading::meter_id)
      .window(tumbling(std::chrono::milliseconds(params.window_ms)))
      .aggregate(Q1Aggregate{})
      .sink(callback_sink<Q1Result>([&](const Q1Result& r) {
        std::lock_guard<std::mutex> lock(mu);
        totals.add_window(r.key, r.start, r.value.count, r.value.sum_wh, r.value.min_v,
                          r.value.max_v);
      }));
  StatusOr<Job> job = p.build(options);
  if (!job.ok()) {
    *error = job.status();
    return {};
  }
  *error = job->run();
  auto m = job->metrics();
  JoinTotals t;
  t.q1 = totals;
  t.q1.late_dropped = static_cast<std::uint64_t>(m["window_late_records"]);
  t.joined = static_cast<std::uint64_t>(m["temporal_join_joined"]);
  t.unmatched = static_cast<std::uint64_t>(m["temporal_join_unmatched"]);
  t.versions_dropped = static_cast<std::uint64_t>(m["temporal_join_versions_dropped"]);
  return t;
}

int run_join_command(const std::string& command, const std::vector<std::string>& args) {
  const std::set<std::string> allowed = {
      "seed",      "meters",   "events",   "late-ppm", "dup-ppm",        "anomaly-ppm",
      "hot-factor", "window-ms", "bound-ms", "wm-every", "threads",       "state",
      "state-dir", "calib-versions", "calib-period-ms", "calib-late-start-every"};
  auto parse = [&]() -> StatusOr<std::tuple<SmartMeterWorkload, CalibrationWorkload, Q1Params,
                                            int, std::string, std::string>> {
    MS_ASSIGN_OR_RETURN(bench::Flags flags, bench::Flags::parse(args, allowed));
    SmartMeterWorkload w;
    MS_RETURN_IF_ERROR(bench::parse_workload_flags(flags, &w));
    CalibrationWorkload c;
    c.seed = w.seed;
    c.meters = w.meters;
    MS_ASSIGN_OR_RETURN(std::uint64_t versions,
                        flags.get_uint("calib-versions", c.versions, 1, 1 << 16));
    c.versions = static_cast<std::uint32_t>(versions);
    MS_ASSIGN_OR_RETURN(c.period_ms,
                        flags.get_int("calib-period-ms", c.period_ms, 1, std::int64_t{1} << 40));
    MS_ASSIGN_OR_RETURN(c.late_start_every,
                        flags.get_uint("calib-late-start-every", c.late_start_every));
    Q1Params q;
    MS_RETURN_IF_ERROR(bench::parse_window_flags(flags, &q));
    MS_ASSIGN_OR_RETURN(std::int64_t threads, flags.get_int("threads", 1, 1, 1024));
    MS_ASSIGN_OR_RETURN(std::string state,
                        flags.get_string("state", "memory", {"memory", "rocksdb"}));
    MS_ASSIGN_OR_RETURN(std::string state_dir, flags.get_string("state-dir", ""));
    return std::make_tuple(w, c, q, static_cast<int>(threads), state, state_dir);
  };
  auto parsed = parse();
  if (!parsed.ok()) {
    std::cerr << "meterstream-bench " << command << ": " << parsed.status().message() << "\n";
    return 2;
  }
  const auto& [w, c, q, threads, state, state_dir] = *parsed;
  const std::vector<MeterReading> events = generate_smart_meter_events(w);
  const std::vector<Calibration> calib = calibration_stream(c);
  Status error;
  const auto start = std::chrono::steady_clock::now();
  const JoinTotals t = command == "join-baseline"
                           ? run_join_baseline(events, calib, q)
                           : run_join_pipeline(events, calib, q, threads, state, state_dir, &error);
  const auto stop = std::chrono::steady_clock::now();
  if (!error.ok()) {
    std::cerr << "meterstream-bench " << command << ": " << error << "\n";
    return error.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const double proc_s = std::chrono::duration<double>(stop - start).count();
  auto result = bench::q1_result_json(events.size(), t.q1, proc_s, bench::peak_rss_mb());
  result["calibration_records"] = calib.size();
  result["joined"] = t.joined;
  result["unmatched"] = t.unmatched;
  result["versions_dropped"] = t.versions_dropped;
  std::cout << bench::json_line(result);
  std::cout.flush();
  return std::cout ? 0 : 1;
}

}  // namespace meterstream
