#include "meterstream/api/pipeline.hpp"

#include "fmt/format.h"

namespace meterstream {

Pipeline::Pipeline() : graph_(std::make_shared<detail::Graph>()) {}

namespace {

Status validate_options(JobOptions& o) {
  if (o.max_parallelism < 1) {
    return absl::InvalidArgumentError(
        fmt::format("JobOptions.max_parallelism must be >= 1, got {}", o.max_parallelism));
  }
  if (o.parallelism == -1) o.parallelism = std::min(default_parallelism(), o.max_parallelism);
  if (o.parallelism < 1) {
    return absl::InvalidArgumentError(fmt::format(
        "JobOptions.parallelism must be >= 1 (worker threads), got {}", o.parallelism));
  }
  if (o.parallelism > o.max_parallelism) {
    return absl::InvalidArgumentError(
        fmt::format("JobOptions.parallelism ({}) must not exceed max_parallelism ({})",
                    o.parallelism, o.max_parallelism));
  }
  if (o.batch_size == 0) return absl::InvalidArgumentError("JobOptions.batch_size must be >= 1");
  if (!(o.reader_key_group_share > 0.0 && o.reader_key_group_share <= 1.0)) {
    return absl::InvalidArgumentError(fmt::format(
        "JobOptions.reader_key_group_share must be in (0, 1], got {}", o.reader_key_group_share));
  }
  if (o.channel_capacity == 0) {
    return absl::InvalidArgumentError("JobOptions.channel_capacity must be >= 1");
  }
  if (o.restart.max_attempts < 0 || o.restart.delay.count() < 0) {
    return absl::InvalidArgumentError(fmt::format(
        "JobOptions.restart: max_attempts ({}) and delay ({} ms) must be >= 0",
        o.restart.max_attempts, o.restart.delay.count()));
  }
  if (o.restart.max_attempts > 0 && o.checkpoint.interval.count() <= 0) {
    return absl::InvalidArgumentError(
        "JobOptions.restart needs checkpointing (checkpoint.interval > 0): a restart resumes "
        "from the last checkpoint, and without one it would replay the input from its start");
  }
  return Status();
}

}  // namespace

StatusOr<Job> Pipeline::build(JobOptions options) const {
  MS_RETURN_IF_ERROR(graph_->error());
  MS_RETURN_IF_ERROR(validate_options(options));
  bool has_source = false;
  for (const auto& node : graph_->nodes()) {
    has_source |= node->input < 0;
    for (std::size_t port = 0; port < node->consumers.size(); ++port) {
      if (node->consumers[port] < 0 && !node->side_output[port]) {
        return absl::FailedPreconditionError(fmt::format(
            "the output of '{}' is never consumed: end it in a sink (e.g. .sink(...))",
            node->name));
      }
    }
  }
  if (!has_source) return absl::FailedPreconditionError("the pipeline has no source");
  return Job(graph_, std::move(options));
}

Status Pipeline::run(JobOptions options) const {
  MS_ASSIGN_OR_RETURN(Job job, build(std::move(options)));
  return job.run();
}

}  // namespace meterstream
