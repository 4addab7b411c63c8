// A window operator's checkpoint records its window definition (kind, size,
// slide, offset, gap) and its aggregate's type: a restore into a window
// defined otherwise is refused, naming the operator and both definitions,
// while checkpoints from before the definition was recorded restore as they
// did (the definition is then unknown and accepted).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

#include "bench/q1_pipeline.hpp"
#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "common/workload_rows.hpp"
#include "meterstream/meterstream.hpp"
#include "meterstream/window/detail/window_snapshot.hpp"

namespace ms = meterstream;
namespace md = meterstream::detail;
namespace mt = meterstream::test;
using namespace std::chrono_literals;

namespace {

const mt::WorkloadRow& row() { return mt::kQ1Rows[0]; }

// How the restored job defines its window step (uid "usage").
enum class Window { kTumbling1min, kTumbling30s, kSliding1min30s, kSliding1min1min, kSession30s };

template <typename Keyed, typename Assigner>
void window_into(const Keyed& keyed, Assigner assigner, bool count, const std::string& out_dir) {
  if (count) {
    keyed.window(assigner)
        .aggregate(ms::Count{})
        .uid("usage")
        .map([](const ms::WindowResult<std::uint64_t, std::uint64_t>& r) {
          return std::to_string(r.key) + "," + std::to_string(r.start) + "," +
                 std::to_string(r.value);
        })
        .sink(mt::line_sink(out_dir))
        .uid("out");
  } else {
    keyed.window(assigner)
        .aggregate(ms::Q1Aggregate{})
        .uid("usage")
        .map(ms::q1_result_line)
        .sink(mt::line_sink(out_dir))
        .uid("out");
  }
}

// Q1 of row() into the exactly-once sink at `out_dir`, its window defined by
// `window`, aggregated with Q1Aggregate or (`count`) Count. Every stateful
// step has a uid, so only the window definition differs between runs.
ms::Pipeline q1(const mt::Pace& pace, const std::string& out_dir, Window window,
                bool count = false) {
  const ms::Q1Params q = row().params(false);
  ms::Pipeline p;
  auto keyed = p.source(mt::paced_source(mt::row_events(row()), pace))
                   .with_watermarks(ms::WatermarkStrategy::bounded_out_of_orderness(
                                        std::chrono::milliseconds(q.bound_ms))
                                        .with_emit_every(q.wm_every),
                                    &ms::MeterReading::ts_ms)
                   .uid("readings")
                   .key_by(&ms::MeterReading::meter_id);
  REQUIRE(q.window_ms == 60000);
  switch (window) {
    case Window::kTumbling1min: window_into(keyed, ms::tumbling(1min), count, out_dir); break;
    case Window::kTumbling30s: window_into(keyed, ms::tumbling(30s), count, out_dir); break;
    case Window::kSliding1min30s: window_into(keyed, ms::sliding(1min, 30s), count, out_dir); break;
    case Window::kSliding1min1min: window_into(keyed, ms::sliding(1min, 1min), count, out_dir); break;
    case Window::kSession30s: window_into(keyed, ms::session(30s), count, out_dir); break;
  }
  return p;
}

ms::JobOptions options(const mt::TempDir& dir) {
  ms::JobOptions o;
  o.parallelism = 2;
  o.checkpoint = ms::enable_checkpointing(25ms, mt::local_storage(dir.str("chk")));
  return o;
}

// Runs Q1 with tumbling(1min) until 2 checkpoints and cancels it.
void cut_tumbling_run(const mt::TempDir& dir) {
  mt::Pace pace;
  ms::Job job = mt::build_job(q1(pace, dir.str("out"), Window::kTumbling1min), options(dir));
  mt::run_and_cancel(job, 2, static_cast<std::int64_t>(row().events / 3));
}

// Restores the latest checkpoint into a job whose window is `window`.
ms::Status restore_into(const mt::TempDir& dir, Window window, bool count = false) {
  mt::Pace pace;
  pace.slow->store(false);
  ms::JobOptions o = options(dir);
  o.checkpoint.restore = ms::RestoreFrom::latest();
  ms::Job job = mt::build_job(q1(pace, dir.str("out"), window, count), o);
  return job.run();
}

// Checks that `s` is the refusal naming the window step, the checkpoint's
// definition and the job's.
void check_refused(const ms::Status& s, const std::string& now) {
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  const std::string message(s.message());
  CHECK_THAT(message, Catch::Contains("window(tumbling 1min).aggregate"));
  CHECK_THAT(message, Catch::Contains("written for tumbling 1min, aggregate meterstream::Q1Aggregate"));
  CHECK_THAT(message, Catch::Contains("this job defines " + now));
  CHECK_THAT(message, Catch::Contains("restore is refused"));
}

// Operator-wide bytes as the window operators wrote them: the watermark,
// then the definition (unless `legacy`), then `fields`.
std::string operator_state(std::int64_t wm, const std::optional<md::WindowDefinition>& d,
                           const std::string& fields) {
  std::string out;
  md::put_i64(&out, wm);
  if (d) md::put_window_definition(*d, &out);
  return out + fields;
}

// The time windows' own fields: next chunk number, keys of the last window.
std::string time_fields(std::uint64_t chunk, std::uint64_t keys) {
  std::string out;
  md::put_u64(&out, chunk);
  md::put_u64(&out, keys);
  return out;
}

md::WindowDefinition tumbling_def() {
  return md::window_definition<ms::Q1Aggregate>(ms::tumbling(1min));
}

// The status check_window_definition() throws for `part`, or OK.
ms::Status check(const md::RestoredCheckpoint::Operator& part, const md::WindowDefinition& now) {
  try {
    md::check_window_definition(part, "w", now);
  } catch (const md::StatusError& e) {
    return e.status;
  }
  return ms::Status();
}

}  // namespace

TEST_CASE("a restore into a window of another size, slide, kind or aggregate is refused",
          "[window][checkpoint]") {
  mt::TempDir dir("window-def-refused");
  cut_tumbling_run(dir);
  // Default names follow the job's definition; the operator is named as the
  // restoring job calls it.
  {
    const ms::Status s = restore_into(dir, Window::kTumbling30s);
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(s.message()), Catch::Contains("window(tumbling 30s).aggregate"));
    CHECK_THAT(std::string(s.message()),
               Catch::Contains("written for tumbling 1min, aggregate meterstream::Q1Aggregate, "
                               "but this job defines tumbling 30s, aggregate "
                               "meterstream::Q1Aggregate"));
  }
  {
    const ms::Status s = restore_into(dir, Window::kSliding1min30s);
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(s.message()), Catch::Contains("window(sliding 1min/30s).aggregate"));
    CHECK_THAT(std::string(s.message()),
               Catch::Contains("this job defines sliding 1min/30s, aggregate"));
  }
  {
    const ms::Status s = restore_into(dir, Window::kSession30s);
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(s.message()), Catch::Contains("window(session 30s).aggregate"));
    CHECK_THAT(std::string(s.message()), Catch::Contains("this job defines session 30s, aggregate"));
  }
  {
    const ms::Status s = restore_into(dir, Window::kTumbling1min, /*count=*/true);
    check_refused(s, "tumbling 1min, aggregate meterstream::Count");
  }
  // The refusals left the checkpoint as it was: the job as it was defined
  // restores it, and the committed output is the uninterrupted run's.
  const ms::Status s = restore_into(dir, Window::kTumbling1min);
  INFO(s.ToString());
  REQUIRE(s.ok());
  mt::check_q1_committed(dir.str("out"), row().expected);
}

TEST_CASE("sliding windows whose slide is their size restore tumbling windows exactly",
          "[window][checkpoint]") {
  mt::TempDir dir("window-def-same");
  cut_tumbling_run(dir);
  const ms::Status s = restore_into(dir, Window::kSliding1min1min);
  INFO(s.ToString());
  REQUIRE(s.ok());
  mt::check_q1_committed(dir.str("out"), row().expected);
}

TEST_CASE("operator state without a window definition is accepted as unknown", "[window]") {
  md::RestoredCheckpoint::Operator part;
  // As the time-window operator wrote it before: watermark, chunk, keys.
  part.operator_states[0] = operator_state(1234, std::nullopt, time_fields(7, 1000));
  // As the session operator did: the watermark only.
  part.operator_states[1] = operator_state(1234, std::nullopt, "");
  CHECK(check(part, tumbling_def()).ok());
  CHECK(check(part, md::window_definition<ms::Count>(ms::session(30s))).ok());
  CHECK(md::window_fields(part.operator_states[0], "w") == time_fields(7, 1000));
  CHECK(md::window_fields(part.operator_states[1], "w").empty());
  CHECK(md::restored_watermark(part, "w") == 1234);
}

TEST_CASE("a recorded window definition is compared field by field", "[window]") {
  md::RestoredCheckpoint::Operator part;
  part.operator_states[0] = operator_state(-5, tumbling_def(), time_fields(3, 10));
  part.operator_states[1] = operator_state(-5, tumbling_def(), time_fields(0, 0));
  CHECK(check(part, tumbling_def()).ok());
  CHECK(md::window_fields(part.operator_states[0], "w") == time_fields(3, 10));
  CHECK(md::restored_watermark(part, "w") == -5);

  // Tumbling windows are sliding windows whose slide is their size.
  CHECK(check(part, md::window_definition<ms::Q1Aggregate>(ms::sliding(1min, 1min))).ok());

  const auto refused = [&](const md::WindowDefinition& now, const std::string& described) {
    const ms::Status s = check(part, now);
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(s.message()),
               Catch::StartsWith("w: the checkpoint's window state was written for tumbling "
                                 "1min, aggregate meterstream::Q1Aggregate, but this job defines " +
                                 described + ";"));
  };
  refused(md::window_definition<ms::Q1Aggregate>(ms::tumbling(2min)),
          "tumbling 2min, aggregate meterstream::Q1Aggregate");
  refused(md::window_definition<ms::Q1Aggregate>(ms::tumbling(1min, 10s)),
          "tumbling 1min offset 10s, aggregate meterstream::Q1Aggregate");
  refused(md::window_definition<ms::Q1Aggregate>(ms::sliding(1min, 20s)),
          "sliding 1min/20s, aggregate meterstream::Q1Aggregate");
  refused(md::window_definition<ms::Q1Aggregate>(ms::session(1min)),
          "session 1min, aggregate meterstream::Q1Aggregate");
  refused(md::window_definition<ms::Count>(ms::tumbling(1min)),
          "tumbling 1min, aggregate meterstream::Count");
}

TEST_CASE("a session gap is part of the definition", "[window]") {
  md::RestoredCheckpoint::Operator part;
  part.operator_states[0] =
      operator_state(0, md::window_definition<ms::Count>(ms::session(30s)), "");
  CHECK(check(part, md::window_definition<ms::Count>(ms::session(30s))).ok());
  const ms::Status s = check(part, md::window_definition<ms::Count>(ms::session(31s)));
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(s.message()),
             Catch::Contains("written for session 30s, aggregate meterstream::Count, but this "
                             "job defines session 31s, aggregate meterstream::Count"));
}

TEST_CASE("reduce() records the reduced type, not its function", "[window]") {
  const auto f = [](const int& a, const int& b) { return a + b; };
  const auto g = [](const int& a, const int& b) { return a > b ? a : b; };
  using RF = ms::ReduceAggregate<int, decltype(f)>;
  using RG = ms::ReduceAggregate<int, decltype(g)>;
  const md::WindowDefinition df = md::window_definition<RF>(ms::tumbling(1s));
  CHECK(df == md::window_definition<RG>(ms::tumbling(1s)));
  CHECK(df.aggregate == "reduce<int>");
  CHECK(df != md::window_definition<ms::ReduceAggregate<long, decltype(f)>>(ms::tumbling(1s)));
}

TEST_CASE("a truncated window definition does not decode", "[window]") {
  md::RestoredCheckpoint::Operator part;
  std::string bytes = operator_state(0, tumbling_def(), "");
  bytes.resize(bytes.size() - 3);  // into the aggregate's name
  part.operator_states[0] = bytes;
  const ms::Status s = check(part, tumbling_def());
  CHECK(s.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(s.message()), Catch::Contains("w: its operator state"));
}
