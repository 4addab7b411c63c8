// Pipeline: the entry point of the DSL.
//
// A pipeline is a plan: sources, transformations, windows and sinks added
// through typed stream handles. build() checks the plan and the options and
// returns a Job that runs it on worker threads.
//
// Example:
//   ms::Pipeline p;
//   p.source(ms::smart_meter_source(workload))
//       .with_watermarks(ms::bounded_out_of_orderness(5min), &ms::MeterReading::ts_ms)
//       .key_by(&ms::MeterReading::meter_id)
//       .window(ms::tumbling(1min))
//       .aggregate(Usage{})
//       .sink(ms::collect_into(results));
//   MS_ASSIGN_OR_RETURN(ms::Job job, p.build());
//   MS_RETURN_IF_ERROR(job.run());
//
// Thread-safety: build a pipeline from one thread. A built Job does not refer
// to the Pipeline object; build a pipeline once per job.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "meterstream/api/detail/nodes.hpp"
#include "meterstream/api/detail/stream_core.hpp"
#include "meterstream/api/stream.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/runtime/job.hpp"
#include "meterstream/runtime/options.hpp"

namespace meterstream {

// A source's output stream, with its undecodable-records side output.
template <typename T>
class SourceStream : public Stream<T> {
 public:
  // Descriptions of records the source could not decode (side output). They are
  // counted ("source_undecodable") whether or not this stream is used.
  Stream<std::string> undecodable() const {
    return detail::StreamAccess::stream<std::string>(this->core_.side_output(1));
  }

  // See Stream::name() and Stream::uid() (a source's positions in
  // checkpoints are kept under its uid); they keep undecodable() available.
  SourceStream name(std::string name) const { return SourceStream(Stream<T>::name(std::move(name))); }
  SourceStream uid(std::string uid) const { return SourceStream(Stream<T>::uid(std::move(uid))); }

 private:
  friend class Pipeline;
  explicit SourceStream(Stream<T> s) : Stream<T>(std::move(s)) {}
};

class Pipeline {
 public:
  Pipeline();

  // Adds a source (from_vector(), smart_meter_source(), file_source(), or your
  // own Source<T>).
  template <typename T>
  SourceStream<T> source(std::shared_ptr<Source<T>> source) {
    if (!source) {
      graph_->record_error(absl::InvalidArgumentError("source(): the source is null"));
      return SourceStream<T>(detail::StreamAccess::stream<T>(detail::StreamCore{graph_, -1, 0, 0, nullptr}));
    }
    const std::string name = source->name();
    const int id = graph_->add(std::make_unique<detail::SourceNode<T>>(std::move(source)),
                               "source:" + name, detail::port_types<T, std::string>());
    graph_->node(id).side_output[1] = true;
    return SourceStream<T>(detail::StreamAccess::stream<T>(detail::StreamCore{graph_, id, 0, 0, nullptr}));
  }

  // Checks the plan and `options`; the first problem found is returned
  // (kInvalidArgument or kFailedPrecondition, naming the step) before any
  // record flows.
  StatusOr<Job> build(JobOptions options = {}) const;

  // build() then Job::run().
  Status run(JobOptions options = {}) const;

 private:
  std::shared_ptr<detail::Graph> graph_;
};

}  // namespace meterstream
