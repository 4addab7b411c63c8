#include "meterstream/connectors/generator/meter_reading_codec.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace ms = meterstream;

namespace {

std::string bytes(const std::vector<int>& v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

}  // namespace

TEST_CASE("a meter reading encodes as the documented 26 bytes", "[codec]") {
  // The header's test vector: the workload's fourth event of seed 42, K = 5.
  const ms::MeterReading r{1, 1700000006428, 0, 124, 2293};
  const std::string expected =
      bytes({0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1c,
             0x81, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x7c, 0x00, 0x00, 0x00, 0xf5, 0x08});
  CHECK(ms::encode_meter_reading(r) == expected);
  ms::MeterReading back;
  REQUIRE(ms::decode_meter_reading(expected, &back));
  CHECK(back == r);
}

TEST_CASE("meter readings round-trip at the edges of every field", "[codec]") {
  const std::vector<ms::MeterReading> cases = {
      {0, 0, 0, 0, 0},
      {std::numeric_limits<std::uint64_t>::max(),
       std::numeric_limits<std::int64_t>::min(),
       std::numeric_limits<std::uint32_t>::max(),
       std::numeric_limits<std::uint32_t>::max(),
       std::numeric_limits<std::uint16_t>::max()},
      {0x0102030405060708ULL, -1, 0x0a0b0c0d, 0x11223344, 0xbeef},
      {42, std::numeric_limits<std::int64_t>::max(), 1, 1800, 1800},
  };
  for (const ms::MeterReading& r : cases) {
    const std::string e = ms::encode_meter_reading(r);
    REQUIRE(e.size() == ms::kMeterReadingSize);
    ms::MeterReading back;
    REQUIRE(ms::decode_meter_reading(e, &back));
    CHECK(back == r);
  }
}

TEST_CASE("a value of another size does not decode and leaves the reading",
          "[codec]") {
  const ms::MeterReading original{9, 99, 999, 9999, 2300};
  const std::string good = ms::encode_meter_reading(original);
  for (const std::string& bad :
       {std::string(), good.substr(0, 25), good + '\0'}) {
    ms::MeterReading r = original;
    CHECK_FALSE(ms::decode_meter_reading(bad, &r));
    CHECK(r == original);
  }
}

TEST_CASE("a meter key is the id as 8 bytes big-endian", "[codec]") {
  CHECK(ms::encode_meter_key(0x0102030405060708ULL) ==
        bytes({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}));
  CHECK(ms::encode_meter_key(0) == std::string(8, '\0'));
  std::uint64_t id = 0;
  REQUIRE(
      ms::decode_meter_key(ms::encode_meter_key(0xfedcba9876543210ULL), &id));
  CHECK(id == 0xfedcba9876543210ULL);
  id = 5;
  CHECK_FALSE(ms::decode_meter_key("1234567", &id));
  CHECK(id == 5);
  // Byte-wise order of keys is numeric order of ids.
  CHECK(ms::encode_meter_key(255) < ms::encode_meter_key(256));
}
