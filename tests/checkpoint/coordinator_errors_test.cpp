// How checkpointed jobs handle awkward inputs and broken storage: names that
// are not UTF-8, unusable checkpoint folders, a folder another job holds.
// Each case asserts the Status a user gets (never a crash or an exception).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include "meterstream/connectors/files/files.hpp"
#include "meterstream/meterstream.hpp"

namespace ms = meterstream;
namespace mt = meterstream::test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// `lines` numbered lines in `path`, and the lines sorted.
std::vector<std::string> write_lines(const std::string& path, int lines) {
  std::vector<std::string> out;
  std::ofstream f(path);
  for (int i = 0; i < lines; ++i) {
    out.push_back(std::to_string(i) + ",meter-" + std::to_string(i % 31));
    f << out.back() << '\n';
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("a source and a sink named by paths that are not UTF-8 checkpoint and restore",
          "[checkpoint][files]") {
  constexpr int kLines = 40000;
  mt::TempDir dir("non-utf8");
  // Latin-1 file names, as an older system writes them: not valid UTF-8.
  const std::string input = dir.str("z\xe4hler-\xff.txt");
  const std::string out = dir.str("out-\xe9t\xe9");
  const std::vector<std::string> lines = write_lines(input, kLines);
  mt::Pace pace;
  auto make = [&] {
    ms::Pipeline p;
    auto parse = [pace](std::string_view line) -> std::optional<std::string> {
      const std::int64_t i = std::stoll(std::string(line.substr(0, line.find(','))));
      if (i % 100 == 0 && pace.slow->load()) std::this_thread::sleep_for(pace.pause);
      return std::string(line);
    };
    p.source(ms::file_source(input, parse)).sink(mt::line_sink(out));
    return p;
  };
  auto storage = mt::local_storage(dir.str("chk"));
  ms::JobOptions o;
  o.parallelism = 1;
  o.checkpoint = ms::enable_checkpointing(20ms, storage);
  {
    ms::Job job = mt::build_job(make(), o);
    mt::run_and_cancel(job, 2, kLines / 4);
  }
  // The metadata is JSON and names the source by its exact bytes.
  const std::vector<std::int64_t> ids = mt::completed_ids(*storage);
  REQUIRE(!ids.empty());
  const nlohmann::json meta = mt::read_metadata(*storage, ids.back());
  REQUIRE(meta.at("sources").size() == 1);
  CHECK(meta.at("sources")[0].at("source").is_object());

  pace.slow->store(false);
  o.checkpoint.restore = ms::RestoreFrom::latest();
  const auto m = mt::run_to_end(make(), o);
  CHECK(m.at("source_records") < kLines);  // resumed, not started over
  CHECK(mt::committed_lines(out) == lines);
}
