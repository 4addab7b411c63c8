// The canonical forms of AWS Signature Version 4 that requests are built in
// (src/checkpoint/s3/). libcurl computes the signature itself
// (CURLOPT_AWS_SIGV4) over the URL as written, so the URL must already be
// canonical: keys sorted, values percent-encoded, bare keys as "key=". Not API.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meterstream::detail::s3 {

// Percent-encodes like SigV4's canonical form: everything but A-Z a-z 0-9
// - _ . ~ (and '/' when keep_slash) as %XX with upper-case hex.
std::string uri_encode(std::string_view s, bool keep_slash);

// A canonical query string from (key, value) pairs: sorted, encoded, and
// "key=" for a bare key.
std::string make_query(std::vector<std::pair<std::string, std::string>> params);

// CURLOPT_AWS_SIGV4's provider string for S3 in `region`.
std::string sigv4_scope(std::string_view region);

}  // namespace meterstream::detail::s3
