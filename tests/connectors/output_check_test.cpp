// bench/output_check: Q1's results from a crash-and-resume run's committed
// output, with repeated windows and malformed lines counted.

#include "bench/output_check.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/temp_dir.hpp"
#include "meterstream/connectors/files/files.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"

namespace ms = meterstream;
namespace fs = std::filesystem;
using meterstream::test::TempDir;
using ms::bench::Q1OutputWindow;

namespace {

// Distinct windows: meter i % 7, window i / 7.
std::vector<Q1OutputWindow> windows(std::uint64_t n) {
  std::vector<Q1OutputWindow> out;
  for (std::uint64_t i = 0; i < n; ++i) {
    Q1OutputWindow w;
    w.meter_id = i % 7;
    w.start = 1700000000000 + static_cast<std::int64_t>(i / 7) * 60000;
    w.count = 1 + i % 5;
    w.sum_wh = 50 + i * 13;
    w.min_v = static_cast<std::uint32_t>(2250 + i % 40);
    w.max_v = static_cast<std::uint32_t>(2300 + i % 50);
    out.push_back(w);
  }
  return out;
}

ms::Q1Totals totals_of(const std::vector<Q1OutputWindow>& ws) {
  ms::Q1Totals t;
  for (const Q1OutputWindow& w : ws) {
    t.add_window(w.meter_id, w.start, w.count, w.sum_wh, w.min_v, w.max_v);
  }
  return t;
}

void write_file(const fs::path& path, const std::vector<Q1OutputWindow>& ws,
                const std::string& extra = "") {
  std::ofstream out(path, std::ios::binary);
  for (const Q1OutputWindow& w : ws) out << ms::bench::q1_output_line(w) << '\n';
  out << extra;
}

ms::bench::OutputCheck check(const fs::path& dir) {
  auto c = ms::bench::check_q1_output(dir.string());
  REQUIRE(c.ok());
  return *c;
}

}  // namespace

TEST_CASE("an output line round-trips through its format", "[bench]") {
  Q1OutputWindow w;
  w.meter_id = std::numeric_limits<std::uint64_t>::max();
  w.start = -60000;
  w.count = 3;
  w.sum_wh = 1234;
  w.min_v = 1800;
  w.max_v = 65535;
  const std::string line = ms::bench::q1_output_line(w);
  CHECK(line == "18446744073709551615,-60000,3,1234,1800,65535");
  Q1OutputWindow back;
  REQUIRE(ms::bench::parse_q1_output_line(line, &back));
  CHECK(back.meter_id == w.meter_id);
  CHECK(back.start == w.start);
  CHECK(back.count == w.count);
  CHECK(back.sum_wh == w.sum_wh);
  CHECK(back.min_v == w.min_v);
  CHECK(back.max_v == w.max_v);

  for (const char* bad :
       {"", "1,2,3,4,5", "1,2,3,4,5,6,7", "1,2,3,4,5,6,", ",1,2,3,4,5", "a,2,3,4,5,6",
        "1, 2,3,4,5,6", "1,2,3,4,5,6 ", "1,2,3,4,5,6\r", "-1,2,3,4,5,6", "1,2,-3,4,5,6",
        "+1,2,3,4,5,6", "1,2,3,4,65536,6", "1,2,3,4,5,65536", "18446744073709551616,2,3,4,5,6",
        "1,9223372036854775808,3,4,5,6", "1;2;3;4;5;6"}) {
    INFO(bad);
    CHECK_FALSE(ms::bench::parse_q1_output_line(bad, &back));
  }
}

TEST_CASE("the check sums the Q1 digest over the committed files only", "[bench]") {
  TempDir dir;
  const std::vector<Q1OutputWindow> all = windows(100);
  write_file(dir.path / "part-0000000001-w0.csv", {all.begin(), all.begin() + 30});
  write_file(dir.path / "part-0000000001-w1.csv", {all.begin() + 30, all.begin() + 45});
  write_file(dir.path / "part-0000000002-w0.csv", {all.begin() + 45, all.end()});
  write_file(dir.path / "empty.csv", {});
  // Staging, and names that are not committed files.
  const std::vector<Q1OutputWindow> more = windows(10);
  write_file(dir.path / "part-0000000003-w0.csv.staged", more);
  write_file(dir.path / "part-inprogress-w0.staged", more);
  write_file(dir.path / ".hidden.csv", more);
  write_file(dir.path / "notes.txt", more);
  fs::create_directories(dir.path / "sub.csv");

  const ms::bench::OutputCheck c = check(dir.path);
  const ms::Q1Totals expected = totals_of(all);
  CHECK(c.totals == expected);
  CHECK(c.totals.windows == 100);
  CHECK(c.repeated == 0);
  CHECK(c.malformed == 0);
  CHECK(c.files == 4);

  CHECK(ms::bench::output_check_json(c).dump() ==
        "{\"windows\":100,\"total_count\":" + std::to_string(expected.total_count) +
            ",\"sum_wh\":" + std::to_string(expected.sum_wh) + ",\"digest\":" +
            std::to_string(expected.digest) + ",\"repeated\":0,\"malformed\":0,\"files\":4}");
}

TEST_CASE("repeated windows and malformed lines are counted", "[bench]") {
  TempDir dir;
  const std::vector<Q1OutputWindow> all = windows(20);
  write_file(dir.path / "a.csv", {all.begin(), all.begin() + 10}, "\n1,2,3\n");
  // Window 9 again (a file committed twice would repeat all of its windows),
  // and a last line cut short.
  write_file(dir.path / "b.csv", {all.begin() + 9, all.end()}, "5,1700000000000,1,2,3");
  write_file(dir.path / "c.csv", {all[0], all[0]}, "x\n");

  const ms::bench::OutputCheck c = check(dir.path);
  CHECK(c.repeated == 3);  // all[9] once more, all[0] twice more
  CHECK(c.malformed == 4);
  CHECK(c.files == 3);
  std::vector<Q1OutputWindow> counted = all;
  counted.push_back(all[9]);
  counted.push_back(all[0]);
  counted.push_back(all[0]);
  CHECK(c.totals == totals_of(counted));
  CHECK(c.totals != totals_of(all));
}

TEST_CASE("the check reads what the exactly-once file sink committed", "[bench][sink]") {
  TempDir dir;
  const std::vector<Q1OutputWindow> all = windows(60);
  auto sink =
      ms::exactly_once_file_sink<Q1OutputWindow>(dir.path.string(), &ms::bench::q1_output_line);
  auto w0 = sink->create_writer(0, 2);
  auto w1 = sink->create_writer(1, 2);
  REQUIRE(w0.ok());
  REQUIRE(w1.ok());
  std::vector<std::string> staged;
  for (std::size_t i = 0; i < all.size(); i += 10) {
    ms::RecordBatch<Q1OutputWindow> batch;
    batch.values.assign(all.begin() + static_cast<std::ptrdiff_t>(i),
                        all.begin() + static_cast<std::ptrdiff_t>(i + 10));
    auto& w = (i / 10) % 2 == 0 ? *w0 : *w1;
    REQUIRE(w->write(batch).ok());
    if (i % 20 == 10) {
      const std::int64_t epoch = static_cast<std::int64_t>(i / 20) + 1;
      for (auto* writer : {&*w0, &*w1}) {
        auto name = (*writer)->prepare_commit(epoch);
        REQUIRE(name.ok());
        staged.push_back(*name);
      }
    }
  }
  // Staged, not committed: not output yet.
  CHECK(check(dir.path).totals.windows == 0);
  REQUIRE(sink->commit(ms::CheckpointCommit(), staged).ok());
  const ms::bench::OutputCheck c = check(dir.path);
  CHECK(c.totals == totals_of(all));
  CHECK(c.repeated == 0);
  CHECK(c.malformed == 0);
  CHECK(c.files == 6);
}

TEST_CASE("a missing output folder or a file is an error naming it", "[bench]") {
  TempDir dir;
  const fs::path missing = dir.path / "nope";
  auto m = ms::bench::check_q1_output(missing.string());
  CHECK(m.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(m.status().message()), Catch::Contains(missing.string()));

  const fs::path file = dir.path / "file.csv";
  write_file(file, windows(1));
  auto f = ms::bench::check_q1_output(file.string());
  CHECK(f.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(f.status().message()), Catch::Contains(file.string()));

  // An empty folder is a valid, empty output.
  fs::create_directories(dir.path / "empty");
  const ms::bench::OutputCheck c = check(dir.path / "empty");
  CHECK(c.totals.windows == 0);
  CHECK(c.files == 0);
}
