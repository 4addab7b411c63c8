// RecordBatch: the unit in which records move between operators.
//
// Records travel in batches (hundreds to thousands) so that per-record overhead
// is a few nanoseconds; watermarks, end-of-stream and later checkpoint barriers
// travel between batches. A batch is structure-of-arrays: the values and, at the
// same index, each record's event timestamp (kMinTimestamp when the stream has no
// timestamps yet).
//
// Thread-safety: a batch is owned by one thread at a time.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "meterstream/core/time.hpp"

namespace meterstream {

template <typename T>
struct RecordBatch {
  std::vector<T> values;
  std::vector<Timestamp> timestamps;

  std::size_t size() const { return values.size(); }
  bool empty() const { return values.empty(); }
  void clear() {
    values.clear();
    timestamps.clear();
  }
  void reserve(std::size_t n) {
    values.reserve(n);
    timestamps.reserve(n);
  }
  void push_back(const T& value, Timestamp ts) {
    values.push_back(value);
    timestamps.push_back(ts);
  }
  void push_back(T&& value, Timestamp ts) {
    values.push_back(std::move(value));
    timestamps.push_back(ts);
  }
};

}  // namespace meterstream
