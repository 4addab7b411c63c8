// The state backend suite: byte-level KeyedStateStore contract and the typed
// state API, run against every backend in state_backends.cpp.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/state/state.hpp"
#include "meterstream/state/state_backend.hpp"
#include "state_suite.hpp"

namespace meterstream::testing {
namespace {

using Catch::Matchers::Contains;
using Kind = StateDescriptor::Kind;

constexpr KeyGroupRange kAllGroups{0, 127};

TEST_CASE("value state is isolated per key, overwritten by update and removed by clear",
          "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto count = value_or_fail(make_value_state<std::int64_t>(*store, ctx, "count"));

    set_current_key(ctx, std::string("meter-1"), 128);
    CHECK_FALSE(count.value().has_value());
    count.update(1);
    count.update(2);
    set_current_key(ctx, std::string("meter-2"), 128);
    CHECK_FALSE(count.value().has_value());
    count.update(20);

    set_current_key(ctx, std::string("meter-1"), 128);
    CHECK(count.value() == 2);
    count.clear();
    CHECK_FALSE(count.value().has_value());
    set_current_key(ctx, std::string("meter-2"), 128);
    CHECK(count.value() == 20);
  });
}

TEST_CASE("value state holds strings and composite values", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto last = value_or_fail(
        make_value_state<std::pair<std::string, std::vector<double>>>(*store, ctx, "last"));
    set_current_key(ctx, std::int64_t{42}, 128);
    last.update({"kWh", {1.5, -2.0}});
    auto v = last.value();
    REQUIRE(v.has_value());
    CHECK(v->first == "kWh");
    CHECK(v->second == std::vector<double>{1.5, -2.0});
  });
}

TEST_CASE("map state puts, gets, removes and clears the entries of the current key",
          "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto map = value_or_fail(make_map_state<std::string, double>(*store, ctx, "by_tariff"));

    set_current_key(ctx, std::string("meter-1"), 128);
    CHECK(map.empty());
    map.put("peak", 1.0);
    map.put("offpeak", 2.0);
    map.put("peak", 3.0);
    CHECK(map.get("peak") == 3.0);
    CHECK(map.get("offpeak") == 2.0);
    CHECK_FALSE(map.get("night").has_value());
    CHECK(map.contains("peak"));
    CHECK_FALSE(map.contains("night"));
    CHECK_FALSE(map.empty());

    map.remove("peak");
    map.remove("never-there");
    CHECK_FALSE(map.contains("peak"));
    CHECK(map.get("offpeak") == 2.0);

    set_current_key(ctx, std::string("meter-2"), 128);
    CHECK(map.empty());
    map.put("peak", 9.0);

    set_current_key(ctx, std::string("meter-1"), 128);
    map.clear();
    CHECK(map.empty());
    set_current_key(ctx, std::string("meter-2"), 128);
    CHECK(map.get("peak") == 9.0);
  });
}

TEST_CASE("map state iterates in user key order", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    set_current_key(ctx, std::string("meter-1"), 128);

    SECTION("signed integer keys in numeric order") {
      auto map = value_or_fail(make_map_state<std::int64_t, int>(*store, ctx, "m"));
      const std::vector<std::int64_t> keys = {300, -1, 0, 255, -300, 1, 256,
                                              INT64_MIN, INT64_MAX};
      for (std::int64_t k : keys) map.put(k, static_cast<int>(k % 1000));
      std::vector<std::int64_t> seen;
      map.for_each([&](const std::int64_t& k, const int& v) {
        CHECK(v == static_cast<int>(k % 1000));
        seen.push_back(k);
      });
      CHECK(seen == std::vector<std::int64_t>{INT64_MIN, -300, -1, 0, 1, 255, 256, 300,
                                              INT64_MAX});
    }
    SECTION("floating point keys in numeric order") {
      auto map = value_or_fail(make_map_state<double, int>(*store, ctx, "m"));
      for (double k : {2.5, -0.5, 0.0, -100.0, 1e9, 0.25}) map.put(k, 0);
      std::vector<double> seen;
      map.for_each([&](const double& k, const int&) { seen.push_back(k); });
      CHECK(seen == std::vector<double>{-100.0, -0.5, 0.0, 0.25, 2.5, 1e9});
    }
    SECTION("string keys in byte order") {
      auto map = value_or_fail(make_map_state<std::string, int>(*store, ctx, "m"));
      for (const char* k : {"b", "ab", "a", "", "ba"}) map.put(k, 0);
      std::vector<std::string> seen;
      map.for_each([&](const std::string& k, const int&) { seen.push_back(k); });
      CHECK(seen == std::vector<std::string>{"", "a", "ab", "b", "ba"});
    }
    SECTION("a callback returning false stops the iteration") {
      auto map = value_or_fail(make_map_state<std::uint32_t, int>(*store, ctx, "m"));
      for (std::uint32_t k = 0; k < 10; ++k) map.put(k, 0);
      std::vector<std::uint32_t> seen;
      map.for_each([&](const std::uint32_t& k, const int&) {
        seen.push_back(k);
        return k < 2;
      });
      CHECK(seen == std::vector<std::uint32_t>{0, 1, 2});
    }
  });
}

TEST_CASE("map state entries do not leak between keys whose bytes are prefixes",
          "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto map = value_or_fail(make_map_state<std::string, int>(*store, ctx, "m"));

    // Same key group on purpose: only the key bytes tell the entries apart.
    set_key(ctx, 5, "a");
    map.put("b", 1);
    set_key(ctx, 5, "ab");
    map.put("x", 2);
    set_key(ctx, 5, "");
    map.put("ab", 3);

    set_key(ctx, 5, "a");
    std::vector<std::string> seen;
    map.for_each([&](const std::string& k, const int&) { seen.push_back(k); });
    CHECK(seen == std::vector<std::string>{"b"});
    CHECK_FALSE(map.contains("bx"));
    map.clear();

    set_key(ctx, 5, "ab");
    CHECK(map.get("x") == 2);
    set_key(ctx, 5, "");
    CHECK(map.get("ab") == 3);
    seen.clear();
    map.for_each([&](const std::string& k, const int&) { seen.push_back(k); });
    CHECK(seen == std::vector<std::string>{"ab"});
  });
}

TEST_CASE("list state adds, gets, updates and clears", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto list = value_or_fail(make_list_state<std::string>(*store, ctx, "events"));

    set_current_key(ctx, std::string("meter-1"), 128);
    CHECK(list.get().empty());
    list.add("a");
    list.add("");
    list.add_all({"b", "c"});
    CHECK(list.get() == std::vector<std::string>{"a", "", "b", "c"});

    set_current_key(ctx, std::string("meter-2"), 128);
    CHECK(list.get().empty());
    list.update({"x", "y"});
    CHECK(list.get() == std::vector<std::string>{"x", "y"});
    list.add("z");
    CHECK(list.get() == std::vector<std::string>{"x", "y", "z"});
    list.update({});
    CHECK(list.get().empty());

    set_current_key(ctx, std::string("meter-1"), 128);
    list.clear();
    CHECK(list.get().empty());
  });
}

TEST_CASE("aggregating state computes an average per key", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto avg = value_or_fail(make_aggregating_state<double>(*store, ctx, "avg", Average{}));

    set_current_key(ctx, std::string("meter-1"), 128);
    CHECK_FALSE(avg.get().has_value());
    avg.add(1.0);
    avg.add(2.0);
    avg.add(6.0);
    set_current_key(ctx, std::string("meter-2"), 128);
    avg.add(10.0);

    set_current_key(ctx, std::string("meter-1"), 128);
    CHECK(avg.get() == Approx(3.0));
    avg.merge({11.0, 1});
    CHECK(avg.get() == Approx(5.0));
    CHECK(avg.accumulator() == Average::accumulator_type{20.0, 4});
    avg.clear();
    CHECK_FALSE(avg.get().has_value());

    set_current_key(ctx, std::string("meter-2"), 128);
    CHECK(avg.get() == Approx(10.0));
  });
}

TEST_CASE("the same key bytes in different key groups are distinct state", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", KeyGroupRange{10, 19}, 32);
    KeyContext ctx;
    auto value = value_or_fail(make_value_state<int>(*store, ctx, "v"));
    auto map = value_or_fail(make_map_state<int, int>(*store, ctx, "m"));

    set_key(ctx, 10, "k");
    value.update(1);
    map.put(1, 1);
    set_key(ctx, 19, "k");
    CHECK_FALSE(value.value().has_value());
    CHECK(map.empty());
    value.update(2);

    set_key(ctx, 10, "k");
    CHECK(value.value() == 1);
    CHECK(map.get(1) == 1);
  });
}

TEST_CASE("a key group outside the store's range is rejected", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", KeyGroupRange{10, 19}, 32);
    const int id = value_or_fail(store->register_state({"counts", Kind::kValue}));

    for (int kg : {9, 20, -1}) {
      std::string v;
      StatusOr<bool> got = store->get(id, kg, "k", &v);
      CHECK(got.status().code() == absl::StatusCode::kInvalidArgument);
      CHECK_THAT(std::string(got.status().message()), Contains("counts"));
      CHECK_THAT(std::string(got.status().message()),
                 Contains("key group " + std::to_string(kg)));
      CHECK(store->put(id, kg, "k", "v").code() == absl::StatusCode::kInvalidArgument);
      CHECK(store->append(id, kg, "k", "v").code() == absl::StatusCode::kInvalidArgument);
      CHECK(store->remove(id, kg, "k").code() == absl::StatusCode::kInvalidArgument);
      CHECK(store->remove_prefix(id, kg, "").code() == absl::StatusCode::kInvalidArgument);
      CHECK(store->for_each(id, kg, "", [](std::string_view, std::string_view) {
              return true;
            }).code() == absl::StatusCode::kInvalidArgument);
      CHECK(store->for_each_in_key_group(kg, [](int, std::string_view, std::string_view) {
              return true;
            }).code() == absl::StatusCode::kInvalidArgument);
      CHECK(store->clear_key_group(kg).code() == absl::StatusCode::kInvalidArgument);
    }

    std::string v;
    CHECK(store->get(7, 10, "k", &v).status().code() ==
          absl::StatusCode::kInvalidArgument);

    // Through the typed API: nothing throws; the error is recorded in the key
    // context, first one wins, and later accesses do nothing.
    KeyContext ctx;
    auto counts = value_or_fail(make_value_state<int>(*store, ctx, "counts"));
    set_key(ctx, 20, "k");
    CHECK_NOTHROW(counts.update(1));
    CHECK(ctx.error.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(ctx.error.message()), Contains("counts") && Contains("key group 20"));
    const Status first = ctx.error;
    CHECK_FALSE(counts.value().has_value());
    CHECK(ctx.error == first);
    // No current key set at all.
    KeyContext unset;
    auto unset_counts = value_or_fail(make_value_state<int>(*store, unset, "counts"));
    CHECK_NOTHROW(unset_counts.value());
    CHECK_FALSE(unset.error.ok());
  });
}

TEST_CASE("open_keyed_store rejects invalid ranges and overlapping stores of an operator",
          "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    CHECK(backend.name() != nullptr);
    auto code = [&](std::string_view op, KeyGroupRange range, int max_parallelism) {
      return backend.open_keyed_store(op, range, max_parallelism).status().code();
    };
    CHECK(code("op", KeyGroupRange{0, 128}, 128) == absl::StatusCode::kInvalidArgument);
    CHECK(code("op", KeyGroupRange{-1, 3}, 128) == absl::StatusCode::kInvalidArgument);
    CHECK(code("op", KeyGroupRange{5, 4}, 128) == absl::StatusCode::kInvalidArgument);
    CHECK(code("op", KeyGroupRange{0, 0}, 0) == absl::StatusCode::kInvalidArgument);
    CHECK(code("", KeyGroupRange{0, 3}, 128) == absl::StatusCode::kInvalidArgument);

    {
      auto first = open_store(backend, "op", KeyGroupRange{0, 63});
      CHECK(first->key_group_range() == KeyGroupRange{0, 63});
      CHECK(first->max_parallelism() == 128);
      CHECK(first->operator_id() == "op");
      CHECK(code("op", KeyGroupRange{63, 64}, 128) == absl::StatusCode::kAlreadyExists);
      // Disjoint ranges and other operators are fine.
      auto second = open_store(backend, "op", KeyGroupRange{64, 127});
      auto other = open_store(backend, "other-op", KeyGroupRange{0, 127});
    }
    // Closing a store frees its range; the reopened store starts empty.
    {
      auto store = open_store(backend, "op", KeyGroupRange{0, 127});
      const int id = value_or_fail(store->register_state({"v", Kind::kValue}));
      REQUIRE(store->put(id, 3, "k", "v").ok());
    }
    auto store = open_store(backend, "op", KeyGroupRange{0, 127});
    const int id = value_or_fail(store->register_state({"v", Kind::kValue}));
    std::string v;
    CHECK(value_or_fail(store->get(id, 3, "k", &v)) == false);
  });
}

TEST_CASE("register_state is idempotent and rejects another kind for a name", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    const int a = value_or_fail(store->register_state({"a", Kind::kValue}));
    const int b = value_or_fail(store->register_state({"b", Kind::kMap}));
    CHECK(a != b);
    CHECK(value_or_fail(store->register_state({"a", Kind::kValue})) == a);
    CHECK(store->num_states() == 2);
    REQUIRE(store->descriptor(b) != nullptr);
    CHECK(store->descriptor(b)->name == "b");
    CHECK(store->descriptor(b)->kind == Kind::kMap);
    CHECK(store->descriptor(2) == nullptr);

    StatusOr<int> mismatch = store->register_state({"a", Kind::kList});
    CHECK(mismatch.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(mismatch.status().message()),
               Contains("'a'") && Contains("value") && Contains("list"));
    CHECK(store->register_state({"", Kind::kValue}).status().code() ==
          absl::StatusCode::kInvalidArgument);

    KeyContext ctx;
    CHECK_FALSE(make_map_state<int, int>(*store, ctx, "a").ok());
    CHECK(make_value_state<int>(*store, ctx, "a").ok());
  });
}

TEST_CASE("a corrupt stored value is a kDataLoss in the key context naming the state",
          "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    set_key(ctx, 42, "meter-1");
    auto check_error = [&ctx](const std::string& state) {
      CHECK(ctx.error.code() == absl::StatusCode::kDataLoss);
      CHECK_THAT(std::string(ctx.error.message()),
                 Contains("'" + state + "'") && Contains("key group 42"));
    };

    SECTION("value state") {
      auto value = value_or_fail(make_value_state<std::int64_t>(*store, ctx, "count"));
      REQUIRE(store->put(value.state_id(), 42, "meter-1", "abc").ok());
      CHECK_FALSE(value.value().has_value());
      check_error("count");
      // Nothing is written on top of the failure.
      value.update(7);
      std::string raw;
      REQUIRE(store->get(value.state_id(), 42, "meter-1", &raw).ok());
      CHECK(raw == "abc");
    }
    SECTION("map state") {
      auto map = value_or_fail(make_map_state<std::int32_t, double>(*store, ctx, "m"));
      map.put(1, 1.0);
      // A user key of the wrong size under this key's prefix.
      std::string key = "\x07meter-1";
      key += "xy";
      REQUIRE(store->put(map.state_id(), 42, key, "12345678").ok());
      map.for_each([](const std::int32_t&, const double&) {});
      check_error("m");
      CHECK_THAT(std::string(ctx.error.message()), Contains("map key"));
    }
    SECTION("list state") {
      auto list = value_or_fail(make_list_state<std::string>(*store, ctx, "events"));
      list.add("ok");
      REQUIRE(store->append(list.state_id(), 42, "meter-1", "\x05zz").ok());
      CHECK(list.get().empty());
      check_error("events");
    }
    SECTION("aggregating state") {
      auto avg = value_or_fail(make_aggregating_state<double, Average>(*store, ctx, "avg"));
      REQUIRE(store->put(avg.state_id(), 42, "meter-1", "\x01").ok());
      CHECK_NOTHROW(avg.add(1.0));
      check_error("avg");
      CHECK_FALSE(avg.get().has_value());
      std::string raw;
      REQUIRE(store->get(avg.state_id(), 42, "meter-1", &raw).ok());
      CHECK(raw == "\x01");  // add() did not overwrite it
    }
  });
}

TEST_CASE("stores of different operators do not see each other's state", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto a = open_store(backend, "op-a", kAllGroups);
    auto b = open_store(backend, "op-b", kAllGroups);
    KeyContext ctx;
    set_current_key(ctx, std::string("meter-1"), 128);
    auto va = value_or_fail(make_value_state<int>(*a, ctx, "v"));
    auto vb = value_or_fail(make_value_state<int>(*b, ctx, "v"));
    auto ma = value_or_fail(make_map_state<int, int>(*a, ctx, "m"));
    auto mb = value_or_fail(make_map_state<int, int>(*b, ctx, "m"));
    va.update(1);
    ma.put(1, 1);
    CHECK_FALSE(vb.value().has_value());
    CHECK(mb.empty());
    vb.update(2);
    CHECK(va.value() == 1);
  });
}

TEST_CASE("byte-level scans are ordered, bounded by the prefix and stoppable", "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    const int id = value_or_fail(store->register_state({"s", Kind::kMap}));
    for (const char* k : {"b2", "a", "b1", "b", "c", "b\xff"}) {
      REQUIRE(store->put(id, 1, k, std::string("v-") + k).ok());
    }
    std::vector<std::string> seen;
    auto collect = [&](std::string_view key, std::string_view value) {
      CHECK(value == "v-" + std::string(key));
      seen.emplace_back(key);
      return true;
    };
    REQUIRE(store->for_each(id, 1, "b", collect).ok());
    CHECK(seen == std::vector<std::string>{"b", "b1", "b2", "b\xff"});

    seen.clear();
    REQUIRE(store->for_each(id, 1, "", [&](std::string_view key, std::string_view) {
                   seen.emplace_back(key);
                   return seen.size() < 2;
                 }).ok());
    CHECK(seen == std::vector<std::string>{"a", "b"});

    REQUIRE(store->append(id, 1, "a", "!").ok());
    std::string v;
    CHECK(value_or_fail(store->get(id, 1, "a", &v)));
    CHECK(v == "v-a!");

    REQUIRE(store->remove_prefix(id, 1, "b").ok());
    seen.clear();
    REQUIRE(store->for_each(id, 1, "", [&](std::string_view key, std::string_view) {
                   seen.emplace_back(key);
                   return true;
                 }).ok());
    CHECK(seen == std::vector<std::string>{"a", "c"});
    REQUIRE(store->remove(id, 1, "a").ok());
    REQUIRE(store->remove(id, 1, "a").ok());
    CHECK_FALSE(value_or_fail(store->get(id, 1, "a", &v)));
  });
}

TEST_CASE("a key group's state can be enumerated, cleared and restored into a new store",
          "[state]") {
  for_each_state_backend([](StateBackend& backend) {
    struct Entry {
      int state;
      std::string key;
      std::string value;
      bool operator==(const Entry& o) const {
        return state == o.state && key == o.key && value == o.value;
      }
    };
    auto dump = [](KeyedStateStore& store, int kg) {
      std::vector<Entry> entries;
      REQUIRE(store.for_each_in_key_group(
                       kg,
                       [&](int state, std::string_view key, std::string_view value) {
                         entries.push_back({state, std::string(key), std::string(value)});
                         return true;
                       })
                  .ok());
      return entries;
    };

    std::vector<Entry> snapshot;
    {
      auto store = open_store(backend, "op", KeyGroupRange{0, 7}, 8);
      KeyContext ctx;
      auto value = value_or_fail(make_value_state<int>(*store, ctx, "v"));
      auto map = value_or_fail(make_map_state<int, int>(*store, ctx, "m"));
      auto list = value_or_fail(make_list_state<int>(*store, ctx, "l"));
      for (int kg : {3, 4}) {
        set_key(ctx, kg, "k");
        value.update(kg);
        map.put(1, kg);
        map.put(2, kg);
        list.add(kg);
      }
      snapshot = dump(*store, 3);
      CHECK(snapshot.size() == 4);
      for (const Entry& e : snapshot) CHECK(e.state < store->num_states());
      CHECK(std::is_sorted(snapshot.begin(), snapshot.end(),
                           [](const Entry& x, const Entry& y) { return x.state < y.state; }));

      REQUIRE(store->clear_key_group(3).ok());
      CHECK(dump(*store, 3).empty());
      CHECK(dump(*store, 4).size() == 4);
    }

    // Restore key group 3 into a store of another worker layout.
    auto restored = open_store(backend, "op", KeyGroupRange{2, 3}, 8);
    KeyContext ctx;
    auto value = value_or_fail(make_value_state<int>(*restored, ctx, "v"));
    auto map = value_or_fail(make_map_state<int, int>(*restored, ctx, "m"));
    auto list = value_or_fail(make_list_state<int>(*restored, ctx, "l"));
    for (const Entry& e : snapshot) {
      REQUIRE(restored->put_stored(e.state, 3, e.key, e.value).ok());
    }
    set_key(ctx, 3, "k");
    CHECK(value.value() == 3);
    CHECK(map.get(2) == 3);
    CHECK(list.get() == std::vector<int>{3});
    CHECK(dump(*restored, 3) == snapshot);
  });
}

// ---- State TTL ---------------------------------------------------------------

TEST_CASE("event-time TTL: a value expires once the watermark reaches its expiry",
          "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto last = value_or_fail(make_value_state<std::int64_t>(
        *store, ctx, "last", Ttl(std::chrono::seconds(10)).event_time()));
    auto plain = value_or_fail(make_value_state<std::int64_t>(*store, ctx, "plain"));
    CHECK(store->current_time(TimeDomain::kEventTime) == kMinTimestamp);

    // Before the first watermark event time is unknown: no expiry yet.
    set_current_key(ctx, std::string("early"), 128);
    last.update(0);

    store->advance_event_time(1'000);
    set_current_key(ctx, std::string("meter-1"), 128);
    last.update(7);
    plain.update(7);
    store->advance_event_time(500);  // ignored: not larger
    CHECK(store->current_time(TimeDomain::kEventTime) == 1'000);
    store->advance_event_time(10'999);
    CHECK(last.value() == 7);
    store->advance_event_time(11'000);
    CHECK_FALSE(last.value().has_value());
    CHECK(plain.value() == 7);
    // Written again, it lives again.
    last.update(8);
    store->advance_event_time(20'999);
    CHECK(last.value() == 8);

    set_current_key(ctx, std::string("early"), 128);
    store->advance_event_time(1'000'000'000);
    CHECK(last.value() == 0);
  });
}

TEST_CASE("event-time TTL: each store has its own clock, another operator's final "
          "watermark expires nothing of it",
          "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    const Ttl ttl = Ttl(std::chrono::seconds(10)).event_time();
    auto finished = open_store(backend, "finished-op", kAllGroups);
    auto running = open_store(backend, "running-op", kAllGroups);
    KeyContext ctx;
    auto mine = value_or_fail(make_value_state<std::int64_t>(*running, ctx, "v", ttl));
    running->advance_event_time(1'000);
    set_current_key(ctx, std::string("meter-1"), 128);
    mine.update(7);
    // The other operator reaches the end of its input.
    finished->advance_event_time(kMaxTimestamp);
    CHECK(finished->current_time(TimeDomain::kEventTime) == kMaxTimestamp);
    CHECK(running->current_time(TimeDomain::kEventTime) == 1'000);
    CHECK(mine.value() == 7);
    REQUIRE(finished->purge_expired().ok());
    REQUIRE(running->purge_expired().ok());
    CHECK(mine.value() == 7);
    // Its own clock still expires it.
    running->advance_event_time(11'000);
    CHECK_FALSE(mine.value().has_value());
  });
}

TEST_CASE("processing-time TTL: a value expires after its TTL on the system clock",
          "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto v = value_or_fail(
        make_value_state<std::string>(*store, ctx, "v", Ttl(std::chrono::milliseconds(50))));
    set_current_key(ctx, std::string("meter-1"), 128);
    v.update("x");
    CHECK(v.value() == std::string("x"));
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    CHECK_FALSE(v.value().has_value());
    // The expired value was removed, not just hidden.
    CHECK(value_or_fail(store->approximate_size_bytes()) < 1000);
    std::string raw;
    CHECK_FALSE(value_or_fail(store->get(v.state_id(), ctx.key_group, ctx.key, &raw)));
  });
}

TEST_CASE("refresh_on_read restarts a value's TTL when it is read", "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    const Ttl ttl = Ttl(std::chrono::seconds(10)).event_time();
    auto refreshed =
        value_or_fail(make_value_state<int>(*store, ctx, "refreshed", ttl.refresh_on_read()));
    auto kept = value_or_fail(make_value_state<int>(*store, ctx, "kept", ttl));
    set_current_key(ctx, std::string("meter-1"), 128);
    store->advance_event_time(1'000);
    refreshed.update(1);
    kept.update(2);
    store->advance_event_time(9'000);
    CHECK(refreshed.value() == 1);  // now expires at 19'000
    CHECK(kept.value() == 2);       // still expires at 11'000
    store->advance_event_time(15'000);
    CHECK(refreshed.value() == 1);
    CHECK_FALSE(kept.value().has_value());
    store->advance_event_time(24'999);
    CHECK(refreshed.value() == 1);  // read at 15'000: expires at 25'000
    store->advance_event_time(35'000);
    CHECK_FALSE(refreshed.value().has_value());
  });
}

TEST_CASE("map state TTL applies per entry", "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto map = value_or_fail(make_map_state<std::string, int>(
        *store, ctx, "m", Ttl(std::chrono::seconds(10)).event_time()));
    set_current_key(ctx, std::string("meter-1"), 128);
    store->advance_event_time(1'000);
    map.put("a", 1);
    store->advance_event_time(6'000);
    map.put("b", 2);
    store->advance_event_time(12'000);
    CHECK_FALSE(map.get("a").has_value());
    CHECK_FALSE(map.contains("a"));
    CHECK(map.get("b") == 2);
    std::vector<std::string> seen;
    map.for_each([&](const std::string& k, const int&) { seen.push_back(k); });
    CHECK(seen == std::vector<std::string>{"b"});
    CHECK_FALSE(map.empty());
    map.put("a", 3);
    store->advance_event_time(16'000);
    CHECK(map.get("a") == 3);
    CHECK_FALSE(map.contains("b"));
    store->advance_event_time(22'000);
    CHECK(map.empty());
  });
}

TEST_CASE("list state TTL applies to the whole list and appends refresh it",
          "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto list = value_or_fail(make_list_state<int>(*store, ctx, "l",
                                                   Ttl(std::chrono::seconds(10)).event_time()));
    set_current_key(ctx, std::string("meter-1"), 128);
    store->advance_event_time(1'000);
    list.add(1);
    store->advance_event_time(6'000);
    list.add(2);
    store->advance_event_time(12'000);
    CHECK(list.get() == std::vector<int>{1, 2});
    store->advance_event_time(16'000);
    CHECK(list.get().empty());
    // An expired list is replaced by the next add, not extended.
    list.add(1);
    store->advance_event_time(40'000);
    list.add(3);
    CHECK(list.get() == std::vector<int>{3});
  });
}

TEST_CASE("aggregating state TTL starts a new accumulator after expiry", "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto avg = value_or_fail(make_aggregating_state<double>(
        *store, ctx, "avg", Average{}, Ttl(std::chrono::seconds(10)).event_time()));
    set_current_key(ctx, std::string("meter-1"), 128);
    store->advance_event_time(1'000);
    avg.add(2.0);
    avg.add(4.0);
    CHECK(avg.get() == Approx(3.0));
    store->advance_event_time(11'000);
    CHECK_FALSE(avg.get().has_value());
    avg.add(10.0);
    CHECK(avg.get() == Approx(10.0));
  });
}

TEST_CASE("purge_expired physically removes expired values", "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto v = value_or_fail(make_value_state<std::string>(
        *store, ctx, "v", Ttl(std::chrono::seconds(10)).event_time()));
    auto plain = value_or_fail(make_value_state<std::string>(*store, ctx, "plain"));
    store->advance_event_time(1'000);
    for (int i = 0; i < 200; ++i) {
      set_current_key(ctx, "meter-" + std::to_string(i), 128);
      v.update(std::string(100, 'x'));
    }
    set_current_key(ctx, std::string("keep"), 128);
    plain.update("kept");
    const std::uint64_t before = value_or_fail(store->approximate_size_bytes());
    CHECK(before > 0);
    REQUIRE(store->purge_expired().ok());  // nothing expired yet
    set_current_key(ctx, std::string("meter-7"), 128);
    CHECK(v.value().has_value());

    store->advance_event_time(11'000);
    // RocksDB removes them on its own threads (a flush, whose TTL filter
    // drops them, and compactions that purge_expired() only requests), as
    // operators call it: periodically. The 100-byte values go; RocksDB may
    // keep the keys' tombstones (about 20 bytes each) until a later
    // compaction of the bottommost files.
    std::uint64_t after = before;
    const bool purged = eventually([&] {
      REQUIRE(store->purge_expired().ok());
      after = value_or_fail(store->approximate_size_bytes());
      return after < before / 4;
    });
    INFO("before " << before << " bytes, after " << after);
    CHECK(purged);
    int entries = 0;
    for (int kg = 0; kg < 128; ++kg) {
      REQUIRE(store->for_each_in_key_group(kg, [&](int, std::string_view, std::string_view) {
                       ++entries;
                       return true;
                     }).ok());
    }
    CHECK(entries == 1);
    set_current_key(ctx, std::string("keep"), 128);
    CHECK(plain.value() == std::string("kept"));
  });
}

TEST_CASE("a snapshot of TTL state keeps the expiries through put_stored",
          "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    const Ttl ttl = Ttl(std::chrono::seconds(10)).event_time();
    std::vector<std::pair<std::string, std::string>> snapshot;
    int state_id = -1;
    {
      auto store = open_store(backend, "op", kAllGroups);
      KeyContext ctx;
      auto v = value_or_fail(make_value_state<int>(*store, ctx, "v", ttl));
      state_id = v.state_id();
      store->advance_event_time(1'000);
      set_key(ctx, 3, "old");
      v.update(1);
      store->advance_event_time(5'000);
      set_key(ctx, 3, "new");
      v.update(2);
      set_key(ctx, 3, "gone");
      v.update(3);
      store->advance_event_time(6'000);
      v.clear();
      REQUIRE(store->for_each_in_key_group(
                       3, [&](int state, std::string_view key, std::string_view value) {
                         CHECK(state == state_id);
                         CHECK(value.size() == 8 + sizeof(int));  // expiry + value
                         snapshot.emplace_back(std::string(key), std::string(value));
                         return true;
                       })
                  .ok());
      CHECK(snapshot.size() == 2);
    }
    auto restored = open_store(backend, "op", kAllGroups);
    KeyContext ctx;
    auto v = value_or_fail(make_value_state<int>(*restored, ctx, "v", ttl));
    for (const auto& [key, value] : snapshot) {
      REQUIRE(restored->put_stored(v.state_id(), 3, key, value).ok());
    }
    CHECK(restored->put_stored(v.state_id(), 3, "k", "short").code() ==
          absl::StatusCode::kInvalidArgument);
    restored->advance_event_time(12'000);
    set_key(ctx, 3, "old");
    CHECK_FALSE(v.value().has_value());  // expired at 11'000, as before the restore
    set_key(ctx, 3, "new");
    CHECK(v.value() == 2);
  });
}

TEST_CASE("register_state checks TTLs", "[state][ttl]") {
  for_each_state_backend([](StateBackend& backend) {
    auto store = open_store(backend, "op", kAllGroups);
    const StateTtl ttl = Ttl(std::chrono::minutes(5));
    const int id = value_or_fail(store->register_state({"v", Kind::kValue, ttl}));
    CHECK(value_or_fail(store->register_state({"v", Kind::kValue, ttl})) == id);
    REQUIRE(store->descriptor(id)->ttl.has_value());
    CHECK(store->descriptor(id)->ttl->ttl_ms == 300'000);
    CHECK(store->descriptor(id)->ttl->domain == TimeDomain::kProcessingTime);

    StatusOr<int> other = store->register_state({"v", Kind::kValue, std::nullopt});
    CHECK(other.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(other.status().message()),
               Contains("'v'") && Contains("TTL 300000 ms") && Contains("no TTL"));
    CHECK(store->register_state({"v", Kind::kValue, Ttl(std::chrono::minutes(6))})
              .status()
              .code() == absl::StatusCode::kInvalidArgument);
    CHECK(store->register_state({"w", Kind::kValue, Ttl(std::chrono::milliseconds(0))})
              .status()
              .code() == absl::StatusCode::kInvalidArgument);
  });
}

}  // namespace
}  // namespace meterstream::testing
