#include <cstdint>
#include <limits>
#include <string>

#include "bench/kafka_tools.hpp"
#include <catch2/catch.hpp>

namespace {

// Kafka's murmur2 made positive, recovered through the partition of a
// partition count of 2^31 - 1 (the value itself unless it is 2^31 - 1).
std::int64_t positive_murmur2(const std::string& key) {
  return meterstream::bench::kafka_default_partition(
      key, std::numeric_limits<std::int32_t>::max());
}

std::int64_t expected(std::int32_t java_murmur2) {
  return (static_cast<std::int64_t>(java_murmur2) & 0x7fffffff) %
         std::numeric_limits<std::int32_t>::max();
}

}  // namespace

TEST_CASE("the default partition is Kafka's murmur2 of the key", "[kafka]") {
  // The test vectors of Kafka's own UtilsTest.testMurmur2 (signed Java ints).
  CHECK(positive_murmur2("21") == expected(-973932308));
  CHECK(positive_murmur2("foobar") == expected(-790332482));
  CHECK(positive_murmur2("a-little-bit-long-string") == expected(-985981536));
  CHECK(positive_murmur2("a-little-bit-longer-string") ==
        expected(-1486304829));
  CHECK(positive_murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") ==
        expected(-58897971));
  CHECK(positive_murmur2("abc") == expected(479470107));
}

TEST_CASE("the default partition is within the partition count", "[kafka]") {
  for (std::int32_t partitions : {1, 2, 3, 7, 64}) {
    for (int i = 0; i < 200; ++i) {
      const std::int32_t p = meterstream::bench::kafka_default_partition(
          std::to_string(i * 7919), partitions);
      CHECK(p >= 0);
      CHECK(p < partitions);
    }
  }
}
