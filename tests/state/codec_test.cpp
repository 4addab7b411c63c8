// Codec and KeyCodec (core/codec.hpp).
#include "meterstream/core/codec.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

namespace meterstream {
namespace {

template <typename T, typename C = Codec<T>>
T round_trip(const T& v) {
  std::string bytes = "prefix";
  C::encode(v, &bytes);  // appends
  REQUIRE(bytes.compare(0, 6, "prefix") == 0);
  T out{};
  REQUIRE(C::decode(std::string_view(bytes).substr(6), &out));
  return out;
}

enum class Tariff : std::uint8_t { kPeak, kOffPeak };

struct Plain {
  std::int32_t a;
  std::int32_t b;
  bool operator==(const Plain& o) const { return a == o.a && b == o.b; }
};

TEST_CASE("codecs round-trip the provided types", "[state]") {
  CHECK(round_trip(std::int64_t{-42}) == -42);
  CHECK(round_trip(3.25) == 3.25);
  CHECK(round_trip(true) == true);
  CHECK(round_trip(Tariff::kOffPeak) == Tariff::kOffPeak);
  CHECK(round_trip(Plain{1, -2}) == Plain{1, -2});
  CHECK(round_trip(std::string("")) == "");
  CHECK(round_trip(std::string("a\0b", 3)) == std::string("a\0b", 3));
  CHECK(round_trip(std::vector<std::string>{"", "x", std::string(300, 'y')}) ==
        std::vector<std::string>{"", "x", std::string(300, 'y')});
  CHECK(round_trip(std::vector<std::int32_t>{}).empty());
  using Nested = std::vector<std::pair<std::string, std::vector<double>>>;
  const Nested nested = {{"a", {1.0, 2.0}}, {"", {}}};
  CHECK(round_trip(nested) == nested);
  CHECK(round_trip(std::pair<int, std::string>{7, "seven"}) ==
        std::pair<int, std::string>{7, "seven"});
}

TEST_CASE("decoding malformed bytes fails", "[state]") {
  std::int64_t i = 0;
  CHECK_FALSE(Codec<std::int64_t>::decode("1234567", &i));
  CHECK_FALSE(Codec<std::int64_t>::decode("123456789", &i));
  bool b = false;
  CHECK_FALSE(Codec<bool>::decode("\x02", &b));

  std::string bytes;
  Codec<std::vector<std::string>>::encode({"abc", "def"}, &bytes);
  std::vector<std::string> v;
  CHECK_FALSE(Codec<std::vector<std::string>>::decode(
      std::string_view(bytes).substr(0, bytes.size() - 1), &v));
  std::vector<std::int32_t> ints;
  CHECK_FALSE(Codec<std::vector<std::int32_t>>::decode("\x03" "abc", &ints));
  std::pair<int, int> p;
  std::string pair_bytes;
  Codec<std::pair<int, int>>::encode({1, 2}, &pair_bytes);
  CHECK_FALSE(Codec<std::pair<int, int>>::decode(pair_bytes + "x", &p));
  CHECK_FALSE(Codec<std::pair<int, int>>::decode("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", &p));
}

TEST_CASE("appending encoded vectors gives the encoded concatenation", "[state]") {
  std::string bytes;
  Codec<std::vector<std::string>>::encode({"a", "b"}, &bytes);
  Codec<std::vector<std::string>>::encode({"c"}, &bytes);
  encode_field(std::string("d"), &bytes);
  std::vector<std::string> v;
  REQUIRE(Codec<std::vector<std::string>>::decode(bytes, &v));
  CHECK(v == std::vector<std::string>{"a", "b", "c", "d"});
}

template <typename T>
void check_key_order(std::vector<T> values) {
  std::sort(values.begin(), values.end());
  std::vector<std::string> encoded;
  for (const T& v : values) {
    std::string bytes;
    KeyCodec<T>::encode(v, &bytes);
    T back{};
    REQUIRE(KeyCodec<T>::decode(bytes, &back));
    CHECK(back == v);
    encoded.push_back(bytes);
  }
  CHECK(std::is_sorted(encoded.begin(), encoded.end()));
  CHECK(std::adjacent_find(encoded.begin(), encoded.end()) == encoded.end());
}

TEST_CASE("key codecs order bytes as values", "[state]") {
  check_key_order<std::int8_t>({-128, -1, 0, 1, 127});
  check_key_order<std::int32_t>({std::numeric_limits<std::int32_t>::min(), -65536, -256,
                                 -255, -1, 0, 1, 255, 256, 65536,
                                 std::numeric_limits<std::int32_t>::max()});
  check_key_order<std::int64_t>({std::numeric_limits<std::int64_t>::min(), -1, 0, 1,
                                 std::numeric_limits<std::int64_t>::max()});
  check_key_order<std::uint64_t>({0, 1, 255, 256, std::numeric_limits<std::uint64_t>::max()});
  check_key_order<double>({-std::numeric_limits<double>::infinity(), -1e300, -1.5, -1e-300,
                           0.0, 1e-300, 1.5, 1e300, std::numeric_limits<double>::infinity()});
  check_key_order<float>({-2.5f, -0.25f, 0.0f, 0.25f, 2.5f});
  check_key_order<Tariff>({Tariff::kPeak, Tariff::kOffPeak});
  check_key_order<bool>({false, true});
  check_key_order<std::string>({"", "a", "ab", "b", "\xff"});
}

}  // namespace
}  // namespace meterstream
