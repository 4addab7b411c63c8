// Key groups: stable hashing and the assignment of key-group ranges to workers.
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "meterstream/core/key_group.hpp"

namespace ms = meterstream;

namespace {

// The ranges cover [0, max) contiguously, in worker order.
void check_cover(const std::vector<ms::KeyGroupRange>& ranges, int max) {
  int next = 0;
  for (const ms::KeyGroupRange& r : ranges) {
    CHECK(r.first == next);
    CHECK(r.size() >= 1);
    next = r.last + 1;
  }
  CHECK(next == max);
}

}  // namespace

TEST_CASE("equal weights give the same ranges as key_group_range_for_worker", "[core]") {
  for (int p = 1; p <= 7; ++p) {
    const auto ranges = ms::key_group_ranges(128, std::vector<double>(static_cast<std::size_t>(p), 1.0));
    check_cover(ranges, 128);
    for (int w = 0; w < p; ++w) {
      const ms::KeyGroupRange expected = ms::key_group_range_for_worker(128, p, w);
      CHECK(ranges[static_cast<std::size_t>(w)].size() - expected.size() <= 1);
      CHECK(expected.size() - ranges[static_cast<std::size_t>(w)].size() <= 1);
    }
  }
}

TEST_CASE("weighted ranges are contiguous and proportional, at least one key group each",
          "[core]") {
  const auto two = ms::key_group_ranges(128, {0.6, 1.0});
  check_cover(two, 128);
  CHECK(two[0].size() == 48);  // 128 * 0.6 / 1.6
  const auto tiny = ms::key_group_ranges(3, {0.01, 1.0, 1.0});
  check_cover(tiny, 3);
  const auto skewed = ms::key_group_ranges(4, {1.0, 0.001, 0.001, 0.001});
  check_cover(skewed, 4);
}

TEST_CASE("key hashes are stable across runs and versions", "[core]") {
  // Part of the checkpoint format: these values must never change.
  CHECK(ms::KeyHash<std::uint64_t>{}(42) == 0x810879608e4259ccULL);
  CHECK(ms::key_group_of(std::uint64_t{42}, 128) == 76);
  CHECK(ms::KeyHash<std::string>{}("meter") == ms::hash_bytes("meter"));
  CHECK(ms::hash_bytes("meter") != ms::hash_bytes("meteR"));
}
