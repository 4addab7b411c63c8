// The local folder checkpoint storage (checkpoint/checkpoint_storage.hpp).
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/temp_dir.hpp"
#include "common/test_bytes.hpp"
#include "meterstream/checkpoint/checkpoint_storage.hpp"

namespace ms = meterstream;
namespace fs = std::filesystem;
using meterstream::test::TempDir;

namespace {

std::unique_ptr<ms::CheckpointStorage> open_storage(const fs::path& dir) {
  ms::LocalCheckpointStorageOptions options;
  options.directory = dir.string();
  auto storage = ms::make_local_checkpoint_storage(options);
  REQUIRE(storage.ok());
  return std::move(storage).value();
}

using meterstream::test::pattern;
using meterstream::test::read_file;

}  // namespace

TEST_CASE("local storage round trips bytes, including empty objects", "[checkpoint]") {
  TempDir dir;
  auto storage = open_storage(dir.path / "root");
  CHECK(storage->name() == "local:" + (dir.path / "root").string());

  REQUIRE(storage->put("job/chk-1/_metadata", "{\"id\":1}").ok());
  REQUIRE(storage->put("empty", "").ok());
  std::string binary = pattern(100000, 1);
  REQUIRE(storage->put("job/shared/1.sst", binary).ok());

  CHECK(storage->get("job/chk-1/_metadata").value() == "{\"id\":1}");
  CHECK(storage->get("empty").value().empty());
  CHECK(storage->get("job/shared/1.sst").value() == binary);
  CHECK(storage->exists("job/chk-1/_metadata").value());
  CHECK_FALSE(storage->exists("job/chk-2/_metadata").value());

  // Overwriting replaces.
  REQUIRE(storage->put("job/chk-1/_metadata", "v2").ok());
  CHECK(storage->get("job/chk-1/_metadata").value() == "v2");

  // The uri factory opens the same folder.
  auto by_uri = ms::make_checkpoint_storage("file://" + (dir.path / "root").string());
  REQUIRE(by_uri.ok());
  CHECK((*by_uri)->get("job/chk-1/_metadata").value() == "v2");
}

TEST_CASE("local storage reports a missing object as kNotFound", "[checkpoint]") {
  TempDir dir;
  auto storage = open_storage(dir.path);
  auto got = storage->get("nope/_metadata");
  REQUIRE(got.status().code() == absl::StatusCode::kNotFound);
  CHECK(got.status().message().find("nope/_metadata") != std::string::npos);
  CHECK(storage->get_file("nope", (dir.path / "out").string()).code() ==
        absl::StatusCode::kNotFound);
  CHECK_FALSE(fs::exists(dir.path / "out"));
}

TEST_CASE("local storage rejects bad paths", "[checkpoint]") {
  TempDir dir;
  auto storage = open_storage(dir.path);
  for (const char* bad : {"", "/abs", "a//b", "../x", "a/./b", "a/", ".ms-tmp-1"}) {
    INFO(bad);
    CHECK(storage->put(bad, "x").code() == absl::StatusCode::kInvalidArgument);
    CHECK(storage->get(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(ms::make_local_checkpoint_storage({}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  std::ofstream(dir.path / "file") << "x";
  ms::LocalCheckpointStorageOptions on_file;
  on_file.directory = (dir.path / "file").string();
  CHECK(ms::make_local_checkpoint_storage(on_file).status().code() ==
        absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("local storage lists by string prefix, sorted", "[checkpoint]") {
  TempDir dir;
  auto storage = open_storage(dir.path);
  for (const char* p : {"chk-10/a", "chk-1/b", "chk-1/a", "shared/z.sst", "chk-2/x/y", "top"}) {
    REQUIRE(storage->put(p, p).ok());
  }
  using V = std::vector<std::string>;
  CHECK(storage->list("").value() ==
        V{"chk-1/a", "chk-1/b", "chk-10/a", "chk-2/x/y", "shared/z.sst", "top"});
  CHECK(storage->list("chk-1").value() == V{"chk-1/a", "chk-1/b", "chk-10/a"});
  CHECK(storage->list("chk-1/").value() == V{"chk-1/a", "chk-1/b"});
  CHECK(storage->list("chk-2/x/").value() == V{"chk-2/x/y"});
  CHECK(storage->list("missing/").value().empty());
  CHECK(storage->list("t").value() == V{"top"});
}

TEST_CASE("local storage remove is idempotent and prunes empty folders", "[checkpoint]") {
  TempDir dir;
  auto storage = open_storage(dir.path);
  REQUIRE(storage->put("chk-1/a/b", "x").ok());
  REQUIRE(storage->remove("chk-1/a/b").ok());
  REQUIRE(storage->remove("chk-1/a/b").ok());
  REQUIRE(storage->remove("never/was").ok());
  CHECK_FALSE(storage->exists("chk-1/a/b").value());
  CHECK_FALSE(fs::exists(dir.path / "chk-1"));
  CHECK(fs::exists(dir.path));
  CHECK(storage->list("").value().empty());
}

TEST_CASE("local storage reports a corrupt object as kDataLoss naming the path",
          "[checkpoint]") {
  TempDir dir;
  auto storage = open_storage(dir.path);
  std::string bytes = pattern(4096, 2);
  REQUIRE(storage->put("chk-3/state.bin", bytes).ok());
  fs::path file = dir.path / "chk-3" / "state.bin";

  SECTION("a flipped byte") {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put(static_cast<char>(bytes[100] ^ 0x40));
  }
  SECTION("a truncated file") { fs::resize_file(file, 1000); }
  SECTION("a file shorter than the trailer") { fs::resize_file(file, 10); }
  SECTION("a file replaced by foreign bytes") { std::ofstream(file, std::ios::trunc) << "hello"; }

  auto got = storage->get("chk-3/state.bin");
  REQUIRE(got.status().code() == absl::StatusCode::kDataLoss);
  CHECK(got.status().message().find("chk-3/state.bin") != std::string::npos);
  fs::path out = dir.path / "restored.bin";
  ms::Status st = storage->get_file("chk-3/state.bin", out.string());
  CHECK(st.code() == absl::StatusCode::kDataLoss);
  CHECK(st.message().find("chk-3/state.bin") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
  // No temporary file left next to it either.
  for (const auto& e : fs::directory_iterator(dir.path)) {
    CHECK(e.path().filename().string().find(".ms-tmp-") == std::string::npos);
  }
}

TEST_CASE("local storage put is atomic under concurrent readers", "[checkpoint]") {
  TempDir dir;
  auto storage = open_storage(dir.path);
  // Two versions of different sizes; a reader must always see one of them whole.
  const std::string a = pattern(300000, 3);
  const std::string b = pattern(200000, 4);
  REQUIRE(storage->put("obj", a).ok());

  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto got = storage->get("obj");
        if (!got.ok() || (*got != a && *got != b)) bad.fetch_add(1);
        auto names = storage->list("");
        if (!names.ok() || *names != std::vector<std::string>{"obj"}) bad.fetch_add(1);
        reads.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 100; ++i) REQUIRE(storage->put("obj", i % 2 == 0 ? b : a).ok());
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(bad.load() == 0);
  CHECK(reads.load() > 0);
}

TEST_CASE("local storage streams large files with put_file and get_file", "[checkpoint]") {
  TempDir dir;
  auto storage = open_storage(dir.path / "store");
  // 24 MiB: larger than the 1 MiB copy buffer many times over.
  const fs::path src = dir.path / "big.sst";
  {
    std::ofstream out(src, std::ios::binary);
    for (unsigned i = 0; i < 24; ++i) out << pattern(std::size_t{1} << 20, 100 + i);
  }
  REQUIRE(storage->put_file("shared/big.sst", src.string()).ok());
  const fs::path dst = dir.path / "restored.sst";
  std::ofstream(dst) << "old contents";
  REQUIRE(storage->get_file("shared/big.sst", dst.string()).ok());
  CHECK(fs::file_size(dst) == fs::file_size(src));
  CHECK(read_file(dst) == read_file(src));
  // get() of the same object agrees.
  CHECK(storage->get("shared/big.sst").value() == read_file(src));

  CHECK(storage->put_file("x", (dir.path / "missing").string()).code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("local storage under a regular file is kFailedPrecondition and never throws",
          "[checkpoint]") {
  TempDir dir;
  { std::ofstream(dir.path / "a-file") << "x"; }
  for (const fs::path& p : {dir.path / "a-file", dir.path / "a-file" / "chk",
                            dir.path / "a-file" / "chk" / "deeper"}) {
    INFO(p.string());
    ms::LocalCheckpointStorageOptions options;
    options.directory = p.string();
    auto storage = ms::make_local_checkpoint_storage(options);
    REQUIRE(storage.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(storage.status().message().find(p.string()) != std::string::npos);
  }
}
