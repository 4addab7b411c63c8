// A JSON deserializer for the Kafka source, through nlohmann-json: the
// record's value is parsed and converted to T with the user's from_json().
//
// Unlike the rest of the library's headers this one includes
// <nlohmann/json.hpp>, since T's from_json() is the user's code; include it
// only where a JSON source is built. Not included by meterstream.hpp.
//
// Thread-safety: the deserializer keeps no state.
#pragma once

#include <exception>
#include <string>

#include <nlohmann/json.hpp>

#include "meterstream/connectors/kafka/kafka_source.hpp"

namespace meterstream {

// Value bytes -> T with nlohmann::json::parse() and from_json(const json&, T&).
// A value that is not JSON, or that from_json() rejects (a missing field, a
// wrong type), is undecodable with nlohmann's message.
//
// Example:
//   struct Reading { std::uint64_t meter; std::int64_t ts; };
//   void from_json(const nlohmann::json& j, Reading& r) {
//     j.at("meter").get_to(r.meter);
//     j.at("ts").get_to(r.ts);
//   }
//   p.source(ms::kafka_source(options, ms::kafka_json<Reading>()));
template <typename T>
auto kafka_json() {
  return [](const KafkaRecordView& record) -> StatusOr<T> {
    nlohmann::json j = nlohmann::json::parse(record.value.begin(), record.value.end(), nullptr,
                                             /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError("not JSON");
    try {
      return j.get<T>();
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(std::string("JSON does not convert: ") + e.what());
    }
  };
}

}  // namespace meterstream
