// Internal to the RocksDB state backend: a checkpoint folder opened
// read-only, for a restore. Several restores may read one folder at once: a
// read-only DB takes no LOCK and writes nothing into the folder (not even an
// info LOG).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "meterstream/core/status.hpp"
#include "rocksdb/db.h"
#include "rocksdb/options.h"

namespace meterstream::detail {

class CheckpointReader {
 public:
  CheckpointReader() = default;
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;
  ~CheckpointReader();

  // Opens the column families `names` of the checkpoint in `dir` with the
  // live DB's options (its merge operator resolves the appends). Errors are
  // kDataLoss prefixed with `context`: a checkpoint that cannot be read, or
  // lacks one of them.
  Status open(const std::string& dir, const std::vector<std::string>& names,
              const rocksdb::ColumnFamilyOptions& cf_options, const std::string& context);

  rocksdb::DB* db() const { return db_.get(); }
  // The handle of names[i].
  rocksdb::ColumnFamilyHandle* handle(std::size_t i) const { return handles_[i]; }

  static Status data_loss(const rocksdb::Status& s, const std::string& context);

 private:
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace meterstream::detail
