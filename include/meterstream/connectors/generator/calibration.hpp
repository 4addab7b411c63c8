// The calibration stream of the smart-meter workload (docs/workload-calibration.md):
// per meter, a few versions of (gain, offset), each valid from its time, as a
// pure function of the seed, the meter and the version index; and
// calibrate(), which applies one to a reading.
//
// Thread-safety: pure functions and value types.
#pragma once

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "meterstream/connectors/generator/smart_meter.hpp"

namespace meterstream {

// One version of a meter's calibration: valid from `valid_from_ms` until the
// next version of the same meter. gain in parts per million (1000000 = 1.0),
// offset in watt-hours.
struct Calibration {
  std::uint64_t meter_id = 0;
  std::int64_t valid_from_ms = 0;
  std::uint32_t gain_ppm = 1000000;
  std::int32_t offset_wh = 0;

  bool operator==(const Calibration& o) const {
    return meter_id == o.meter_id && valid_from_ms == o.valid_from_ms &&
           gain_ppm == o.gain_ppm && offset_wh == o.offset_wh;
  }
};

// The parameters of the calibration stream.
struct CalibrationWorkload {
  // The workload's seed and meter count (SmartMeterWorkload::seed, ::meters).
  std::uint64_t seed = 42;
  std::uint64_t meters = 100000;
  // Versions per meter, V >= 1.
  // Default: 4
  std::uint32_t versions = 4;
  // Period P between versions of a meter, in milliseconds, > 0.
  // Default: 600000 (10 minutes)
  std::int64_t period_ms = 600000;
  // Every `late_start_every`-th meter (meter % late_start_every ==
  // late_start_every - 1) has no version before T0 + a draw: its first
  // readings have no calibration. 0: none.
  // Default: 10
  std::uint64_t late_start_every = 10;
};

namespace detail {

inline std::uint64_t calib_fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

inline std::uint64_t calib_splitmix64(std::uint64_t& state) {
  state += 0x9E3779B97F4A7C15ULL;
  std::uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace detail

// T0 of the workload (WORKLOAD.md "Generator").
inline constexpr std::int64_t kWorkloadT0 = 1700000000000;

// Version `j` of meter `m`'s calibration (docs/workload-calibration.md):
//   state = seed ^ fmix64(m * 65536 + j + 1); x1, x2 = two splitmix64 draws
//   valid_from = T0 + j * P + x1 % P, minus P for j == 0 unless m is a late starter
//   gain_ppm = 950000 + x2 % 100001; offset_wh = (x2 >> 32) % 21 - 10
inline Calibration calibration_version(const CalibrationWorkload& w, std::uint64_t m,
                                       std::uint32_t j) {
  std::uint64_t state = w.seed ^ detail::calib_fmix64(m * 65536 + j + 1);
  const std::uint64_t x1 = detail::calib_splitmix64(state);
  const std::uint64_t x2 = detail::calib_splitmix64(state);
  const auto p = static_cast<std::uint64_t>(w.period_ms);
  const bool late_start = w.late_start_every != 0 && m % w.late_start_every == w.late_start_every - 1;
  Calibration c;
  c.meter_id = m;
  c.valid_from_ms = kWorkloadT0 + static_cast<std::int64_t>(j) * w.period_ms +
                    static_cast<std::int64_t>(x1 % p) - (j == 0 && !late_start ? w.period_ms : 0);
  c.gain_ppm = static_cast<std::uint32_t>(950000 + x2 % 100001);
  c.offset_wh = static_cast<std::int32_t>((x2 >> 32) % 21) - 10;
  return c;
}

// The whole calibration changelog, ordered by (valid_from_ms, meter_id):
// the order a changelog source emits it in.
inline std::vector<Calibration> calibration_stream(const CalibrationWorkload& w) {
  std::vector<Calibration> out;
  out.reserve(static_cast<std::size_t>(w.meters * w.versions));
  for (std::uint64_t m = 0; m < w.meters; ++m) {
    for (std::uint32_t j = 0; j < w.versions; ++j) out.push_back(calibration_version(w, m, j));
  }
  std::sort(out.begin(), out.end(), [](const Calibration& a, const Calibration& b) {
    return std::tie(a.valid_from_ms, a.meter_id) < std::tie(b.valid_from_ms, b.meter_id);
  });
  return out;
}

// A reading corrected by a calibration: wh = max(0, round(wh * gain) + offset),
// rounding half up: (wh * gain_ppm + 500000) / 1000000.
inline MeterReading calibrate(const MeterReading& r, const Calibration& c) {
  MeterReading out = r;
  const std::int64_t scaled =
      static_cast<std::int64_t>((static_cast<std::uint64_t>(r.wh) * c.gain_ppm + 500000) / 1000000);
  out.wh = static_cast<std::uint32_t>(std::max<std::int64_t>(0, scaled + c.offset_wh));
  return out;
}

}  // namespace meterstream
