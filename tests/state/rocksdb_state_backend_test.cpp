// What only the RocksDB backend has: its state directory (errors at open,
// layout marker, locking), column families shared by the stores of an
// operator, the on-disk effect of TTL, and what its snapshots are made of
// (shared SST files, concurrent restores from one folder). The common
// contract is in the suite (state_suite_test.cpp, snapshot_suite_test.cpp).
#include "meterstream/state/rocksdb_state_backend.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/state/state.hpp"
#include "state_suite.hpp"

namespace meterstream::testing {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

RocksDBStateBackendOptions options_for(const std::string& path) {
  RocksDBStateBackendOptions options;
  options.path = path;
  options.memory_budget_bytes = std::size_t{32} << 20;
  return options;
}

std::shared_ptr<StateBackend> open_backend(const RocksDBStateBackendOptions& options) {
  StatusOr<std::shared_ptr<StateBackend>> backend = make_rocksdb_state_backend(options);
  INFO(backend.status().ToString());
  REQUIRE(backend.ok());
  return std::move(backend).value();
}

std::shared_ptr<StateBackend> open_backend(const std::string& path) {
  StatusOr<std::shared_ptr<StateBackend>> backend =
      make_rocksdb_state_backend(options_for(path));
  INFO(backend.status().ToString());
  REQUIRE(backend.ok());
  return std::move(backend).value();
}

// The names and sizes of the files of a directory, to show it was not touched.
std::set<std::pair<std::string, std::uintmax_t>> listing(const std::string& dir) {
  std::set<std::pair<std::string, std::uintmax_t>> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    files.emplace(entry.path().filename().string(),
                  entry.is_regular_file() ? entry.file_size() : 0);
  }
  return files;
}

std::uintmax_t directory_size(const std::string& dir) {
  std::uintmax_t total = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

void write_file(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::trunc);
  out << contents;
}

TEST_CASE("rocksdb: operator_memory_ratio outside (0, 1) is refused, naming the option",
          "[state][rocksdb]") {
  TempPath tmp;
  for (const double ratio : {0.0, -0.5, 1.0, 1.5}) {
    RocksDBStateBackendOptions options = options_for(tmp.path);
    options.operator_memory_ratio = ratio;
    const auto backend = make_rocksdb_state_backend(options);
    INFO("ratio " << ratio << ": " << backend.status().ToString());
    CHECK(backend.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(backend.status().message()),
               Contains("operator_memory_ratio") && Contains("(0, 1)"));
  }
  // The smallest ratios still give operators a share to spill beyond.
  RocksDBStateBackendOptions options = options_for(tmp.path);
  options.operator_memory_ratio = 1e-12;
  CHECK(open_backend(options)->operator_memory_bytes() > 0);
}

TEST_CASE("rocksdb: a path under a regular file is rejected, naming the path",
          "[state][rocksdb]") {
  TempPath tmp;
  fs::create_directories(tmp.path);
  const fs::path file = fs::path(tmp.path) / "a-file";
  write_file(file, "not a directory");
  const std::string path = (file / "state").string();
  StatusOr<std::shared_ptr<StateBackend>> backend =
      make_rocksdb_state_backend(options_for(path));
  CHECK(backend.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(backend.status().message()), Contains(path));

  // The path itself a regular file.
  backend = make_rocksdb_state_backend(options_for(file.string()));
  CHECK(backend.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(backend.status().message()),
             Contains(file.string()) && Contains("not a directory"));
  CHECK(make_rocksdb_state_backend(options_for("")).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("rocksdb: a directory in use by another backend of this process is rejected",
          "[state][rocksdb]") {
  TempPath tmp;
  auto first = open_backend(tmp.path);
  const auto before = listing(tmp.path);
  StatusOr<std::shared_ptr<StateBackend>> second =
      make_rocksdb_state_backend(options_for(tmp.path));
  CHECK(second.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(second.status().message()),
             Contains(tmp.path) && Contains("in use by another process"));
  CHECK(listing(tmp.path) == before);
  // Once the first one is closed, the directory opens again.
  first.reset();
  open_backend(tmp.path);
}

TEST_CASE("rocksdb: a directory locked by another process is rejected",
          "[state][rocksdb]") {
  TempPath tmp;
  open_backend(tmp.path).reset();  // create the state dir, then close it
  const std::string lock_file = tmp.path + "/LOCK";

  // The child only makes system calls (no allocation, no RocksDB), which is
  // what is safe after fork() in a multi-threaded process: it takes the same
  // fcntl lock RocksDB takes, reports, and holds it until the pipe closes.
  int ready[2];
  int release[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(release) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    ::close(release[1]);
    const int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT, 0644);
    struct flock f = {};
    f.l_type = F_WRLCK;
    f.l_whence = SEEK_SET;
    const char ok = (fd >= 0 && ::fcntl(fd, F_SETLK, &f) == 0) ? 'y' : 'n';
    (void)!::write(ready[1], &ok, 1);
    char c;
    (void)!::read(release[0], &c, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char ok = 'n';
  REQUIRE(::read(ready[0], &ok, 1) == 1);
  REQUIRE(ok == 'y');

  const auto before = listing(tmp.path);
  StatusOr<std::shared_ptr<StateBackend>> backend =
      make_rocksdb_state_backend(options_for(tmp.path));
  CHECK(backend.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(backend.status().message()),
             Contains(tmp.path) && Contains("in use by another process"));
  CHECK(listing(tmp.path) == before);

  ::close(release[1]);
  ::close(ready[0]);
  int wstatus = 0;
  REQUIRE(::waitpid(child, &wstatus, 0) == child);
  open_backend(tmp.path);
}

TEST_CASE("rocksdb: a directory of another layout is rejected, naming both versions",
          "[state][rocksdb]") {
  TempPath tmp;
  open_backend(tmp.path).reset();
  const fs::path marker = fs::path(tmp.path) / "MS_LAYOUT";
  REQUIRE(fs::exists(marker));

  SECTION("another layout version") {
    write_file(marker, "meterstream-rocksdb-state/0\n");
    const auto before = listing(tmp.path);
    StatusOr<std::shared_ptr<StateBackend>> backend =
        make_rocksdb_state_backend(options_for(tmp.path));
    CHECK(backend.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(backend.status().message()),
               Contains(tmp.path) && Contains("meterstream-rocksdb-state/0") &&
                   Contains(kRocksDBStateLayoutVersion));
    CHECK(listing(tmp.path) == before);
  }
  SECTION("a RocksDB database without the marker") {
    fs::remove(marker);
    const auto before = listing(tmp.path);
    StatusOr<std::shared_ptr<StateBackend>> backend =
        make_rocksdb_state_backend(options_for(tmp.path));
    CHECK(backend.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(backend.status().message()),
               Contains(tmp.path) && Contains("none") &&
                   Contains(kRocksDBStateLayoutVersion));
    CHECK(listing(tmp.path) == before);
  }
  SECTION("a directory with other files") {
    TempPath other;
    fs::create_directories(other.path);
    write_file(fs::path(other.path) / "notes.txt", "mine");
    StatusOr<std::shared_ptr<StateBackend>> backend =
        make_rocksdb_state_backend(options_for(other.path));
    CHECK(backend.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(backend.status().message()), Contains(other.path));
    CHECK(listing(other.path) ==
          std::set<std::pair<std::string, std::uintmax_t>>{{"notes.txt", 4}});
  }
}

TEST_CASE("rocksdb: state of an earlier run is discarded at open", "[state][rocksdb]") {
  TempPath tmp;
  {
    auto backend = open_backend(tmp.path);
    auto store = open_store(*backend, "op", KeyGroupRange{0, 127});
    const int id = value_or_fail(store->register_state({"v"}));
    REQUIRE(store->put(id, 1, "k", "v").ok());
  }
  auto backend = open_backend(tmp.path);
  auto store = open_store(*backend, "op", KeyGroupRange{0, 127});
  const int id = value_or_fail(store->register_state({"v"}));
  std::string v;
  CHECK_FALSE(value_or_fail(store->get(id, 1, "k", &v)));
}

TEST_CASE("rocksdb: stores of one operator share column families and register concurrently",
          "[state][rocksdb]") {
  TempPath tmp;
  auto backend = open_backend(tmp.path);
  CHECK(backend->open_keyed_store("op", KeyGroupRange{0, 3}, 40000).status().code() ==
        absl::StatusCode::kInvalidArgument);

  constexpr int kWorkers = 4;
  std::vector<std::unique_ptr<KeyedStateStore>> stores;
  for (int w = 0; w < kWorkers; ++w) {
    stores.push_back(open_store(*backend, "op", key_group_range_for_worker(128, kWorkers, w)));
  }
  std::vector<std::thread> threads;
  std::vector<std::string> errors(kWorkers);
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      KeyedStateStore& store = *stores[static_cast<std::size_t>(w)];
      for (int s = 0; s < 20; ++s) {
        StatusOr<int> id = store.register_state({"state-" + std::to_string(s)});
        if (!id.ok()) {
          errors[static_cast<std::size_t>(w)] = id.status().ToString();
          return;
        }
        const int kg = store.key_group_range().first;
        Status put = store.put(*id, kg, "k", std::to_string(w));
        if (!put.ok()) errors[static_cast<std::size_t>(w)] = put.ToString();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& e : errors) CHECK(e.empty());
  for (int w = 0; w < kWorkers; ++w) {
    KeyedStateStore& store = *stores[static_cast<std::size_t>(w)];
    std::string v;
    CHECK(value_or_fail(store.get(19, store.key_group_range().first, "k", &v)));
    CHECK(v == std::to_string(w));
  }
  // Another kind for a name another worker registered.
  auto extra = open_store(*backend, "op-2", KeyGroupRange{0, 63});
  auto extra2 = open_store(*backend, "op-2", KeyGroupRange{64, 127});
  REQUIRE(extra->register_state({"s", StateDescriptor::Kind::kMap}).ok());
  CHECK(extra2->register_state({"s", StateDescriptor::Kind::kList}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  // Closing one worker's store deletes its key groups only.
  const KeyGroupRange closed = stores[0]->key_group_range();
  stores[0].reset();
  auto reopened = open_store(*backend, "op", closed);
  const int id = value_or_fail(reopened->register_state({"state-19"}));
  std::string v;
  CHECK_FALSE(value_or_fail(reopened->get(id, closed.first, "k", &v)));
  CHECK(value_or_fail(stores[1]->get(19, stores[1]->key_group_range().first, "k", &v)));
}

// Writes `n` values of 1000 random bytes to keys "<prefix><i>" of `v`.
void write_incompressible(ValueState<std::string>& v, KeyContext& ctx, const std::string& prefix,
                          int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string value(1000, '\0');
  for (int i = 0; i < n; ++i) {
    for (char& c : value) c = static_cast<char>(rng());
    set_current_key(ctx, prefix + std::to_string(i), 128);
    v.update(value);
  }
}

// snapshot() flushes the memtables into SST files, where compactions see them.
void flush(KeyedStateStore& store, const std::string& scratch) {
  REQUIRE(value_or_fail(store.snapshot(scratch)).files.size() > 0);
  fs::remove_all(scratch);
}

TEST_CASE("rocksdb: the on-disk size of TTL state shrinks once its entries expire",
          "[state][rocksdb][ttl]") {
  TempPath tmp;
  TempPath scratch;
  auto backend = open_backend(tmp.path);
  auto store = open_store(*backend, "op", KeyGroupRange{0, 127});
  KeyContext ctx;
  auto v = value_or_fail(make_value_state<std::string>(
      *store, ctx, "v", Ttl(std::chrono::hours(1)).event_time()));
  store->advance_event_time(0);

  // ~20 MB of incompressible values.
  write_incompressible(v, ctx, "k", 20'000, 42);
  flush(*store, scratch.path);
  REQUIRE(store->purge_expired().ok());  // nothing has expired yet
  const std::uint64_t before = value_or_fail(store->approximate_size_bytes());
  const std::uintmax_t dir_before = directory_size(tmp.path);
  INFO("before: " << before << " bytes in key range, " << dir_before << " in the dir");
  CHECK(before > 18'000'000);
  set_current_key(ctx, std::string("k7"), 128);
  CHECK(v.value().has_value());

  // purge_expired() only asks RocksDB to compact the range; its compaction
  // threads run the TTL filter.
  store->advance_event_time(3'600'000);
  REQUIRE(store->purge_expired().ok());
  CHECK(eventually([&] {
    return value_or_fail(store->approximate_size_bytes()) < before / 10 &&
           directory_size(tmp.path) < dir_before / 10;
  }));
  INFO("after: " << value_or_fail(store->approximate_size_bytes()) << " bytes in key range, "
                 << directory_size(tmp.path) << " in the dir");
  CHECK_FALSE(v.value().has_value());
}

TEST_CASE("rocksdb: the TTL compaction filter measures each operator's state on its own "
          "clock",
          "[state][rocksdb][ttl]") {
  TempPath tmp;
  TempPath scratch;
  auto backend = open_backend(tmp.path);
  const Ttl ttl = Ttl(std::chrono::seconds(10)).event_time();
  auto finished = open_store(*backend, "finished-op", KeyGroupRange{0, 127});
  auto running = open_store(*backend, "running-op", KeyGroupRange{0, 127});
  KeyContext ctx;
  auto theirs = value_or_fail(make_value_state<std::string>(*finished, ctx, "v", ttl));
  auto mine = value_or_fail(make_value_state<std::string>(*running, ctx, "v", ttl));

  // running-op: ~10 MB that expire at 11 s, and 100 values that live until
  // 16 s, on its clock.
  finished->advance_event_time(1'000);
  running->advance_event_time(1'000);
  write_incompressible(theirs, ctx, "t", 1'000, 1);
  write_incompressible(mine, ctx, "old", 10'000, 2);
  running->advance_event_time(6'000);
  write_incompressible(mine, ctx, "live", 100, 3);
  flush(*running, scratch.path);
  const std::uint64_t before = value_or_fail(running->approximate_size_bytes());
  CHECK(before > 9'000'000);

  // finished-op sees the final watermark; running-op is at 12 s.
  finished->advance_event_time(kMaxTimestamp);
  running->advance_event_time(12'000);
  REQUIRE(finished->purge_expired().ok());
  REQUIRE(running->purge_expired().ok());
  // The compaction of running-op's column family ran (its expired values are
  // gone) ...
  CHECK(eventually(
      [&] { return value_or_fail(running->approximate_size_bytes()) < before / 10; }));
  // ... and kept what is alive on running-op's clock.
  for (int i = 0; i < 100; ++i) {
    set_current_key(ctx, "live" + std::to_string(i), 128);
    INFO("live" << i);
    CHECK(mine.value().has_value());
  }
  set_current_key(ctx, std::string("old0"), 128);
  CHECK_FALSE(mine.value().has_value());
}

// ---- Snapshots ---------------------------------------------------------------

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes `entries` keys of 100 random bytes into each of the states `ids`,
// spread over the store's key groups.
void write_random(KeyedStateStore& store, const std::vector<int>& ids, int entries,
                  std::uint64_t seed) {
  const KeyGroupRange range = store.key_group_range();
  std::mt19937_64 rng(seed);
  std::string value(100, '\0');
  for (int id : ids) {
    for (int i = 0; i < entries; ++i) {
      for (char& c : value) c = static_cast<char>(rng());
      const int kg = range.first + i % range.size();
      REQUIRE(store.put(id, kg, "key-" + std::to_string(i), value).ok());
    }
  }
}

// The SST files of a snapshot, and checks that exactly they are shared.
std::set<std::string> sst_files(const StoreManifest& snapshot) {
  std::set<std::string> ssts;
  for (const StoreManifest::File& f : snapshot.files) {
    const bool sst = fs::path(f.name).extension() == ".sst";
    CHECK(f.shared == sst);
    if (sst) ssts.insert(f.name);
  }
  return ssts;
}

TEST_CASE("rocksdb: snapshot SST files are shared, and unchanged ones are reused byte for byte",
          "[state][rocksdb][snapshot]") {
  TempPath tmp;
  TempPath snapshots("snapshot");
  auto backend = open_backend(tmp.path);
  auto store = open_store(*backend, "op", KeyGroupRange{0, 127});
  const int a = value_or_fail(store->register_state({"a"}));
  const int b = value_or_fail(store->register_state({"b"}));
  // ~200 KB per state: below a memtable, so the snapshot's flush writes one
  // SST file per state.
  write_random(*store, {a, b}, 2'000, 1);

  const std::string dir1 = snapshots.path + "/1";
  const StoreManifest first = value_or_fail(store->snapshot(dir1));
  std::set<std::string> names;
  for (const StoreManifest::File& f : first.files) names.insert(f.name.substr(0, 8));
  CHECK(names.count("states.b") == 1);  // the descriptors
  CHECK(names.count("CURRENT") == 1);
  CHECK(names.count("MANIFEST") == 1);
  CHECK(names.count("OPTIONS-") == 1);
  const std::set<std::string> first_ssts = sst_files(first);
  CHECK(first_ssts.size() == 2);

  // A small change: the next snapshot adds one small SST file.
  REQUIRE(store->put(a, 5, "key-5", "changed").ok());
  const std::string dir2 = snapshots.path + "/2";
  const StoreManifest second = value_or_fail(store->snapshot(dir2));
  const std::set<std::string> second_ssts = sst_files(second);
  std::uintmax_t reused_bytes = 0;
  for (const std::string& name : first_ssts) {
    INFO(name);
    REQUIRE(second_ssts.count(name) == 1);
    const std::string bytes = read_file(fs::path(dir1) / name);
    CHECK(read_file(fs::path(dir2) / name) == bytes);  // uploaded once, shared by both
    reused_bytes += bytes.size();
  }
  REQUIRE(second_ssts.size() == first_ssts.size() + 1);
  std::uintmax_t new_bytes = 0;
  for (const std::string& name : second_ssts) {
    if (first_ssts.count(name) == 0) new_bytes = fs::file_size(fs::path(dir2) / name);
  }
  INFO("reused " << reused_bytes << " bytes of SST files, new " << new_bytes);
  CHECK(reused_bytes > 20 * new_bytes);

  // The second snapshot has the change, the first not.
  store.reset();
  for (const auto& [dir, snapshot, expected] :
       {std::tuple(dir1, first, false), std::tuple(dir2, second, true)}) {
    auto restored = open_store(*backend, "op", KeyGroupRange{0, 127});
    REQUIRE(restored->restore(dir, snapshot).ok());
    std::string v;
    REQUIRE(value_or_fail(restored->get(a, 5, "key-5", &v)));
    CHECK((v == "changed") == expected);
  }
}

TEST_CASE("rocksdb: stores restore from one snapshot folder concurrently and leave it as it was",
          "[state][rocksdb][snapshot]") {
  TempPath tmp;
  TempPath dir("snapshot");
  auto backend = open_backend(tmp.path);
  StoreManifest snapshot;
  auto other = open_store(*backend, "other", KeyGroupRange{0, 127});
  write_random(*other, {value_or_fail(other->register_state({"w"}))}, 1'000, 2);
  {
    auto store = open_store(*backend, "op", KeyGroupRange{0, 127});
    write_random(*store, {value_or_fail(store->register_state({"v"}))}, 1'280, 3);
    snapshot = value_or_fail(store->snapshot(dir.path));
  }
  const auto before = listing(dir.path);

  const std::vector<KeyGroupRange> ranges = {{0, 63}, {64, 127}};
  std::vector<std::unique_ptr<KeyedStateStore>> stores;
  for (const KeyGroupRange& r : ranges) stores.push_back(open_store(*backend, "op", r));
  std::vector<Status> results(ranges.size() * 3);
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < ranges.size(); ++w) {
    threads.emplace_back([&, w] {
      // Again and again: each restore opens the folder read-only once more.
      for (std::size_t round = 0; round < 3; ++round) {
        results[w * 3 + round] = stores[w]->restore(dir.path, snapshot);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const Status& s : results) CHECK(s.ok());
  for (std::size_t w = 0; w < ranges.size(); ++w) {
    KeyedStateStore& store = *stores[w];
    CHECK(store.num_states() == 1);  // not the other operator's
    int entries = 0;
    for (int kg = ranges[w].first; kg <= ranges[w].last; ++kg) {
      REQUIRE(store.for_each_in_key_group(kg, [&](int, std::string_view, std::string_view) {
                     ++entries;
                     return true;
                   }).ok());
    }
    CHECK(entries == 640);
  }
  CHECK(listing(dir.path) == before);  // no LOCK, LOG or other file written
}

TEST_CASE("rocksdb: a corrupt SST file of a snapshot is kDataLoss naming it",
          "[state][rocksdb][snapshot]") {
  TempPath tmp;
  TempPath dir("snapshot");
  auto backend = open_backend(tmp.path);
  auto store = open_store(*backend, "op", KeyGroupRange{0, 63});
  const int id = value_or_fail(store->register_state({"v"}));
  write_random(*store, {id}, 1'000, 4);
  const StoreManifest snapshot = value_or_fail(store->snapshot(dir.path));
  const std::set<std::string> ssts = sst_files(snapshot);
  REQUIRE(ssts.size() == 1);
  const fs::path sst = fs::path(dir.path) / *ssts.begin();
  std::string bytes = read_file(sst);
  bytes[bytes.size() / 4] ^= 0x01;  // in a data block
  // A new file, not an edit in place: the snapshot's SST files are hard links
  // to the live database's.
  fs::remove(sst);
  std::ofstream(sst, std::ios::binary) << bytes;

  // Restored into the store that took it: no other store may own its key
  // groups while it is open, and it shows that the live state is intact.
  const Status s = store->restore(dir.path, snapshot);
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(s.message()), Contains(sst.filename().string()));
  std::string v;
  CHECK(value_or_fail(store->get(id, 1, "key-1", &v)));  // the live state is intact
}

TEST_CASE("rocksdb: a snapshot of the memory backend does not restore into RocksDB, nor back",
          "[state][rocksdb][snapshot]") {
  TempPath tmp;
  TempPath dir("snapshot");
  auto rocksdb = open_backend(tmp.path);
  auto memory = make_memory_state_backend().value();
  auto rocksdb_store = open_store(*rocksdb, "op", KeyGroupRange{0, 127});
  auto memory_store = open_store(*memory, "op", KeyGroupRange{0, 127});
  for (KeyedStateStore* store : {rocksdb_store.get(), memory_store.get()}) {
    REQUIRE(store->put(value_or_fail(store->register_state({"v"})), 1, "k", "v").ok());
  }
  const StoreManifest of_rocksdb = value_or_fail(rocksdb_store->snapshot(dir.path + "/r"));
  const StoreManifest of_memory = value_or_fail(memory_store->snapshot(dir.path + "/m"));
  CHECK(memory_store->restore(dir.path + "/r", of_rocksdb).code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(rocksdb_store->restore(dir.path + "/m", of_memory).code() ==
        absl::StatusCode::kFailedPrecondition);
}

// The resident set (VmRSS) of this process in bytes, from /proc/self/status.
// Sampled, not VmHWM: a peak of the process's earlier work would hide this
// test's.
std::uint64_t rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  FAIL("no VmRSS in /proc/self/status");
  return 0;
}

// State of several times the budget: the resident set grows by no more than
// the budget (memtables and block cache) plus a fixed allowance for what
// RocksDB keeps outside it (table readers, indexes, arenas), whatever the
// state's size.
TEST_CASE("rocksdb: peak RSS stays near the budget while state grows past it",
          "[memory][rocksdb][slow]") {
  constexpr std::uint64_t kBudget = std::uint64_t{16} << 20;
  constexpr std::uint64_t kAllowance = std::uint64_t{32} << 20;
  TempPath tmp;
  RocksDBStateBackendOptions options = options_for(tmp.path);
  options.memory_budget_bytes = kBudget;
  auto backend = make_rocksdb_state_backend(options).value();
  auto store = open_store(*backend, "op", KeyGroupRange{0, 127});
  KeyContext ctx;
  auto v = value_or_fail(make_value_state<std::string>(*store, ctx, "v"));
  const std::uint64_t start = rss_bytes();
  std::uint64_t peak = start;
  std::mt19937_64 rng(1);
  std::string value(200, '\0');
  constexpr std::int64_t kKeys = 1'000'000;  // ~200 MiB of values: 12x the budget
  for (std::int64_t i = 0; i < kKeys; ++i) {
    for (std::size_t j = 0; j < value.size(); j += 8) {
      const std::uint64_t r = rng();
      std::memcpy(&value[j], &r, 8);
    }
    set_current_key(ctx, i, 128);
    v.update(value);
    if (i % 20'000 == 0) peak = std::max(peak, rss_bytes());
  }
  std::int64_t found = 0;
  for (std::int64_t i = 0; i < 200'000; ++i) {
    set_current_key(ctx, static_cast<std::int64_t>(rng() % kKeys), 128);
    found += v.value().has_value() ? 1 : 0;
    if (i % 20'000 == 0) peak = std::max(peak, rss_bytes());
  }
  peak = std::max(peak, rss_bytes());
  const std::uint64_t size = value_or_fail(store->approximate_size_bytes());
  INFO("state " << size / (1 << 20) << " MiB on disk, budget " << kBudget / (1 << 20)
                << " MiB; RSS at start " << start / (1 << 20) << " MiB, peak "
                << peak / (1 << 20) << " MiB");
  CHECK(found == 200'000);
  CHECK(size > 4 * kBudget);  // the state really outgrew the budget
  CHECK(peak - start <= kBudget + kAllowance);
}

}  // namespace
}  // namespace meterstream::testing
