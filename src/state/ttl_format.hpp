// Internal: the stored format of TTL state values and the clocks a backend
// measures TTLs on, shared by the memory and RocksDB backends (and the RocksDB
// compaction filter).
//
// A TTL state's stored value is an 8-byte expiry (a Timestamp, big-endian
// two's complement) followed by the caller's bytes. A value is expired when
// expiry <= the current time of the TTL's domain.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "meterstream/core/time.hpp"
#include "meterstream/state/ttl.hpp"

namespace meterstream::detail {

inline constexpr std::size_t kExpiryBytes = 8;

// Appends `expiry` as 8 big-endian bytes.
inline void put_expiry(Timestamp expiry, std::string* out) {
  const auto u = static_cast<std::uint64_t>(expiry);
  char buf[kExpiryBytes];
  for (std::size_t i = 0; i < kExpiryBytes; ++i) {
    buf[i] = static_cast<char>(u >> (8 * (kExpiryBytes - 1 - i)));
  }
  out->append(buf, kExpiryBytes);
}

// Reads the expiry at the front of a stored value; false when it is shorter
// than 8 bytes.
inline bool get_expiry(std::string_view stored, Timestamp* expiry) {
  if (stored.size() < kExpiryBytes) return false;
  std::uint64_t u = 0;
  for (std::size_t i = 0; i < kExpiryBytes; ++i) {
    u = (u << 8) | static_cast<std::uint8_t>(stored[i]);
  }
  *expiry = static_cast<Timestamp>(u);
  return true;
}

// The expiry of a value written at `now`: now + ttl, saturating at
// kMaxTimestamp. Event time before the first watermark (kMinTimestamp) is
// unknown, and such values get kMaxTimestamp (no expiry until rewritten)
// rather than one that the first watermark would pass.
inline Timestamp expiry_for(Timestamp now, const StateTtl& ttl) {
  if (now == kMinTimestamp) return kMaxTimestamp;
  if (now > kMaxTimestamp - ttl.ttl_ms) return kMaxTimestamp;
  return now + ttl.ttl_ms;
}

inline bool is_expired(Timestamp expiry, Timestamp now) { return expiry <= now; }

// The clocks of one store: its event time (the largest watermark its operator
// instance reported) and the system clock. Event time belongs to the store,
// never to the backend, so that one operator's final watermark expires
// nothing of another's. Thread-safe (the RocksDB compaction filters read it).
class TtlClock {
 public:
  void advance_event_time(Timestamp watermark) {
    Timestamp current = event_time_.load(std::memory_order_relaxed);
    while (watermark > current &&
           !event_time_.compare_exchange_weak(current, watermark, std::memory_order_relaxed)) {
    }
  }
  Timestamp now(TimeDomain domain) const {
    return domain == TimeDomain::kEventTime ? event_time_.load(std::memory_order_relaxed)
                                            : processing_time_now();
  }

 private:
  std::atomic<Timestamp> event_time_{kMinTimestamp};
};

}  // namespace meterstream::detail
