#include "q1_baseline.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace meterstream {
namespace {

// One meter's aggregate in one window. count == 0 marks an empty slot, since
// an occupied slot has counted at least one event. 24 bytes.
struct Slot {
  std::uint64_t key;
  std::uint32_t count;
  std::uint16_t min_v;
  std::uint16_t max_v;
  std::uint64_t sum_wh;
};

// Open-addressing hash table (linear probing, power-of-two capacity, grows
// past 5/8 load) from meter_id to its window aggregate. Tables are drained and
// recycled rather than freed, so in steady state no window allocates.
class WindowTable {
 public:
  static constexpr int kInitialBits = 10;

  explicit WindowTable(int bits = kInitialBits) { allocate(bits); }

  std::size_t capacity() const { return mask_ + 1; }
  int bits() const { return bits_; }

  const Slot* slot_for(std::uint64_t key) const { return &slots_[home(key)]; }

  void add(std::uint64_t key, std::uint32_t wh, std::uint16_t v) {
    std::size_t i = home(key);
    for (;;) {
      Slot& s = slots_[i];
      if (s.count != 0 && s.key == key) {
        s.count += 1;
        s.sum_wh += wh;
        if (v < s.min_v) s.min_v = v;
        if (v > s.max_v) s.max_v = v;
        return;
      }
      if (s.count == 0) {
        s = Slot{key, 1, v, v, wh};
        if (++size_ > grow_at_) grow();
        return;
      }
      i = (i + 1) & mask_;
    }
  }

  // Calls f(slot) for every occupied slot and leaves the table empty.
  template <typename F>
  void drain(F&& f) {
    if (size_ == 0) return;
    Slot* s = slots_.get();
    const std::size_t n = capacity();
    for (std::size_t i = 0; i < n; ++i) {
      if (s[i].count != 0) {
        f(s[i]);
        s[i].count = 0;
      }
    }
    size_ = 0;
  }

 private:
  // Fibonacci hashing: spreads dense meter ids evenly over the table without
  // assuming anything about their distribution.
  std::size_t home(std::uint64_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> shift_);
  }

  void allocate(int bits) {
    const std::size_t cap = std::size_t{1} << bits;
    // Zero-filled: count == 0 everywhere.
    slots_.reset(new Slot[cap]());
    mask_ = cap - 1;
    shift_ = 64 - bits;
    grow_at_ = cap / 8 * 5;
    bits_ = bits;
  }

  void grow() {
    std::unique_ptr<Slot[]> old = std::move(slots_);
    const std::size_t old_cap = capacity();
    allocate(bits_ + 1);
    for (std::size_t j = 0; j < old_cap; ++j) {
      const Slot& s = old[j];
      if (s.count == 0) continue;
      std::size_t i = home(s.key);
      while (slots_[i].count != 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::unique_ptr<Slot[]> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::size_t grow_at_ = 0;
  int shift_ = 64;
  int bits_ = 0;
};

struct Window {
  std::int64_t start;
  std::unique_ptr<WindowTable> table;
};

// Euclidean floor, so that negative timestamps fall into the window below
// them (identical to ts - ts % W for the workload's non-negative timestamps).
inline std::int64_t window_start(std::int64_t ts, std::int64_t w) {
  std::int64_t rem = ts % w;
  if (rem < 0) rem += w;
  return ts - rem;
}

class Q1Baseline {
 public:
  explicit Q1Baseline(const Q1Params& params)
      : w_(params.window_ms), b_(params.bound_ms), e_(params.wm_every), dedup_(params.dedup) {}

  Q1Totals run(const std::vector<MeterReading>& events) {
    const MeterReading* ev = events.data();
    const std::size_t n = events.size();
    std::int64_t since_wm = 0;
    for (std::size_t i = 0; i < n; ++i) {
      // Prefetch the slot of an event a few iterations ahead: the table access
      // is a cache miss per event otherwise. A hint only, never dereferenced.
      if (i + kPrefetch < n) {
        const MeterReading& f = ev[i + kPrefetch];
        if (f.ts_ms >= cached_lo_ && f.ts_ms <= cached_hi_) {
          __builtin_prefetch(cached_->slot_for(f.meter_id), 1, 3);
        }
      }
      const MeterReading& e = ev[i];
      if (e.ts_ms > max_ts_) max_ts_ = e.ts_ms;
      // Q2: an exact set of every (meter, seq) seen. A duplicate still counts
      // towards the watermark cadence, as it does at the source.
      if (dedup_ && !seen_.insert({e.meter_id, e.seq}).second) {
        ++totals_.duplicates_dropped;
      } else if (e.ts_ms >= cached_lo_ && e.ts_ms <= cached_hi_) {
        // Fast path: the window of the previous event (open, hence not late).
        cached_->add(e.meter_id, e.wh, e.voltage_dv);
      } else {
        slow_add(e);
      }
      if (++since_wm == e_) {
        since_wm = 0;
        advance_watermark();
      }
    }
    for (Window& win : windows_) fire(win);
    windows_.clear();
    return totals_;
  }

 private:
  // Measured on the 2-core VM: 16 beats 0, 8 and 32 (37 vs 30 M events/s at
  // 100k meters, 21 vs 16 at 2M).
  static constexpr std::size_t kPrefetch = 16;

  void slow_add(const MeterReading& e) {
    const std::int64_t start = window_start(e.ts_ms, w_);
    if (start + w_ - 1 <= watermark_) {
      ++totals_.late_dropped;
      return;
    }
    // Few windows are open (about (B + D) / W); scan from the newest.
    auto it = windows_.end();
    while (it != windows_.begin() && std::prev(it)->start >= start) --it;
    if (it == windows_.end() || it->start != start) {
      const bool newest = it == windows_.end();
      it = windows_.insert(it, Window{start, take_table(newest)});
    }
    it->table->add(e.meter_id, e.wh, e.voltage_dv);
    cached_lo_ = start;
    cached_hi_ = start + w_ - 1;
    cached_ = it->table.get();
  }

  void advance_watermark() {
    // max_ts - B - 1, saturating at the minimum (never reached by the workload).
    const std::int64_t candidate =
        max_ts_ < kMin + b_ + 1 ? kMin : max_ts_ - b_ - 1;
    if (candidate <= watermark_) return;
    watermark_ = candidate;
    std::size_t fired = 0;
    while (fired < windows_.size() && windows_[fired].start + w_ - 1 <= watermark_) {
      if (windows_[fired].start == cached_lo_) invalidate_cache();
      fire(windows_[fired]);
      ++fired;
    }
    if (fired > 0) {
      windows_.erase(windows_.begin(), windows_.begin() + static_cast<std::ptrdiff_t>(fired));
      // erase moved the Window values, not the tables: cached_ stays valid.
    }
  }

  void fire(Window& win) {
    const std::int64_t start = win.start;
    Q1Totals& t = totals_;
    win.table->drain([&](const Slot& s) {
      t.add_window(s.key, start, s.count, s.sum_wh, s.min_v, s.max_v);
    });
    pool_.push_back(std::move(win.table));
  }

  // A table for a new window. The newest window will receive about as many
  // meters as the previous newest one, so it gets the largest table at hand
  // (or one as large as that window's), which avoids rehashing it while it
  // fills; an older window only gets late events, so it gets the smallest.
  std::unique_ptr<WindowTable> take_table(bool newest) {
    if (pool_.empty()) {
      int bits = WindowTable::kInitialBits;
      if (newest && !windows_.empty()) bits = std::max(bits, windows_.back().table->bits());
      return std::make_unique<WindowTable>(bits);
    }
    std::size_t pick = 0;
    for (std::size_t i = 1; i < pool_.size(); ++i) {
      const bool better = newest ? pool_[i]->capacity() > pool_[pick]->capacity()
                                 : pool_[i]->capacity() < pool_[pick]->capacity();
      if (better) pick = i;
    }
    std::unique_ptr<WindowTable> t = std::move(pool_[pick]);
    pool_[pick] = std::move(pool_.back());
    pool_.pop_back();
    return t;
  }

  void invalidate_cache() {
    // An empty range: the fast-path test fails for every timestamp.
    cached_lo_ = kMax;
    cached_hi_ = kMin;
    cached_ = nullptr;
  }

  static constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  static constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

  const std::int64_t w_;
  const std::int64_t b_;
  const std::int64_t e_;
  const bool dedup_;
  absl::flat_hash_set<std::pair<std::uint64_t, std::uint32_t>> seen_;  // Q2
  std::int64_t max_ts_ = kMin;
  std::int64_t watermark_ = kMin;
  std::vector<Window> windows_;  // open windows, ascending by start
  std::vector<std::unique_ptr<WindowTable>> pool_;
  // The window of the last event that went through slow_add(), as the
  // inclusive timestamp range [cached_lo_, cached_hi_]; empty when none.
  std::int64_t cached_lo_ = kMax;
  std::int64_t cached_hi_ = kMin;
  WindowTable* cached_ = nullptr;
  Q1Totals totals_;
};

}  // namespace

Q1Totals run_q1_baseline(const std::vector<MeterReading>& events, const Q1Params& params) {
  Q1Baseline q(params);
  return q.run(events);
}

}  // namespace meterstream
