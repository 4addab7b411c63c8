// Aggregate functions and window results.
//
// An aggregate function has the shape of Flink's AggregateFunction: an
// accumulator that records are added to one at a time, accumulators that merge
// (sessions), and a result:
//
//   struct Usage {
//     struct Acc { std::uint64_t count = 0, wh = 0; };
//     using accumulator_type = Acc;
//     Acc create() const { return {}; }
//     void add(Acc& a, const Reading& r) const { ++a.count; a.wh += r.wh; }
//     void merge(Acc& a, const Acc& b) const { a.count += b.count; a.wh += b.wh; }
//     Acc result(const Acc& a) const { return a; }
//   };
//
// The accumulator must be copyable (and, for the RocksDB backend, have a Codec).
//
// Thread-safety: one instance per worker; calls never overlap.
#pragma once

#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "meterstream/core/time.hpp"

namespace meterstream {

// One fired window of one key: [start, end) and the aggregate's result.
template <typename K, typename R>
struct WindowResult {
  K key;
  Timestamp start;
  Timestamp end;
  R value;
};

// The result type of aggregate function A.
template <typename A>
using aggregate_result_t = std::decay_t<decltype(std::declval<const A&>().result(
    std::declval<const typename A::accumulator_type&>()))>;

// Counts records.
struct Count {
  using accumulator_type = std::uint64_t;
  std::uint64_t create() const { return 0; }
  template <typename T>
  void add(std::uint64_t& acc, const T&) const { ++acc; }
  void merge(std::uint64_t& acc, const std::uint64_t& other) const { acc += other; }
  std::uint64_t result(const std::uint64_t& acc) const { return acc; }
};

// reduce(f): combines records of type T pairwise; f(const T&, const T&) -> T.
template <typename T, typename F>
struct ReduceAggregate {
  F f;
  using accumulator_type = std::optional<T>;
  accumulator_type create() const { return std::nullopt; }
  void add(accumulator_type& acc, const T& v) const {
    if (acc) {
      acc = f(*acc, v);
    } else {
      acc = v;
    }
  }
  void merge(accumulator_type& acc, const accumulator_type& other) const {
    if (other) add(acc, *other);
  }
  T result(const accumulator_type& acc) const { return *acc; }
};

}  // namespace meterstream
