// Internal to the RocksDB state backend: how keys are laid out, and the
// conversions between RocksDB's Slice and std::string_view.
//
// Every key is its key group as 2 big-endian bytes followed by the key bytes,
// so that a key group, or a range of them, is one contiguous key range.
#pragma once

#include <string>
#include <string_view>

#include "rocksdb/slice.h"

namespace meterstream::detail {

// The key group takes 2 bytes of each key; Flink's upper bound as well.
inline constexpr int kMaxKeyGroups = 1 << 15;

inline std::string_view to_view(const rocksdb::Slice& s) { return {s.data(), s.size()}; }
inline rocksdb::Slice to_slice(std::string_view s) { return {s.data(), s.size()}; }

// Appends the 2-byte big-endian key group.
inline void put_key_group(int key_group, std::string* out) {
  out->push_back(static_cast<char>((key_group >> 8) & 0xff));
  out->push_back(static_cast<char>(key_group & 0xff));
}

// The key group of a stored key (its first 2 bytes, which every key has).
inline int key_group_of_key(std::string_view key) {
  return (static_cast<unsigned char>(key[0]) << 8) | static_cast<unsigned char>(key[1]);
}

// The first key of a key group: the bound of a key group range.
inline std::string key_group_key(int key_group) {
  std::string k;
  put_key_group(key_group, &k);
  return k;
}

// The smallest key greater than every key starting with `prefix`. Every key
// starts with a key group < 2^15, whose first byte is < 0xff, so it exists.
inline std::string prefix_successor(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) {
    prefix.pop_back();
  }
  prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

}  // namespace meterstream::detail
