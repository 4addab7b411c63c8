// The little XML that S3's responses need (src/checkpoint/s3/): values of
// flat elements, escaping both ways. Not a parser for anything else. Not API.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace meterstream::detail::s3 {

// Replaces the five predefined entities and numeric character references.
std::string xml_unescape(std::string_view s);

// The unescaped text of every <tag>...</tag> in `xml`, in order.
std::vector<std::string> xml_values(std::string_view xml, std::string_view tag);

// The first of xml_values(), or "" when there is none.
std::string xml_value(std::string_view xml, std::string_view tag);

// Escapes & < > " ' for element text.
std::string xml_escape(std::string_view s);

}  // namespace meterstream::detail::s3
