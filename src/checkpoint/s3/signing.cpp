// SigV4 canonical forms (s3/signing.hpp).
#include "checkpoint/s3/signing.hpp"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "checkpoint/storage_util.hpp"

namespace meterstream::detail::s3 {

// Percent-encodes like SigV4's canonical form: everything but A-Z a-z 0-9
// - _ . ~ (and '/' when keep_slash) as %XX with upper-case hex.
std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3 / 2);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~' || (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

// A canonical query string from (key, value) pairs: sorted, encoded, and
// "key=" for a bare key.
std::string make_query(
    std::vector<std::pair<std::string, std::string>> params) {
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out.push_back('&');
    detail::append(&out, uri_encode(k, false), "=", uri_encode(v, false));
  }
  return out;
}

std::string sigv4_scope(std::string_view region) {
  return detail::cat("aws:amz:", region, ":s3");
}

}  // namespace meterstream::detail::s3
