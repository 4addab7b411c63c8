// The state backend suite, continued: KeyedStateStore::snapshot() and
// restore(), run against every backend in state_backends.cpp.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/state/state.hpp"
#include "meterstream/state/state_backend.hpp"
#include "state_suite.hpp"

namespace meterstream::testing {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Kind = StateDescriptor::Kind;

constexpr KeyGroupRange kAllGroups{0, 127};

// An entry as for_each_in_key_group() yields it, with its state's name (ids
// may differ between stores).
struct Entry {
  std::string state;
  int key_group;
  std::string key;
  std::string stored;
  bool operator==(const Entry& o) const {
    return std::tie(state, key_group, key, stored) ==
           std::tie(o.state, o.key_group, o.key, o.stored);
  }
  bool operator<(const Entry& o) const {
    return std::tie(state, key_group, key, stored) <
           std::tie(o.state, o.key_group, o.key, o.stored);
  }
};

// Every entry of a store, sorted. No Catch2 macros: threads call it.
StatusOr<std::vector<Entry>> entries_of(KeyedStateStore& store) {
  std::vector<Entry> entries;
  const KeyGroupRange range = store.key_group_range();
  for (int kg = range.first; kg <= range.last; ++kg) {
    MS_RETURN_IF_ERROR(store.for_each_in_key_group(
        kg, [&](int state, std::string_view key, std::string_view stored) {
          entries.push_back(
              {store.descriptor(state)->name, kg, std::string(key), std::string(stored)});
          return true;
        }));
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

std::vector<Entry> dump(KeyedStateStore& store) { return value_or_fail(entries_of(store)); }

// The entries of `entries` in `range`.
std::vector<Entry> in_range(const std::vector<Entry>& entries, KeyGroupRange range) {
  std::vector<Entry> out;
  for (const Entry& e : entries) {
    if (range.contains(e.key_group)) out.push_back(e);
  }
  return out;
}

StoreManifest snapshot_or_fail(KeyedStateStore& store, const std::string& dir) {
  StoreManifest snapshot = value_or_fail(store.snapshot(dir));
  CHECK(snapshot.key_groups == store.key_group_range());
  CHECK(snapshot.backend == store.name());
  REQUIRE_FALSE(snapshot.files.empty());
  for (const StoreManifest::File& f : snapshot.files) {
    CHECK(fs::is_regular_file(fs::path(dir) / f.name));
  }
  return snapshot;
}

void restore_or_fail(KeyedStateStore& store, const std::string& dir,
                     const StoreManifest& snapshot) {
  const Status s = store.restore(dir, snapshot);
  INFO(s.ToString());
  REQUIRE(s.ok());
}

// Writes one value per key group of `range` into state "v" (registered when
// needed), tagged with `tag`.
void fill(KeyedStateStore& store, KeyGroupRange range, const std::string& tag) {
  const int id = value_or_fail(store.register_state({"v"}));
  for (int kg = range.first; kg <= range.last; ++kg) {
    REQUIRE(store.put(id, kg, "k" + std::to_string(kg % 3), tag + std::to_string(kg)).ok());
  }
}

TEST_CASE("a restored snapshot is the state at snapshot time, of every kind, TTLs included",
          "[state][snapshot]") {
  for_each_state_backend([](StateBackend& backend) {
    TempPath tmp("snapshot");
    const std::string dir = tmp.path + "/1";
    const Ttl ttl = Ttl(std::chrono::seconds(10)).event_time();
    std::vector<Entry> at_snapshot;
    StoreManifest snapshot;
    {
      auto store = open_store(backend, "op", kAllGroups);
      KeyContext ctx;
      auto value = value_or_fail(make_value_state<std::string>(*store, ctx, "value"));
      auto map = value_or_fail(make_map_state<std::string, int>(*store, ctx, "map"));
      auto list = value_or_fail(make_list_state<int>(*store, ctx, "list"));
      auto avg =
          value_or_fail(make_aggregating_state<double>(*store, ctx, "avg", Average{}));
      auto timed = value_or_fail(make_value_state<int>(*store, ctx, "timed", ttl));
      auto timed_list = value_or_fail(make_list_state<int>(*store, ctx, "timed_list", ttl));
      store->advance_event_time(1'000);
      for (int i = 0; i < 40; ++i) {
        set_key(ctx, (i * 37) % 128, "meter-" + std::to_string(i));
        value.update("v" + std::to_string(i));
        map.put("a", i);
        map.put("b", -i);
        for (int j = 0; j <= i % 4; ++j) list.add(j);  // appends: RocksDB merges
        avg.add(i);
        avg.add(2.0 * i);
        timed.update(i);
        timed_list.add(i);
        timed_list.add(i + 1);
      }
      store->advance_event_time(5'000);
      set_key(ctx, 37, "meter-1");
      timed.update(100);  // expires at 15'000, the others at 11'000
      at_snapshot = dump(*store);
      CHECK(at_snapshot.size() == 40 * 7);

      snapshot = snapshot_or_fail(*store, dir);
      CHECK(store->snapshot(dir).status().code() == absl::StatusCode::kAlreadyExists);

      // Later changes do not reach the snapshot.
      set_key(ctx, 37, "meter-1");
      value.update("changed");
      map.remove("a");
      list.add(99);
      avg.add(1000.0);
      set_key(ctx, 0, "meter-0");
      list.clear();
      set_key(ctx, 5, "new");
      value.update("new");
      REQUIRE(store->clear_key_group(74).ok());
      CHECK(dump(*store) != at_snapshot);
    }

    auto restored = open_store(backend, "op", kAllGroups);
    restore_or_fail(*restored, dir, snapshot);
    CHECK(restored->num_states() == 6);  // registered by the restore
    CHECK(dump(*restored) == at_snapshot);

    // The typed API finds the same state.
    KeyContext ctx;
    auto value = value_or_fail(make_value_state<std::string>(*restored, ctx, "value"));
    auto map = value_or_fail(make_map_state<std::string, int>(*restored, ctx, "map"));
    auto list = value_or_fail(make_list_state<int>(*restored, ctx, "list"));
    auto avg = value_or_fail(make_aggregating_state<double>(*restored, ctx, "avg", Average{}));
    auto timed = value_or_fail(make_value_state<int>(*restored, ctx, "timed", ttl));
    CHECK(restored->num_states() == 6);
    set_key(ctx, 37, "meter-1");
    CHECK(value.value() == std::string("v1"));
    CHECK(map.get("a") == 1);
    CHECK(list.get() == std::vector<int>{0, 1});
    CHECK(avg.get() == Approx(1.5));
    set_key(ctx, 0, "meter-0");
    CHECK(list.get() == std::vector<int>{0});
    // TTL values kept their expiries.
    restored->advance_event_time(10'999);
    set_key(ctx, 37, "meter-1");
    CHECK(timed.value() == 100);
    set_key(ctx, 74, "meter-2");
    CHECK(timed.value() == 2);
    restored->advance_event_time(11'000);
    CHECK_FALSE(timed.value().has_value());
    set_key(ctx, 37, "meter-1");
    CHECK(timed.value() == 100);
    restored->advance_event_time(15'000);
    CHECK_FALSE(timed.value().has_value());
  });
}

TEST_CASE("restore rescales: snapshots of two ranges into one store, and back into three",
          "[state][snapshot]") {
  for_each_state_backend([](StateBackend& backend) {
    TempPath tmp("snapshot");
    const KeyGroupRange low{0, 63};
    const KeyGroupRange high{64, 127};
    StoreManifest low_snapshot, high_snapshot, all_snapshot;
    std::vector<Entry> expected;
    {
      auto a = open_store(backend, "op", low);
      auto b = open_store(backend, "op", high);
      fill(*a, low, "a");
      fill(*b, high, "old-b");
      low_snapshot = snapshot_or_fail(*a, tmp.path + "/low");
      // RocksDB: a's checkpoint holds the whole DB, b's key groups as they were
      // then; restoring it must not bring them back.
      fill(*b, high, "b");
      REQUIRE(b->remove(0, 64, "k1").ok());
      high_snapshot = snapshot_or_fail(*b, tmp.path + "/high");
      expected = dump(*a);
      const std::vector<Entry> b_entries = dump(*b);
      expected.insert(expected.end(), b_entries.begin(), b_entries.end());
      std::sort(expected.begin(), expected.end());
    }
    {
      auto all = open_store(backend, "op", kAllGroups);
      restore_or_fail(*all, tmp.path + "/high", high_snapshot);
      restore_or_fail(*all, tmp.path + "/low", low_snapshot);
      CHECK(dump(*all) == expected);
      all_snapshot = snapshot_or_fail(*all, tmp.path + "/all");
    }
    // Into three stores that split the ranges differently: each gets exactly
    // its own key groups, from whichever snapshots have them.
    for (const KeyGroupRange range :
         {KeyGroupRange{0, 31}, KeyGroupRange{32, 95}, KeyGroupRange{96, 127}}) {
      auto from_one = open_store(backend, "op", range);
      restore_or_fail(*from_one, tmp.path + "/all", all_snapshot);
      CHECK(dump(*from_one) == in_range(expected, range));
      from_one.reset();
      auto from_two = open_store(backend, "op", range);
      restore_or_fail(*from_two, tmp.path + "/low", low_snapshot);
      restore_or_fail(*from_two, tmp.path + "/high", high_snapshot);
      CHECK(dump(*from_two) == in_range(expected, range));
    }
  });
}

TEST_CASE("restore rejects a snapshot of another backend, operator or state declaration",
          "[state][snapshot]") {
  for_each_state_backend([](StateBackend& backend) {
    TempPath tmp("snapshot");
    StoreManifest snapshot;
    {
      auto store = open_store(backend, "op", kAllGroups);
      fill(*store, KeyGroupRange{0, 3}, "x");
      REQUIRE(store->register_state({"m", Kind::kMap}).ok());
      snapshot = snapshot_or_fail(*store, tmp.path);
    }
    auto store = open_store(backend, "op", kAllGroups);

    StoreManifest other_backend = snapshot;
    other_backend.backend = std::string(backend.name()) == "memory" ? "rocksdb" : "memory";
    Status s = store->restore(tmp.path, other_backend);
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(s.message()), Contains(other_backend.backend));

    auto other_operator = open_store(backend, "other-op", kAllGroups);
    s = other_operator->restore(tmp.path, snapshot);
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(s.message()), Contains("'op'"));

    auto other_parallelism = open_store(backend, "op", KeyGroupRange{128, 255}, 256);
    CHECK(other_parallelism->restore(tmp.path, snapshot).code() ==
          absl::StatusCode::kFailedPrecondition);

    REQUIRE(store->register_state({"m", Kind::kList}).ok());
    s = store->restore(tmp.path, snapshot);
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(s.message()), Contains("'m'") && Contains("list"));
  });
}

TEST_CASE("restore of a snapshot with a missing or corrupt file is kDataLoss naming it",
          "[state][snapshot]") {
  for_each_state_backend([](StateBackend& backend) {
    TempPath tmp("snapshot");
    auto store = open_store(backend, "op", KeyGroupRange{0, 63});
    fill(*store, KeyGroupRange{0, 63}, "x");
    const StoreManifest snapshot = snapshot_or_fail(*store, tmp.path + "/0");
    store.reset();
    auto target = open_store(backend, "op", kAllGroups);

    int n = 0;
    for (const StoreManifest::File& file : snapshot.files) {
      const std::string dir = tmp.path + "/" + std::to_string(++n);
      fs::copy(tmp.path + "/0", dir);
      fs::remove(fs::path(dir) / file.name);
      const Status s = target->restore(dir, snapshot);
      INFO(file.name << ": " << s.ToString());
      CHECK(s.code() == absl::StatusCode::kDataLoss);
      CHECK_THAT(std::string(s.message()), Contains(file.name));
    }

    // The backend's own file (memory: the state; RocksDB: the descriptors),
    // corrupted and truncated.
    for (const StoreManifest::File& file : snapshot.files) {
      if (fs::path(file.name).extension() != ".bin") continue;
      for (const bool truncate : {false, true}) {
        const std::string dir = tmp.path + "/" + std::to_string(++n);
        fs::copy(tmp.path + "/0", dir);
        const fs::path path = fs::path(dir) / file.name;
        std::string bytes;
        {
          std::ifstream in(path, std::ios::binary);
          bytes.assign(std::istreambuf_iterator<char>(in), {});
        }
        REQUIRE(bytes.size() > 20);
        if (truncate) {
          bytes.resize(bytes.size() / 2);
        } else {
          bytes[bytes.size() / 2] ^= 0x20;
        }
        fs::remove(path);  // not in place: RocksDB's SST files are hard links
        std::ofstream(path, std::ios::binary) << bytes;
        const Status s = target->restore(dir, snapshot);
        INFO(file.name << (truncate ? " truncated: " : " corrupt: ") << s.ToString());
        CHECK(s.code() == absl::StatusCode::kDataLoss);
        CHECK_THAT(std::string(s.message()), Contains(file.name));
      }
    }
    CHECK(dump(*target).empty());
    restore_or_fail(*target, tmp.path + "/0", snapshot);  // the intact copy
    CHECK(dump(*target).size() == 64);
  });
}

TEST_CASE("stores of one backend snapshot concurrently", "[state][snapshot]") {
  for_each_state_backend([](StateBackend& backend) {
    TempPath tmp("snapshot");
    constexpr int kRounds = 5;
    const std::vector<KeyGroupRange> ranges = {{0, 63}, {64, 127}};
    struct Taken {
      std::string dir;
      StatusOr<StoreManifest> snapshot;
      StatusOr<std::vector<Entry>> entries;
    };
    std::vector<std::vector<Taken>> taken(ranges.size());
    {
      std::vector<std::unique_ptr<KeyedStateStore>> stores;
      for (const KeyGroupRange& r : ranges) stores.push_back(open_store(backend, "op", r));
      std::vector<std::thread> threads;
      for (std::size_t w = 0; w < ranges.size(); ++w) {
        threads.emplace_back([&, w] {
          KeyedStateStore& store = *stores[w];
          const int id = store.register_state({"v"}).value();
          for (int round = 0; round < kRounds; ++round) {
            for (int i = 0; i < 200; ++i) {
              const int kg = ranges[w].first + i % 64;
              store.put(id, kg, std::to_string(i), std::to_string(round)).IgnoreError();
            }
            Taken t{tmp.path + "/" + std::to_string(w) + "-" + std::to_string(round),
                    absl::UnknownError(""), entries_of(store)};
            t.snapshot = store.snapshot(t.dir);
            taken[w].push_back(std::move(t));
          }
        });
      }
      for (std::thread& t : threads) t.join();
    }
    for (std::size_t w = 0; w < ranges.size(); ++w) {
      for (const Taken& t : taken[w]) {
        INFO(t.dir << ": " << t.snapshot.status().ToString());
        REQUIRE(t.snapshot.ok());
        auto restored = open_store(backend, "op", ranges[w]);
        restore_or_fail(*restored, t.dir, *t.snapshot);
        CHECK(dump(*restored) == value_or_fail(t.entries));
      }
    }
  });
}

}  // namespace
}  // namespace meterstream::testing
