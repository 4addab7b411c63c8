// Key hashing and key groups.
//
// Every key maps to a key group: key_group = hash(key) % max_parallelism. A
// worker owns a contiguous range of key groups, and keyed state is stored by key
// group, so that a job can be restored with another number of workers by
// reassigning ranges (Flink's KeyGroupRangeAssignment).
//
// The hash is stable across processes and versions (it is part of the
// checkpoint format); do not replace it with std::hash or absl::Hash, whose
// values may change between runs.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace meterstream {

// Default number of key groups (Flink's default max parallelism is 128 too).
inline constexpr int kDefaultMaxParallelism = 128;

// MurmurHash3's 64-bit finaliser: a bijection with good avalanche.
constexpr std::uint64_t fmix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// Stable 64-bit hash of a byte string (FNV-1a over 8-byte words, then fmix64).
inline std::uint64_t hash_bytes(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ bytes.size();
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  h = (h ^ tail) * 0x100000001b3ULL;
  return fmix64(h);
}

// KeyHash<K> gives the stable hash of a key. Integral and enum keys, strings
// and string views are supported; specialise it for your own key types
// (combine fields with fmix64 or hash_bytes).
template <typename K, typename Enable = void>
struct KeyHash;

template <typename K>
struct KeyHash<K, std::enable_if_t<std::is_integral_v<K> || std::is_enum_v<K>>> {
  std::uint64_t operator()(K key) const {
    return fmix64(static_cast<std::uint64_t>(key));
  }
};

template <>
struct KeyHash<std::string> {
  std::uint64_t operator()(const std::string& key) const { return hash_bytes(key); }
};

template <>
struct KeyHash<std::string_view> {
  std::uint64_t operator()(std::string_view key) const { return hash_bytes(key); }
};

// The key group of a key hash.
inline int key_group_of_hash(std::uint64_t hash, int max_parallelism) {
  return static_cast<int>(hash % static_cast<std::uint64_t>(max_parallelism));
}

template <typename K>
int key_group_of(const K& key, int max_parallelism) {
  return key_group_of_hash(KeyHash<K>{}(key), max_parallelism);
}

// A contiguous, inclusive range of key groups [first, last]; empty when last < first.
struct KeyGroupRange {
  int first = 0;
  int last = -1;

  bool contains(int key_group) const { return key_group >= first && key_group <= last; }
  int size() const { return last >= first ? last - first + 1 : 0; }
  bool operator==(const KeyGroupRange& o) const { return first == o.first && last == o.last; }
};

// The key groups that worker `index` of `parallelism` owns (Flink's
// computeKeyGroupRangeForOperatorIndex). Requires 0 < parallelism <= max_parallelism.
inline KeyGroupRange key_group_range_for_worker(int max_parallelism, int parallelism,
                                                int index) {
  const int first = (index * max_parallelism + parallelism - 1) / parallelism;
  const int last = ((index + 1) * max_parallelism - 1) / parallelism;
  return KeyGroupRange{first, last};
}

// Contiguous key-group ranges for workers of unequal `weights` (> 0): worker i
// gets about max_parallelism * weights[i] / sum(weights) key groups, at least
// one when max_parallelism >= weights.size(). Equal weights give
// key_group_range_for_worker()'s ranges.
inline std::vector<KeyGroupRange> key_group_ranges(int max_parallelism,
                                                   const std::vector<double>& weights) {
  const int n = static_cast<int>(weights.size());
  double total = 0;
  for (double w : weights) total += w;
  std::vector<KeyGroupRange> ranges(weights.size());
  double cumulative = 0;
  int first = 0;
  for (int i = 0; i < n; ++i) {
    cumulative += weights[static_cast<std::size_t>(i)];
    // Leave at least one key group for each worker after this one.
    int end = static_cast<int>(static_cast<double>(max_parallelism) * cumulative / total + 0.5);
    end = std::max(end, std::min(first + 1, max_parallelism));
    end = std::min(end, max_parallelism - (n - 1 - i));
    if (i == n - 1) end = max_parallelism;
    ranges[static_cast<std::size_t>(i)] = KeyGroupRange{first, end - 1};
    first = std::max(first, end);
  }
  return ranges;
}

// The worker that owns `key_group` under key_group_range_for_worker()'s equal
// ranges. A running job may weight its ranges (JobOptions::
// reader_key_group_share): ask the job's own assignment there, not this.
inline int worker_for_key_group(int max_parallelism, int parallelism, int key_group) {
  return key_group * parallelism / max_parallelism;
}

}  // namespace meterstream
