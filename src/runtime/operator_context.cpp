#include "meterstream/runtime/detail/operator_context.hpp"

#include "fmt/format.h"

#include "meterstream/runtime/detail/worker.hpp"

namespace meterstream::detail {

OperatorContext::OperatorContext(Worker& worker, OperatorIds ids)
    : worker_(&worker),
      ids_(std::move(ids)),
      hub_(worker.checkpoint_hub()),
      index_(worker.index()),
      parallelism_(worker.parallelism()),
      max_parallelism_(worker.max_parallelism()),
      key_groups_(worker.key_groups()) {}

const JobOptions& OperatorContext::options() const { return worker_->options(); }

MetricRegistry& OperatorContext::metrics() const { return worker_->metrics(); }

StateBackend* OperatorContext::state_backend() const { return worker_->state_backend(); }

std::size_t OperatorContext::operator_memory_share() const {
  return worker_->operator_memory_share();
}

const RestoredCheckpoint* OperatorContext::restored() const { return worker_->restored(); }

std::int64_t OperatorContext::restored_id() const { return worker_->restored_id(); }

const RestoredCheckpoint::Operator* OperatorContext::restored_part() const {
  const RestoredCheckpoint* r = worker_->restored();
  return r != nullptr ? r->find(ids_.uid) : nullptr;
}

// State is checkpointed under the operator's uid: without one, operators
// would share one entry and restore each other's state.
static void require_uid(const OperatorIds& ids, const char* what) {
  if (ids.uid.empty()) {
    throw StatusError{absl::InternalError(
        fmt::format("operator '{}' has no uid for {} (Worker::add_operator() without its ids)",
                    ids.name, what))};
  }
}

OperatorInstanceState& OperatorContext::snapshot_of(std::int64_t epoch) {
  require_uid(ids_, "its checkpoint state");
  return worker_->snapshot_of(epoch, ids_.uid);
}

void OperatorContext::fail_checkpoint(std::int64_t epoch, Status status) {
  worker_->fail_checkpoint(epoch, std::move(status));
}

void OperatorContext::add_split_state(std::int64_t epoch, SplitState split) {
  worker_->add_split_state(epoch, std::move(split));
}

void OperatorContext::add_prepared(std::int64_t epoch, SinkPrepared prepared) {
  worker_->add_prepared(epoch, std::move(prepared));
}

void OperatorContext::add_sync_time(std::int64_t epoch, std::int64_t us) {
  worker_->add_sync_time(epoch, us);
}

std::string OperatorContext::store_snapshot_dir(std::int64_t id) const {
  require_uid(ids_, "its store's snapshot");
  return worker_->store_snapshot_dir(id, ids_.uid);
}

}  // namespace meterstream::detail
