// The wire format of a MeterReading: a fixed 26-byte little-endian layout,
// shared by the Kafka source and sink, the benchmark's producer and its
// verifier.
//
//   offset  size  field
//        0     8  meter_id    (u64)
//        8     8  ts_ms       (i64, two's complement)
//       16     4  seq         (u32)
//       20     4  wh          (u32)
//       24     2  voltage_dv  (u16)
//
// Test vector: {meter_id 1, ts_ms 1700000000000, seq 2, wh 3, voltage_dv 2300}
// encodes as 01 00 00 00 00 00 00 00 | 00 68 e5 cf 8b 01 00 00 | 02 00 00 00 |
// 03 00 00 00 | fc 08.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/core/status.hpp"

namespace meterstream {

// The size of an encoded MeterReading.
inline constexpr std::size_t kMeterReadingSize = 26;

namespace detail {

template <typename U>
void put_le(char* out, U v) {
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    out[i] = static_cast<char>(static_cast<unsigned char>(v >> (8 * i)));
  }
}

template <typename U>
U get_le(const char* in) {
  U v = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    v = static_cast<U>(v | (static_cast<U>(static_cast<unsigned char>(in[i])) << (8 * i)));
  }
  return v;
}

}  // namespace detail

// Writes the kMeterReadingSize bytes of `r` to `out`.
inline void encode_meter_reading(const MeterReading& r, char* out) {
  detail::put_le<std::uint64_t>(out, r.meter_id);
  detail::put_le<std::uint64_t>(out + 8, static_cast<std::uint64_t>(r.ts_ms));
  detail::put_le<std::uint32_t>(out + 16, r.seq);
  detail::put_le<std::uint32_t>(out + 20, r.wh);
  detail::put_le<std::uint16_t>(out + 24, r.voltage_dv);
}

// The encoding of `r` as a string of kMeterReadingSize bytes.
inline std::string encode_meter_reading(const MeterReading& r) {
  std::string out(kMeterReadingSize, '\0');
  encode_meter_reading(r, out.data());
  return out;
}

// Decodes exactly kMeterReadingSize bytes; kInvalidArgument saying the size
// otherwise.
inline StatusOr<MeterReading> decode_meter_reading(std::string_view bytes) {
  if (bytes.size() != kMeterReadingSize) {
    return absl::InvalidArgumentError("a MeterReading is " + std::to_string(kMeterReadingSize) +
                                      " bytes, got " + std::to_string(bytes.size()));
  }
  const char* p = bytes.data();
  MeterReading r;
  r.meter_id = detail::get_le<std::uint64_t>(p);
  r.ts_ms = static_cast<std::int64_t>(detail::get_le<std::uint64_t>(p + 8));
  r.seq = detail::get_le<std::uint32_t>(p + 16);
  r.wh = detail::get_le<std::uint32_t>(p + 20);
  r.voltage_dv = detail::get_le<std::uint16_t>(p + 24);
  return r;
}

}  // namespace meterstream
