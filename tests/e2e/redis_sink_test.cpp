// The Redis sink against a real redis-server: the shared one of
// scripts/test.sh (MS_REDIS_HOST, MS_REDIS_PORT) and servers the tests start,
// kill and restart themselves. What the sink wrote is read back through a
// hiredis connection of the test's own (tests/common/redis_server.hpp).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/q1.hpp"
#include "common/checkpoint_jobs.hpp"
#include "common/redis_server.hpp"
#include "common/temp_dir.hpp"
#include <catch2/catch.hpp>
#include <sys/wait.h>

#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
using namespace std::chrono_literals;
using ms::test::OwnRedisServer;
using ms::test::RedisAddress;
using ms::test::RedisClient;

namespace {

ms::RedisSinkOptions options_for(const RedisAddress& a) {
  ms::RedisSinkOptions o;
  o.host = a.host;
  o.port = a.port;
  return o;
}

// An update of one hash field, as a test writes it.
struct Update {
  std::string key;
  std::string field;
  std::string value;
  std::int64_t version = 0;
};

ms::Status run_updates(const ms::RedisSinkOptions& o,
                       std::vector<Update> updates, int parallelism = 1) {
  ms::Pipeline p;
  p.source(ms::from_vector(std::move(updates)))
      .sink(ms::redis_sink<Update>(o, [](const Update& u) {
        return ms::RedisUpsert{u.key, u.field, u.value, u.version};
      }));
  ms::JobOptions jo;
  jo.parallelism = parallelism;
  auto job = p.build(jo);
  if (!job.ok()) return job.status();
  return job->run();
}

// A source over `events` that stops at index `at` (returning "no data now",
// so that checkpoints go on) until the test opens the gate. Its position is
// the index of the next record.
struct Gate {
  std::size_t at = static_cast<std::size_t>(-1);
  std::atomic<bool> open{false};
  std::atomic<bool> reached{false};
};

class GatedSplit final : public ms::SplitReader<ms::MeterReading> {
 public:
  GatedSplit(std::shared_ptr<const std::vector<ms::MeterReading>> events,
             std::shared_ptr<Gate> gate)
      : events_(std::move(events)), gate_(std::move(gate)) {}

  ms::StatusOr<Poll> poll(std::vector<ms::MeterReading>& out, std::size_t max,
                          std::vector<std::string>&) override {
    if (next_ >= events_->size()) return Poll::kEnd;
    const bool closed = !gate_->open.load();
    if (closed && next_ >= gate_->at) {
      gate_->reached = true;
      std::this_thread::sleep_for(1ms);
      return Poll::kNoDataNow;
    }
    std::size_t end =
        std::min(events_->size(), next_ + std::min<std::size_t>(max, 256));
    if (closed && next_ < gate_->at) end = std::min(end, gate_->at);
    out.insert(out.end(), events_->begin() + static_cast<std::ptrdiff_t>(next_),
               events_->begin() + static_cast<std::ptrdiff_t>(end));
    next_ = end;
    return Poll::kMore;
  }
  std::string name() const override { return "gated"; }
  ms::StatusOr<std::string> position() const override {
    return std::to_string(next_);
  }
  ms::Status seek(std::string_view position) override {
    next_ = std::stoull(std::string(position));
    return ms::Status();
  }

 private:
  std::shared_ptr<const std::vector<ms::MeterReading>> events_;
  std::shared_ptr<Gate> gate_;
  std::size_t next_ = 0;
};

class GatedSource final : public ms::Source<ms::MeterReading> {
 public:
  GatedSource(std::shared_ptr<const std::vector<ms::MeterReading>> events,
              std::shared_ptr<Gate> gate)
      : events_(std::move(events)), gate_(std::move(gate)) {}
  std::string name() const override { return "gated"; }
  ms::StatusOr<std::vector<std::unique_ptr<ms::SplitReader<ms::MeterReading>>>>
  create_splits() override {
    std::vector<std::unique_ptr<ms::SplitReader<ms::MeterReading>>> v;
    v.push_back(std::make_unique<GatedSplit>(events_, gate_));
    return v;
  }

 private:
  std::shared_ptr<const std::vector<ms::MeterReading>> events_;
  std::shared_ptr<Gate> gate_;
};

// 20000 readings of 200 meters, with late readings (some within the
// lateness, so windows are updated) and retries.
std::shared_ptr<const std::vector<ms::MeterReading>> meter_events() {
  static const auto events = [] {
    ms::SmartMeterWorkload w;
    w.meters = 200;
    w.events = 20000;
    w.hot_factor = 10;
    w.late_ppm = 20000;
    auto v = std::make_shared<std::vector<ms::MeterReading>>();
    ms::SmartMeterGenerator gen(w);
    ms::MeterReading r;
    while (gen.next(&r)) v->push_back(r);
    return std::shared_ptr<const std::vector<ms::MeterReading>>(std::move(v));
  }();
  return events;
}

bool is_sag(const ms::MeterReading& r) { return r.voltage_dv < 2200; }

// What a run of the meter pipeline does besides writing to Redis.
struct MeterRun {
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  // Set by the test: the job fails (once) at the `fail_after`-th reading
  // after it.
  std::shared_ptr<std::atomic<bool>> fail_next =
      std::make_shared<std::atomic<bool>>(false);
  std::int64_t fail_after = 1;
  std::shared_ptr<std::atomic<std::int64_t>> seen =
      std::make_shared<std::atomic<std::int64_t>>(0);
  std::shared_ptr<std::atomic<bool>> failed =
      std::make_shared<std::atomic<bool>>(false);
};

// Per meter and minute (allowed lateness 10 min, so late readings update
// their window), Q1's line as an upsert of hash "<prefix>q1:<meter>", field
// "<window start>", versioned by the window's count; every voltage sag an
// alert "<prefix>alert:<meter>:<seq>" into stream "<prefix>alerts" (a
// retried reading has the same id: one alert).
ms::Pipeline meter_pipeline(const ms::RedisSinkOptions& o,
                            const std::string& prefix, const MeterRun& run) {
  ms::Pipeline p;
  auto readings =
      p.source(std::shared_ptr<ms::Source<ms::MeterReading>>(
                   std::make_shared<GatedSource>(meter_events(), run.gate)))
          .uid("readings")
          .with_watermarks(
              ms::bounded_out_of_orderness(5min).with_emit_on_no_data(false),
              &ms::MeterReading::ts_ms)
          .map([run](const ms::MeterReading& r) {
            if (run.fail_next->load() && ++*run.seen >= run.fail_after &&
                !run.failed->exchange(true)) {
              throw std::runtime_error("injected failure");
            }
            return r;
          });
  readings.filter(is_sag)
      .sink(ms::redis_sink<ms::MeterReading>(
          o,
          [prefix](const ms::MeterReading& r) {
            ms::RedisAlert a;
            a.key = prefix + "alert:" + std::to_string(r.meter_id) + ":" +
                    std::to_string(r.seq);
            a.stream = prefix + "alerts";
            a.fields = {{"meter", std::to_string(r.meter_id)},
                        {"seq", std::to_string(r.seq)},
                        {"voltage_dv", std::to_string(r.voltage_dv)}};
            return a;
          }))
      .uid("alerts");
  readings.key_by(&ms::MeterReading::meter_id)
      .window(ms::tumbling(1min))
      .allowed_lateness(10min)
      .aggregate(ms::Q1Aggregate{})
      .uid("windows")
      .sink(ms::redis_sink<ms::Q1Result>(
          o,
          [prefix](const ms::Q1Result& r) {
            return ms::RedisUpsert{prefix + "q1:" + std::to_string(r.key),
                                   std::to_string(r.start),
                                   ms::q1_result_line(r),
                                   static_cast<std::int64_t>(r.value.count)};
          }))
      .uid("aggregates");
  return p;
}

// Runs the meter pipeline uninterrupted; returns the job's metrics.
std::map<std::string, std::int64_t> run_reference(const ms::RedisSinkOptions& o,
                                                  const std::string& prefix) {
  MeterRun run;
  run.gate->open = true;
  auto job = meter_pipeline(o, prefix, run).build(ms::JobOptions());
  REQUIRE(job.ok());
  const ms::Status s = job->run();
  INFO(s.ToString());
  REQUIRE(s.ok());
  return job->metrics();
}

// Checks a meter run's content independently of any other run: every alert
// once, and the final windows' counts adding up to the readings that were
// not too late.
void check_meter_content(const std::map<std::string, std::string>& dump,
                         std::int64_t late_records) {
  std::set<std::pair<std::uint64_t, std::uint32_t>> sags;
  for (const auto& r : *meter_events()) {
    if (is_sag(r)) sags.insert({r.meter_id, r.seq});
  }
  REQUIRE(!sags.empty());
  std::size_t alert_keys = 0;
  std::uint64_t counted = 0;
  std::size_t windows = 0;
  for (const auto& [key, content] : dump) {
    if (key.rfind("alert:", 0) == 0) ++alert_keys;
    if (key.rfind("q1:", 0) == 0 && key.find(":version") == std::string::npos) {
      std::istringstream lines(content);
      std::string line;
      std::getline(lines, line);  // the type
      while (std::getline(lines, line)) {
        // "<start>=<meter>,<start>,<count>,..."
        const std::string value = line.substr(line.find('=') + 1);
        std::istringstream fields(value);
        std::string meter, start, count;
        std::getline(fields, meter, ',');
        std::getline(fields, start, ',');
        std::getline(fields, count, ',');
        counted += std::stoull(count);
        ++windows;
      }
    }
  }
  CHECK(alert_keys == sags.size());
  REQUIRE(dump.count("alerts") == 1);
  const std::string& stream = dump.at("alerts");
  CHECK(static_cast<std::size_t>(
            std::count(stream.begin(), stream.end(), '\n')) == sags.size());
  CHECK(windows > 1000);
  CHECK(counted + static_cast<std::uint64_t>(late_records) ==
        meter_events()->size());
}

}  // namespace

TEST_CASE(
    "redis sink upserts are idempotent and an older version never overwrites a "
    "newer one",
    "[redis][e2e]") {
  const RedisAddress a = ms::test::shared_redis();
  const std::string k = ms::test::unique_redis_prefix("upsert");
  const ms::RedisSinkOptions o = options_for(a);
  std::vector<Update> updates = {
      {k + "w", "10", "v1", 1}, {k + "w", "10", "v3", 3},
      {k + "w", "10", "v2", 2}, {k + "w", "10", "v3", 3},
      {k + "w", "20", "x5", 5}, {k + "w", "20", "x4", 4},
      {k + "s", "", "s7", 7},   {k + "s", "", "s6", 6},
      {k + "s", "", "s7", 7},
  };
  REQUIRE(run_updates(o, updates).ok());
  RedisClient c(a);
  CHECK(c.str({"HGET", k + "w", "10"}) == "v3");
  CHECK(c.str({"HGET", k + "w", "20"}) == "x5");
  CHECK(c.str({"HGET", k + "w:version", "10"}) == "3");
  CHECK(c.str({"GET", k + "s"}) == "s7");
  CHECK(c.str({"GET", k + "s:version"}) == "7");
  const auto first = c.dump(k);
  CHECK(first.size() == 4);

  // The same results written again (a replay), in another order and from two
  // writers, change nothing; nor do older versions alone.
  std::reverse(updates.begin(), updates.end());
  REQUIRE(run_updates(o, updates, 2).ok());
  CHECK(c.dump(k) == first);
  REQUIRE(run_updates(o, {{k + "w", "10", "old", 0}, {k + "s", "", "old", 6}})
              .ok());
  CHECK(c.dump(k) == first);

  // A newer version wins.
  REQUIRE(run_updates(o, {{k + "w", "10", "v4", 4}}).ok());
  CHECK(c.str({"HGET", k + "w", "10"}) == "v4");
  CHECK(c.str({"HGET", k + "w", "20"}) == "x5");
}

TEST_CASE("redis sink writes each alert once across a replay", "[redis][e2e]") {
  const RedisAddress a = ms::test::shared_redis();
  const std::string k = ms::test::unique_redis_prefix("alerts");
  const ms::RedisSinkOptions o = options_for(a);
  std::vector<int> ids;
  for (int i = 0; i < 500; ++i) ids.push_back(i % 300);  // 200 retried
  auto run = [&](int parallelism) {
    ms::Pipeline p;
    p.source(ms::from_vector(ids, 2)).sink(ms::redis_sink<int>(o, [k](int id) {
      ms::RedisAlert al;
      al.key = k + "alert:" + std::to_string(id);
      al.value = std::to_string(id);
      al.stream = k + "alerts";
      return al;
    }));
    ms::JobOptions jo;
    jo.parallelism = parallelism;
    auto job = p.build(jo);
    REQUIRE(job.ok());
    const ms::Status s = job->run();
    INFO(s.ToString());
    REQUIRE(s.ok());
    return job->metrics();
  };
  auto m1 = run(1);
  CHECK(m1.at("redis_sink_writes") == 500);
  CHECK(m1.at("redis_sink_duplicate_alerts") == 200);
  RedisClient c(a);
  CHECK(c.integer({"XLEN", k + "alerts"}) == 300);
  CHECK(c.str({"GET", k + "alert:17"}) == "17");
  const auto first = c.dump(k);
  CHECK(first.size() == 301);

  auto m2 = run(2);  // the replay
  CHECK(m2.at("redis_sink_duplicate_alerts") == 500);
  CHECK(c.integer({"XLEN", k + "alerts"}) == 300);
  CHECK(c.dump(k) == first);
}

TEST_CASE(
    "redis sink reports bad options, an address that does not answer and a "
    "throwing "
    "formatter, naming the sink",
    "[redis][e2e]") {
  auto start_error = [](ms::RedisSinkOptions o) {
    ms::Pipeline p;
    p.source(ms::from_vector(std::vector<int>{1, 2, 3}))
        .sink(ms::redis_sink<int>(
            o,
            [](int i) {
              return ms::RedisUpsert{"k", "", std::to_string(i), i};
            }))
        .name("hot-aggregates");
    auto job = p.build(ms::JobOptions());
    REQUIRE(job.ok());
    return job->start();
  };
  ms::RedisSinkOptions o;
  o.host = "127.0.0.1";
  o.port = ms::test::free_loopback_port();  // nothing listens there
  o.connect_timeout = 300ms;
  ms::Status s = start_error(o);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kUnavailable);
  CHECK(s.message().find("hot-aggregates") != std::string::npos);
  CHECK(s.message().find("127.0.0.1:" + std::to_string(o.port)) !=
        std::string::npos);

  ms::RedisSinkOptions tls = o;
  tls.tls = true;
  s = start_error(tls);
  CHECK(s.code() == absl::StatusCode::kUnimplemented);
  CHECK(s.message().find("TLS") != std::string::npos);

  ms::RedisSinkOptions zero = o;
  zero.max_in_flight = 0;
  s = start_error(zero);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message().find("max_in_flight") != std::string::npos);

  // A database the server does not have.
  const RedisAddress a = ms::test::shared_redis();
  ms::RedisSinkOptions db = options_for(a);
  db.database = 999;
  s = start_error(db);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message().find("SELECT 999") != std::string::npos);

  // A formatter that throws fails the job with kInternal naming the sink;
  // nothing escapes run().
  ms::Pipeline p;
  p.source(ms::from_vector(std::vector<int>{1, 2, 3}))
      .sink(ms::redis_sink<int>(options_for(a),
                                [](int i) -> ms::RedisUpsert {
                                  if (i == 2)
                                    throw std::runtime_error("no key for 2");
                                  return ms::RedisUpsert{"unused", "", "", 0};
                                }))
      .name("bad-formatter");
  auto job = p.build(ms::JobOptions());
  REQUIRE(job.ok());
  s = job->run();
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kInternal);
  CHECK(s.message().find("bad-formatter") != std::string::npos);
  CHECK(s.message().find("no key for 2") != std::string::npos);
}

TEST_CASE(
    "redis sink passes auth and database through, and refused credentials fail "
    "the start",
    "[redis][e2e]") {
  ms::test::TempDir dir("redis-auth");
  OwnRedisServer server(dir.str(), {"--requirepass", "s3cret-pass"});
  ms::RedisSinkOptions o = options_for(server.address());
  o.password = "s3cret-pass";
  o.database = 3;
  REQUIRE(run_updates(o, {{"auth-key", "f", "v", 1}}).ok());
  RedisClient c(server.address(), "s3cret-pass");
  CHECK(c.str({"SELECT", "3"}) == "OK");
  CHECK(c.str({"HGET", "auth-key", "f"}) == "v");
  CHECK(c.str({"SELECT", "0"}) == "OK");
  CHECK(c.integer({"EXISTS", "auth-key"}) == 0);

  o.password = "wrong-pass";
  const ms::Status s = run_updates(o, {{"auth-key", "f", "w", 2}});
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kPermissionDenied);
  CHECK(s.message().find("wrong-pass") == std::string::npos);
  o.password.clear();
  const ms::Status none = run_updates(o, {{"auth-key", "f", "w", 2}});
  INFO(none.ToString());
  CHECK(none.code() == absl::StatusCode::kPermissionDenied);

  // An ACL user (AUTH user password).
  CHECK(c.str({"ACL", "SETUSER", "writer", "on", ">writer-pass", "~*",
               "+@all"}) == "OK");
  o.user = "writer";
  o.password = "writer-pass";
  o.database = 0;
  REQUIRE(run_updates(o, {{"acl-key", "f", "by-writer", 1}}).ok());
  CHECK(c.str({"HGET", "acl-key", "f"}) == "by-writer");
  o.password = "not-writer-pass";
  const ms::Status wrong_user = run_updates(o, {{"acl-key", "f", "x", 2}});
  INFO(wrong_user.ToString());
  CHECK(wrong_user.code() == absl::StatusCode::kPermissionDenied);
  CHECK(wrong_user.message().find("writer") != std::string::npos);
  CHECK(c.str({"HGET", "acl-key", "f"}) == "by-writer");
}

TEST_CASE(
    "redis sink survives redis being killed and restarted mid-run with the "
    "uninterrupted "
    "content",
    "[redis][e2e]") {
  ms::test::TempDir dir("redis-restart");
  OwnRedisServer server(dir.str());
  ms::RedisSinkOptions o = options_for(server.address());
  o.max_in_flight = 64;
  o.reconnect_backoff_max = 200ms;

  const std::string ref = "ref:";
  const auto ref_metrics = run_reference(o, ref);

  const std::string cut = "cut:";
  MeterRun run;
  run.gate->at = meter_events()->size() / 2;
  ms::test::TempDir chk("redis-restart-chk");
  ms::JobOptions jo;
  jo.parallelism = 2;
  jo.checkpoint = ms::enable_checkpointing(
      20ms, ms::test::local_storage(chk.str("storage")));
  jo.checkpoint.local_dir = chk.str("work");
  auto job = meter_pipeline(o, cut, run).build(jo);
  REQUIRE(job.ok());
  REQUIRE(job->start().ok());
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!run.gate->reached.load() ||
         job->metrics()["checkpoints_completed"] < 1) {
    REQUIRE(!job->finished());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(5ms);
  }
  server.kill();
  run.gate->open = true;  // the second half meets no server
  std::this_thread::sleep_for(300ms);
  server.start();
  const ms::Status s = job->wait();
  INFO(s.ToString());
  REQUIRE(s.ok());
  const auto m = job->metrics();
  CHECK(m.at("redis_sink_reconnects") >= 1);

  RedisClient c(server.address());
  const auto want = c.dump(ref);
  check_meter_content(want, ref_metrics.at("window_late_records"));
  CHECK(c.dump(cut) == want);
}

TEST_CASE(
    "redis sink job that fails and restarts from its checkpoint ends with the "
    "uninterrupted content, no alert twice",
    "[redis][e2e]") {
  const RedisAddress a = ms::test::shared_redis();
  ms::RedisSinkOptions o = options_for(a);
  o.max_in_flight = 100;
  const std::string ref = ms::test::unique_redis_prefix("ref");
  const auto ref_metrics = run_reference(o, ref);

  const std::string cut = ms::test::unique_redis_prefix("cut");
  MeterRun run;
  run.fail_after = 3000;  // copied into the pipeline: set before it
  run.gate->at = meter_events()->size() / 2;
  ms::test::TempDir chk("redis-job-restart");
  ms::JobOptions jo;
  jo.parallelism = 2;
  jo.checkpoint = ms::enable_checkpointing(
      20ms, ms::test::local_storage(chk.str("storage")));
  jo.checkpoint.local_dir = chk.str("work");
  jo.restart = ms::RestartStrategy::fixed_delay(2, 50ms);
  auto job = meter_pipeline(o, cut, run).build(jo);
  REQUIRE(job.ok());
  REQUIRE(job->start().ok());
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!run.gate->reached.load() ||
         job->metrics()["checkpoints_completed"] < 2) {
    REQUIRE(!job->finished());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(5ms);
  }
  // A reading in the second half fails the job (after the sinks wrote
  // some of that half's output, unless a checkpoint came in between); it
  // restarts from its newest checkpoint and writes the readings since then
  // again.
  run.fail_next->store(true);
  run.gate->open = true;
  const ms::Status s = job->wait();
  INFO(s.ToString());
  REQUIRE(s.ok());
  CHECK(run.failed->load());
  const auto m = job->metrics();
  CHECK(m.at("job_restarts") == 1);
  // The restarted attempt resumed from a checkpoint, not from the start.
  CHECK(m.at("source_records") <
        static_cast<std::int64_t>(meter_events()->size()));
  INFO("replayed writes found in Redis: "
       << m.at("redis_sink_stale_upserts") << " upserts, "
       << m.at("redis_sink_duplicate_alerts") << " alerts");

  RedisClient c(a);
  const auto want = c.dump(ref);
  check_meter_content(want, ref_metrics.at("window_late_records"));
  CHECK(c.dump(cut) == want);
}

namespace {

// Runs a shell command; returns its exit code, stdout in `*out`.
int run_command(const std::string& cmd, std::string* out) {
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::uint64_t summary_number(const std::string& out, const std::string& label) {
  const auto at = out.find("\n  " + label + " ");
  REQUIRE(at != std::string::npos);
  return std::stoull(
      out.substr(out.find_first_not_of(' ', at + 3 + label.size())));
}

}  // namespace

TEST_CASE(
    "smart_meter --redis writes every window as an upsert, the same on a rerun",
    "[redis][e2e][tools]") {
  const RedisAddress a = ms::test::shared_redis();
  const std::string prefix = ms::test::unique_redis_prefix("smart-meter");
  const std::string cmd =
      std::string(MS_BINARY_DIR) +
      "/examples/smart_meter --meters 300 --events 30000 --threads 2 "
      "--redis " +
      a.host + ":" + std::to_string(a.port) + " --redis-prefix " + prefix;
  std::string out;
  REQUIRE(run_command(cmd, &out) == 0);
  INFO(out);
  const std::uint64_t windows = summary_number(out, "windows");
  const std::uint64_t total = summary_number(out, "total_count");
  RedisClient c(a);
  const auto first = c.dump(prefix);
  std::uint64_t fields = 0;
  std::uint64_t counted = 0;
  for (const auto& [key, content] : first) {
    if (key.find(":version") != std::string::npos) continue;
    std::istringstream lines(content);
    std::string line;
    std::getline(lines, line);
    while (std::getline(lines, line)) {
      std::istringstream f(line.substr(line.find('=') + 1));
      std::string meter, start, count;
      std::getline(f, meter, ',');
      std::getline(f, start, ',');
      std::getline(f, count, ',');
      counted += std::stoull(count);
      ++fields;
    }
  }
  CHECK(windows > 0);
  CHECK(fields == windows);
  CHECK(counted == total);

  std::string again;
  REQUIRE(run_command(cmd, &again) == 0);
  CHECK(c.dump(prefix) == first);
}

TEST_CASE(
    "redis sink fails the job clearly when redis stays down past max_outage",
    "[redis][e2e]") {
  ms::test::TempDir dir("redis-outage");
  OwnRedisServer server(dir.str());
  ms::RedisSinkOptions o = options_for(server.address());
  o.reconnect_backoff_max = 50ms;
  o.max_outage = 300ms;
  MeterRun run;
  run.gate->at = meter_events()->size() / 2;
  auto job = meter_pipeline(o, "outage:", run).build(ms::JobOptions());
  REQUIRE(job.ok());
  REQUIRE(job->start().ok());
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!run.gate->reached.load()) {
    REQUIRE(!job->finished());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(5ms);
  }
  server.kill();
  run.gate->open = true;
  const ms::Status s = job->wait();
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kUnavailable);
  CHECK(s.message().find("max_outage") != std::string::npos);
  CHECK(
      s.message().find("127.0.0.1:" + std::to_string(server.address().port)) !=
      std::string::npos);
}
