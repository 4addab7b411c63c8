// Job: a built pipeline, ready to run on worker threads.
//
// Pipeline::build() checks the plan and the options and returns a Job; run()
// executes it to the end of its input. A Job runs once; with
// JobOptions::restart, a failed run restarts inside run() / wait() from the
// last committed checkpoint (a fresh set of operator instances, sources and
// sinks reopened), up to the strategy's attempts.
//
// Thread-safety: run()/start()/wait() from one thread; cancel(), finished()
// and metrics() from any thread while it runs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "meterstream/core/status.hpp"
#include "meterstream/runtime/options.hpp"

namespace meterstream {

namespace detail {
class Graph;
class JobRunner;
}  // namespace detail

class Job {
 public:
  // Runs the job to the end of its input (start() then wait()). Returns the
  // first error: a failing source or sink, an exception thrown by user code
  // (kInternal naming the operator), or kCancelled after cancel(). With
  // JobOptions::restart, a retriable error restarts the job (see
  // RestartStrategy) and the error returned is that of the last attempt.
  Status run();

  // Starts the worker threads and returns. Sources open their splits and sinks
  // their writers before any thread starts; their errors are returned here
  // (the first start is not retried: a bad configuration or an unreachable
  // server is reported at once).
  Status start();
  // Waits for a started job to finish; returns as run() does. Restarts
  // (JobOptions::restart) happen inside wait(): finished() may be true for a
  // failed attempt that wait() then restarts.
  Status wait();
  // Asks a running job to stop; wait() then returns kCancelled.
  void cancel();
  // True once a started job's workers have all stopped (wait() then returns
  // at once). Callable from any thread, e.g. to poll progress.
  bool finished() const;

  // Counters and gauges by name, e.g. "source_records", "window_results",
  // "window_late_records", "source_watermark". Callable while running. After
  // a restart they are the current attempt's, plus "job_restarts" (restarts
  // so far).
  std::map<std::string, std::int64_t> metrics() const;

  const JobOptions& options() const;

  Job(Job&&) noexcept;
  Job& operator=(Job&&) noexcept;
  ~Job();

 private:
  friend class Pipeline;
  Job(std::shared_ptr<detail::Graph> graph, JobOptions options);
  std::unique_ptr<detail::JobRunner> runner_;
};

}  // namespace meterstream
