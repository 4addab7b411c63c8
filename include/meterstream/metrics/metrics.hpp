// Metrics: counters and gauges that operators update and a running job reports.
//
// Each worker thread updates cells of its own (no contention on the hot path);
// a snapshot combines the cells registered under one name: counters are summed,
// gauges take the minimum or the maximum of their cells.
//
// Thread-safety: MetricRegistry is thread-safe; a cell is written by one thread
// and may be read by any.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace meterstream {

// A monotonically increasing count, written by one thread.
class Counter {
 public:
  void add(std::int64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// A value that goes up and down (a watermark, a queue length), written by one thread.
class Gauge {
 public:
  void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// How the cells of one gauge name combine in a snapshot.
enum class GaugeMerge { kMin, kMax, kSum };

// A job's metrics.
class MetricRegistry {
 public:
  // Returns a new cell counted under `name`. The registry owns it; it lives as
  // long as the registry.
  Counter* counter(std::string_view name);
  // Returns a new gauge cell under `name`, combined with the others by `merge`.
  // The first registration of a name decides its merge.
  Gauge* gauge(std::string_view name, GaugeMerge merge, std::int64_t initial = 0);

  // The current value of every name.
  std::map<std::string, std::int64_t> snapshot() const;

 private:
  struct Entry {
    bool is_gauge = false;
    GaugeMerge merge = GaugeMerge::kSum;
    std::vector<std::unique_ptr<Counter>> counters;
    std::vector<std::unique_ptr<Gauge>> gauges;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace meterstream
