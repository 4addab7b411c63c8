// Internal to the RocksDB state backend: RocksDB's errors as Status.
#pragma once

#include <string>

#include "meterstream/core/status.hpp"
#include "rocksdb/status.h"

namespace meterstream::detail {

// A RocksDB error as a Status. `context` says what failed, on what.
Status from_rocksdb(const rocksdb::Status& s, const std::string& context);

}  // namespace meterstream::detail
