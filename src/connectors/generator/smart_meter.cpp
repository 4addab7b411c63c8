#include "meterstream/connectors/generator/smart_meter.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace meterstream {
namespace {

constexpr std::int64_t kT0 = 1700000000000;
constexpr std::uint64_t kPpm = 1000000;
constexpr std::uint64_t kMaxDupDistance = 2000;

// Position format: magic, version, fingerprint, b, emitted, rng state,
// pending count, then per pending duplicate (due, meter_id, ts, seq, wh, v),
// in (due, insertion) order. All integers little-endian.
constexpr char kMagic[4] = {'M', 'S', 'G', 'P'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kHeaderSize = 4 + 4 + 8 * 5;
constexpr std::size_t kPendingSize = 8 + 8 + 8 + 4 + 4 + 2;

inline std::uint64_t splitmix64(std::uint64_t& state) {
  state += 0x9E3779B97F4A7C15ULL;
  std::uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void put_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads little-endian integers from a byte string; the caller checks sizes first.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  std::uint64_t get(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes_[pos_ + i])) << (8 * i);
    }
    pos_ += bytes;
    return v;
  }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

}  // namespace

Status SmartMeterWorkload::validate() const {
  if (meters < 2) {
    return absl::InvalidArgumentError(absl::StrCat("meters must be >= 2, got ", meters));
  }
  if (hot_factor < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("hot_factor must be >= 1, got ", hot_factor));
  }
  // Keeps M = K - 1 + H and the per-round timestamp arithmetic far from overflow.
  if (meters > (std::uint64_t{1} << 40) || hot_factor > (std::uint64_t{1} << 40)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "meters and hot_factor must be <= 2^40, got meters=", meters, " hot_factor=",
        hot_factor));
  }
  if (interval_ms <= 0 || interval_ms > (std::int64_t{1} << 40)) {
    return absl::InvalidArgumentError(
        absl::StrCat("interval_ms must be in [1, 2^40], got ", interval_ms));
  }
  if (max_delay_ms < 0 || max_delay_ms > (std::int64_t{1} << 50)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_delay_ms must be in [0, 2^50], got ", max_delay_ms));
  }
  if (late_ppm > kPpm) {
    return absl::InvalidArgumentError(
        absl::StrCat("late_ppm must be <= 1000000, got ", late_ppm));
  }
  if (dup_ppm > kPpm) {
    return absl::InvalidArgumentError(
        absl::StrCat("dup_ppm must be <= 1000000, got ", dup_ppm));
  }
  if (anomaly_ppm > kPpm) {
    return absl::InvalidArgumentError(
        absl::StrCat("anomaly_ppm must be <= 1000000, got ", anomaly_ppm));
  }
  return absl::OkStatus();
}

SmartMeterGenerator::SmartMeterGenerator(const SmartMeterWorkload& workload)
    : workload_(workload),
      reports_per_round_(workload.meters - 1 + workload.hot_factor),
      rng_state_(workload.seed) {
  // An invalid workload must not divide by zero; validate() reports it.
  if (reports_per_round_ == 0) reports_per_round_ = 1;
}

bool SmartMeterGenerator::next(MeterReading* out) {
  if (emitted_ >= workload_.events) return false;
  if (!pending_.empty() && pending_.front().due <= b_) {
    *out = pending_.front().event;
    std::pop_heap(pending_.begin(), pending_.end(), Later{});
    pending_.pop_back();
    ++emitted_;
    return true;
  }
  const std::uint64_t m = reports_per_round_;
  const std::uint64_t h = workload_.hot_factor;
  const std::uint64_t r = b_ / m;
  const std::uint64_t p = b_ % m;
  const std::uint64_t period = static_cast<std::uint64_t>(workload_.interval_ms);

  MeterReading e;
  if (p < h) {
    e.meter_id = 0;
    e.seq = static_cast<std::uint32_t>(r * h + p);
  } else {
    e.meter_id = p - h + 1;
    e.seq = static_cast<std::uint32_t>(r);
  }
  std::int64_t ts = kT0 + static_cast<std::int64_t>(r * period + (p * period) / m);

  const std::uint64_t x1 = splitmix64(rng_state_);
  const std::uint64_t x2 = splitmix64(rng_state_);
  const std::uint64_t x3 = splitmix64(rng_state_);
  const std::uint64_t x4 = splitmix64(rng_state_);
  const std::uint64_t x5 = splitmix64(rng_state_);
  const std::uint64_t x6 = splitmix64(rng_state_);

  if (x1 % kPpm < workload_.late_ppm) {
    ts -= static_cast<std::int64_t>(
        x2 % (static_cast<std::uint64_t>(workload_.max_delay_ms) + 1));
  }
  e.ts_ms = ts;
  e.wh = static_cast<std::uint32_t>(50 + (x4 >> 54));
  e.voltage_dv = static_cast<std::uint16_t>(2250 + x5 % 101);
  if (x6 % kPpm < workload_.anomaly_ppm) e.voltage_dv = 1800;
  if (x3 % kPpm < workload_.dup_ppm) {
    pending_.push_back(Pending{b_ + 1 + (x3 >> 40) % kMaxDupDistance, next_order_++, e});
    std::push_heap(pending_.begin(), pending_.end(), Later{});
  }
  *out = e;
  ++b_;
  ++emitted_;
  return true;
}

std::size_t SmartMeterGenerator::next_batch(MeterReading* out, std::size_t max) {
  std::size_t n = 0;
  while (n < max && next(out + n)) ++n;
  return n;
}

std::uint64_t SmartMeterGenerator::fingerprint() const {
  const SmartMeterWorkload& w = workload_;
  std::uint64_t h = fmix64(w.seed ^ 0x5eedULL);
  for (std::uint64_t v :
       {w.meters, w.events, static_cast<std::uint64_t>(w.interval_ms), w.hot_factor,
        std::uint64_t{w.late_ppm}, static_cast<std::uint64_t>(w.max_delay_ms),
        std::uint64_t{w.dup_ppm}, std::uint64_t{w.anomaly_ppm}}) {
    h = fmix64(h ^ v) + 0x9E3779B97F4A7C15ULL;
  }
  return h;
}

std::string SmartMeterGenerator::save_position() const {
  std::vector<Pending> sorted = pending_;
  std::sort(sorted.begin(), sorted.end(),
            [](const Pending& a, const Pending& b) { return Later{}(b, a); });
  std::string out;
  out.reserve(kHeaderSize + sorted.size() * kPendingSize);
  out.append(kMagic, sizeof(kMagic));
  put_le(out, kVersion, 4);
  put_le(out, fingerprint(), 8);
  put_le(out, b_, 8);
  put_le(out, emitted_, 8);
  put_le(out, rng_state_, 8);
  put_le(out, sorted.size(), 8);
  for (const Pending& p : sorted) {
    put_le(out, p.due, 8);
    put_le(out, p.event.meter_id, 8);
    put_le(out, static_cast<std::uint64_t>(p.event.ts_ms), 8);
    put_le(out, p.event.seq, 4);
    put_le(out, p.event.wh, 4);
    put_le(out, p.event.voltage_dv, 2);
  }
  return out;
}

Status SmartMeterGenerator::restore_position(std::string_view bytes) {
  if (bytes.size() < kHeaderSize || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "smart-meter generator position: not a position (", bytes.size(), " bytes)"));
  }
  Reader in(bytes.substr(sizeof(kMagic)));
  const std::uint64_t version = in.get(4);
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "smart-meter generator position: unsupported version ", version));
  }
  if (in.get(8) != fingerprint()) {
    return absl::InvalidArgumentError(
        "smart-meter generator position: saved with different workload parameters");
  }
  const std::uint64_t b = in.get(8);
  const std::uint64_t emitted = in.get(8);
  const std::uint64_t rng_state = in.get(8);
  const std::uint64_t count = in.get(8);
  if (count > kMaxDupDistance || bytes.size() != kHeaderSize + count * kPendingSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "smart-meter generator position: size ", bytes.size(), " does not match ", count,
        " pending duplicates"));
  }
  // Every report b' < b was generated, and each emitted at most once more.
  if (emitted > workload_.events || b > emitted || emitted - b > b) {
    return absl::InvalidArgumentError(absl::StrCat(
        "smart-meter generator position: inconsistent counters b=", b,
        " emitted=", emitted));
  }
  // splitmix64 draws six values per generated report.
  if (rng_state != workload_.seed + b * 6 * 0x9E3779B97F4A7C15ULL) {
    return absl::InvalidArgumentError(
        "smart-meter generator position: random state does not match the report counter");
  }
  std::vector<Pending> pending;
  pending.reserve(count);
  std::uint64_t prev_due = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    Pending p;
    p.due = in.get(8);
    p.order = i;
    p.event.meter_id = in.get(8);
    p.event.ts_ms = static_cast<std::int64_t>(in.get(8));
    p.event.seq = static_cast<std::uint32_t>(in.get(4));
    p.event.wh = static_cast<std::uint32_t>(in.get(4));
    p.event.voltage_dv = static_cast<std::uint16_t>(in.get(2));
    // A pending duplicate was scheduled by a report < b and is due within
    // kMaxDupDistance reports of it; duplicates due <= b-1 were already emitted.
    if (p.due < prev_due || p.due < b || p.due > b + kMaxDupDistance ||
        p.event.meter_id >= workload_.meters) {
      return absl::InvalidArgumentError(absl::StrCat(
          "smart-meter generator position: pending duplicate ", i, " is corrupt (due ",
          p.due, ", report counter ", b, ")"));
    }
    prev_due = p.due;
    pending.push_back(p);
  }
  // Sorted by (due, order) is already a valid min-heap for Later.
  b_ = b;
  emitted_ = emitted;
  rng_state_ = rng_state;
  next_order_ = count;
  pending_ = std::move(pending);
  return absl::OkStatus();
}

std::vector<MeterReading> generate_smart_meter_events(const SmartMeterWorkload& workload) {
  std::vector<MeterReading> events;
  events.reserve(workload.events);
  SmartMeterGenerator gen(workload);
  MeterReading e;
  while (gen.next(&e)) events.push_back(e);
  return events;
}

}  // namespace meterstream
