// How checkpointed jobs handle awkward inputs and broken storage: names that
// are not UTF-8, unusable checkpoint folders, a folder another job holds.
// Each case asserts the Status a user gets (never a crash or an exception).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/checkpoint_jobs.hpp"
#include "common/temp_dir.hpp"
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

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

TEST_CASE(
    "a source and a sink named by paths that are not UTF-8 checkpoint and "
    "restore",
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
      const std::int64_t i =
          std::stoll(std::string(line.substr(0, line.find(','))));
      if (i % 100 == 0 && pace.slow->load())
        std::this_thread::sleep_for(pace.pause);
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

namespace {

// A pipeline that reads an endless source, slowly, into a line sink.
ms::Pipeline endless(const std::string& out, std::atomic<std::int64_t>* read) {
  ms::Pipeline p;
  p.source(ms::from_generator([read](std::uint64_t i)
                                  -> std::optional<std::string> {
     ++*read;
     if (i % 100 == 0) std::this_thread::sleep_for(1ms);
     return std::to_string(i);
   })).sink(mt::line_sink(out));
  return p;
}

}  // namespace

TEST_CASE(
    "a checkpoint folder that cannot be written fails Job::start before any "
    "record",
    "[checkpoint]") {
  mt::TempDir dir("readonly-chk");
  // Root writes anywhere it has permission bits for; sysfs refuses new files
  // to root too.
  std::string folder = "/sys/power";
  if (::geteuid() != 0) {
    folder = dir.str("ro");
    fs::create_directories(folder);
    fs::permissions(folder, fs::perms::owner_read | fs::perms::owner_exec);
  }
  REQUIRE(fs::is_directory(folder));
  ms::LocalCheckpointStorageOptions so;
  so.directory = folder;
  auto storage = ms::make_local_checkpoint_storage(so);
  REQUIRE(storage.ok());  // the folder exists: opening it reads nothing
  std::atomic<std::int64_t> read{0};
  ms::JobOptions o;
  o.checkpoint = ms::enable_checkpointing(
      50ms, std::shared_ptr<ms::CheckpointStorage>(std::move(storage).value()));
  ms::Job job = mt::build_job(endless(dir.str("out"), &read), o);
  const ms::Status s = job.start();
  if (s.ok()) job.cancel();
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kPermissionDenied);
  CHECK(s.message().find(folder) != std::string::npos);
  CHECK(job.wait().code() == s.code());
  CHECK(read.load() == 0);
}

TEST_CASE(
    "a second job on a checkpoint folder in use is refused naming the holder's "
    "pid",
    "[checkpoint]") {
  mt::TempDir dir("locked-chk");
  std::atomic<std::int64_t> read1{0};
  std::atomic<std::int64_t> read2{0};
  ms::JobOptions o;
  o.checkpoint =
      ms::enable_checkpointing(50ms, mt::local_storage(dir.str("chk")));
  ms::Job first = mt::build_job(endless(dir.str("out1"), &read1), o);
  REQUIRE(first.start().ok());

  // Another storage object on the same folder, as another process would open.
  ms::JobOptions o2;
  o2.checkpoint =
      ms::enable_checkpointing(50ms, mt::local_storage(dir.str("chk")));
  {
    ms::Job second = mt::build_job(endless(dir.str("out2"), &read2), o2);
    const ms::Status s = second.start();
    INFO(s.ToString());
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK(s.message().find("process " + std::to_string(::getpid())) !=
          std::string::npos);
    CHECK(s.message().find(dir.str("chk")) != std::string::npos);
    CHECK(read2.load() == 0);
  }
  // Another process is refused the same way (the hidden case below).
  const std::string ran = dir.str("child-ran");
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::setenv("MS_TEST_LOCKED_DIR", dir.str().c_str(), 1);
    char exe[] = "/proc/self/exe";
    char name[] = "lock child: a job on MS_TEST_LOCKED_DIR/chk is refused";
    char quiet[] = "--out=/dev/null";
    char* argv[] = {exe, name, quiet, nullptr};
    ::execv(exe, argv);
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(fs::exists(ran));

  first.cancel();
  CHECK(first.wait().code() == absl::StatusCode::kCancelled);
  // The folder is free again once the first job has ended.
  ms::Job third = mt::build_job(endless(dir.str("out2"), &read2), o2);
  REQUIRE(third.start().ok());
  third.cancel();
  CHECK(third.wait().code() == absl::StatusCode::kCancelled);
}

TEST_CASE("lock child: a job on MS_TEST_LOCKED_DIR/chk is refused", "[.]") {
  const char* dir = std::getenv("MS_TEST_LOCKED_DIR");
  REQUIRE(dir != nullptr);
  std::ofstream(std::string(dir) + "/child-ran") << "ran";
  std::atomic<std::int64_t> read{0};
  ms::JobOptions o;
  o.checkpoint = ms::enable_checkpointing(
      50ms, mt::local_storage(std::string(dir) + "/chk"));
  ms::Job job =
      mt::build_job(endless(std::string(dir) + "/out-child", &read), o);
  const ms::Status s = job.start();
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(s.message().find("process " + std::to_string(::getppid())) !=
        std::string::npos);
}
