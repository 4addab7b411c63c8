// A checkpoint storage that forwards every call to another: tests derive
// from it and override the call they break (a put that fails or waits).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meterstream/checkpoint/checkpoint_storage.hpp"

namespace meterstream::test {

class ForwardingStorage : public CheckpointStorage {
 public:
  explicit ForwardingStorage(std::shared_ptr<CheckpointStorage> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  Status put(std::string_view path, std::string_view bytes) override {
    return inner_->put(path, bytes);
  }
  StatusOr<std::string> get(std::string_view path) override { return inner_->get(path); }
  StatusOr<bool> exists(std::string_view path) override { return inner_->exists(path); }
  StatusOr<std::vector<std::string>> list(std::string_view prefix) override {
    return inner_->list(prefix);
  }
  Status remove(std::string_view path) override { return inner_->remove(path); }
  Status put_file(std::string_view path, const std::string& local_file) override {
    return inner_->put_file(path, local_file);
  }
  Status get_file(std::string_view path, const std::string& local_file) override {
    return inner_->get_file(path, local_file);
  }

 protected:
  std::shared_ptr<CheckpointStorage> inner_;
};

}  // namespace meterstream::test
