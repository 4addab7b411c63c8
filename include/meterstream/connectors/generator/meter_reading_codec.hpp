// The binary encoding of a MeterReading as a Kafka record value (and of the
// meter id as its key), shared by every producer and consumer of workload
// topics: `meterstream-bench produce` writes it, the Kafka source's
// MeterReading deserializer reads it (docs/kafka.md "Value encodings").
//
// Value: exactly kMeterReadingSize = 26 bytes, little-endian, no padding:
//
//   offset  size  field
//        0     8  meter_id    uint64
//        8     8  ts_ms       int64 (two's complement)
//       16     4  seq         uint32
//       20     4  wh          uint32
//       24     2  voltage_dv  uint16
//
// Key: the meter id as 8 bytes big-endian (kMeterKeySize), so that keys sort
// by meter id byte-wise, as Kafka tools show them.
//
// Test vector: {meter_id 1, ts_ms 1700000006428, seq 0, wh 124, voltage_dv
// 2293} encodes as
//   01 00 00 00 00 00 00 00  1c 81 e5 cf 8b 01 00 00  00 00 00 00  7c 00 00 00
//   f5 08
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "meterstream/connectors/generator/smart_meter.hpp"

namespace meterstream {

// The size of an encoded MeterReading value.
inline constexpr std::size_t kMeterReadingSize = 26;

// The size of an encoded meter key.
inline constexpr std::size_t kMeterKeySize = 8;

namespace detail {

inline void put_le(char* out, std::uint64_t v, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i)
    out[i] = static_cast<char>(v >> (8 * i) & 0xff);
}

inline std::uint64_t get_le(const char* in, std::size_t bytes) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < bytes; ++i) {
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i]))
         << (8 * i);
  }
  return v;
}

}  // namespace detail

// Writes the 26-byte encoding of `r` into `out[0..26)`.
inline void encode_meter_reading(const MeterReading& r, char* out) {
  detail::put_le(out, r.meter_id, 8);
  detail::put_le(out + 8, static_cast<std::uint64_t>(r.ts_ms), 8);
  detail::put_le(out + 16, r.seq, 4);
  detail::put_le(out + 20, r.wh, 4);
  detail::put_le(out + 24, r.voltage_dv, 2);
}

// The 26-byte encoding of `r`.
inline std::string encode_meter_reading(const MeterReading& r) {
  std::string out(kMeterReadingSize, '\0');
  encode_meter_reading(r, out.data());
  return out;
}

// Decodes `bytes` into `*out`; false, leaving `*out` untouched, when `bytes`
// is not exactly kMeterReadingSize long (the encoding has no invalid values
// otherwise: every field takes its whole range).
inline bool decode_meter_reading(std::string_view bytes, MeterReading* out) {
  if (bytes.size() != kMeterReadingSize) return false;
  const char* p = bytes.data();
  out->meter_id = detail::get_le(p, 8);
  out->ts_ms = static_cast<std::int64_t>(detail::get_le(p + 8, 8));
  out->seq = static_cast<std::uint32_t>(detail::get_le(p + 16, 4));
  out->wh = static_cast<std::uint32_t>(detail::get_le(p + 20, 4));
  out->voltage_dv = static_cast<std::uint16_t>(detail::get_le(p + 24, 2));
  return true;
}

// The 8-byte big-endian key of `meter_id`.
inline std::string encode_meter_key(std::uint64_t meter_id) {
  std::string out(kMeterKeySize, '\0');
  for (std::size_t i = 0; i < kMeterKeySize; ++i) {
    out[i] =
        static_cast<char>(meter_id >> (8 * (kMeterKeySize - 1 - i)) & 0xff);
  }
  return out;
}

// Decodes an 8-byte big-endian key into `*meter_id`; false, leaving it
// untouched, when `bytes` is not exactly 8 bytes long.
inline bool decode_meter_key(std::string_view bytes, std::uint64_t* meter_id) {
  if (bytes.size() != kMeterKeySize) return false;
  std::uint64_t v = 0;
  for (char c : bytes) v = v << 8 | static_cast<unsigned char>(c);
  *meter_id = v;
  return true;
}

}  // namespace meterstream
