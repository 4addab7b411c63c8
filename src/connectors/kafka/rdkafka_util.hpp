// Small helpers around librdkafka's C API for the Kafka connectors: owning
// handles, configuration with errors that name the property. Not API.
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>

#include "fmt/format.h"

#include "meterstream/core/status.hpp"

namespace meterstream::detail {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};

using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, EventDeleter>;
using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;

// Sets `name` = `value` on `conf`; kInvalidArgument "<what>: property 'name':
// librdkafka's message" when librdkafka rejects it.
inline Status set_property(rd_kafka_conf_t* conf, const std::string& name,
                           const std::string& value, const std::string& what) {
  char errstr[512] = {0};
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) !=
      RD_KAFKA_CONF_OK) {
    return absl::InvalidArgumentError(
        fmt::format("{}: librdkafka property '{}' = '{}': {}", what, name, value, errstr));
  }
  return Status();
}

inline std::string err_text(rd_kafka_resp_err_t err) {
  return fmt::format("{} ({})", rd_kafka_err2str(err), rd_kafka_err2name(err));
}

}  // namespace meterstream::detail
