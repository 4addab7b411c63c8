// Helpers of the built-in splits' position() and seek(): record-index
// positions and the errors of seek(). Not API.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "meterstream/core/status.hpp"

namespace meterstream::detail {

// For seek() errors: the position itself when it is short printable text,
// else its size (positions may be arbitrary bytes).
inline std::string describe_position(std::string_view position) {
  const bool printable =
      position.size() <= 40 && std::all_of(position.begin(), position.end(), [](char c) {
        return std::isprint(static_cast<unsigned char>(c)) != 0;
      });
  return printable ? "'" + std::string(position) + "'"
                   : "of " + std::to_string(position.size()) + " bytes";
}

// The kInvalidArgument of a split's seek(): names the split and the position.
inline Status bad_position(const std::string& split, std::string_view position,
                           const std::string& why) {
  return absl::InvalidArgumentError("split '" + split + "': cannot seek to position " +
                                    describe_position(position) + ": " + why);
}

// A position that is a record index: decimal text, readable in checkpoint
// metadata and logs.
inline std::string encode_record_index(std::uint64_t index) { return std::to_string(index); }

// Decodes encode_record_index()'s text, which must be an index in [min, max];
// kInvalidArgument naming `split` otherwise.
inline StatusOr<std::uint64_t> decode_record_index(const std::string& split,
                                                   std::string_view position, std::uint64_t min,
                                                   std::uint64_t max) {
  std::uint64_t index = 0;
  const char* end = position.data() + position.size();
  const auto [ptr, ec] = std::from_chars(position.data(), end, index, 10);
  if (position.empty() || ec != std::errc() || ptr != end) {
    return bad_position(split, position, "not a record index");
  }
  if (index < min || index > max) {
    return bad_position(split, position,
                        "record index outside the split [" + std::to_string(min) + ", " +
                            std::to_string(max) + "]");
  }
  return index;
}

}  // namespace meterstream::detail
