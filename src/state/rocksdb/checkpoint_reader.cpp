#include "state/rocksdb/checkpoint_reader.hpp"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace meterstream::detail {

CheckpointReader::~CheckpointReader() {
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
  db_->Close().PermitUncheckedError();
}

Status CheckpointReader::open(const std::string& dir, const std::vector<std::string>& names,
                              const rocksdb::ColumnFamilyOptions& cf_options,
                              const std::string& context) {
  rocksdb::DBOptions options;
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  std::vector<std::string> existing;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, dir, &existing);
  if (!s.ok()) return data_loss(s, context);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    if (std::find(existing.begin(), existing.end(), name) == existing.end()) {
      return absl::DataLossError(absl::StrCat(
          context, ": the RocksDB checkpoint has no column family '", name, "'"));
    }
    descriptors.emplace_back(name, cf_options);
  }
  // A read-only DB may open some of the column families, but always the
  // default one.
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  rocksdb::DB* db = nullptr;
  s = rocksdb::DB::OpenForReadOnly(options, dir, descriptors, &handles_, &db);
  db_.reset(db);
  if (!s.ok()) return data_loss(s, context);
  return Status();
}

Status CheckpointReader::data_loss(const rocksdb::Status& s, const std::string& context) {
  return absl::DataLossError(absl::StrCat(context, ": RocksDB checkpoint: ", s.ToString()));
}

}  // namespace meterstream::detail
