#include "meterstream/runtime/job.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "checkpoint/coordinator.hpp"
#include "fmt/format.h"
#include "meterstream/runtime/detail/graph.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/state/state_backend.hpp"

namespace meterstream {

int default_parallelism() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

namespace detail {

namespace {

// The runtime's side of the checkpoint seam (checkpoint/coordinator.hpp):
// the job, its sinks and its sources as the coordinator sees them.
class CoordinatedJob final : public CheckpointedJob {
 public:
  explicit CoordinatedJob(WorkerShared& shared) : shared_(shared) {}
  void fail(Status status) override { shared_.fail(std::move(status)); }
  Status first_error() const override { return shared_.first_error(); }
  bool cancelled() const override { return shared_.cancelled.load(); }
  int parallelism() const override { return shared_.options.parallelism; }
  int max_parallelism() const override { return shared_.options.max_parallelism; }
  std::vector<KeyGroupRange> key_group_ranges() const override {
    return shared_.key_group_ranges;
  }
  MetricRegistry& metrics() override { return shared_.metrics; }
  void log(LogLevel level, std::string_view message) override { shared_.log(level, message); }

 private:
  WorkerShared& shared_;
};

// Sinks and sources may be user code: what their checkpoint methods throw
// becomes an error (kInternal, naming `what`) instead of leaving through
// Job::start() or the coordinator's thread.
template <typename F>
auto guarded(const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return absl::InternalError(fmt::format("{} threw: {}", what, e.what()));
  } catch (...) {
    return absl::InternalError(fmt::format("{} threw a non-standard exception", what));
  }
}

class CoordinatedSink final : public CheckpointedSink {
 public:
  explicit CoordinatedSink(std::shared_ptr<SinkBase> sink) : sink_(std::move(sink)) {}
  bool commit_point() const override { return sink_->commit_point(); }
  StatusOr<std::int64_t> committed_checkpoint() override {
    return guarded("committed_checkpoint()", [&] { return sink_->committed_checkpoint(); });
  }
  Status recover(std::int64_t restored_checkpoint,
                 const std::vector<std::string>& prepared) override {
    return guarded("recover()", [&] { return sink_->recover(restored_checkpoint, prepared); });
  }
  Status persist(const std::vector<std::string>& prepared) override {
    return guarded("persist()", [&] { return sink_->persist(prepared); });
  }
  Status commit(const CheckpointCommit& checkpoint,
                const std::vector<std::string>& prepared) override {
    return guarded("commit()", [&] { return sink_->commit(checkpoint, prepared); });
  }

 private:
  std::shared_ptr<SinkBase> sink_;
};

class CoordinatedSource final : public CheckpointedSource {
 public:
  explicit CoordinatedSource(std::shared_ptr<SourceBase> source) : source_(std::move(source)) {}
  Status checkpoint_committed(const CheckpointCommit& checkpoint) override {
    return guarded("checkpoint_committed()",
                   [&] { return source_->checkpoint_committed(checkpoint); });
  }

 private:
  std::shared_ptr<SourceBase> source_;
};

}  // namespace

// One attempt at running the graph: prepares its nodes, owns the workers,
// their threads, the WorkerShared they share and the checkpoint coordinator.
// A restart replaces it by a fresh one (JobRunner).
class JobAttempt {
 public:
  JobAttempt(std::shared_ptr<Graph> graph, JobOptions options)
      : graph_(std::move(graph)), shared_(std::move(options)), node_limit_(graph_->nodes().size()) {}

  // The nodes that build() validated (see node_limit_), in creation order.
  std::vector<Node*> nodes() const {
    std::vector<Node*> out;
    for (std::size_t i = 0; i < node_limit_; ++i) out.push_back(graph_->nodes()[i].get());
    return out;
  }

  ~JobAttempt() {
    if (!threads_.empty()) {
      cancel();
      join();
    }
    if (coordinator_ && !coordinator_done_) coordinator_->stop();
    close_sinks();
  }

  Status start() {
    if (started_) return absl::FailedPreconditionError("Job::start(): a job runs once");
    started_ = true;
    start_error_ = start_workers();
    // finished() may be polled from another thread: it reads this flag, never
    // start_error_ itself, which it would race with.
    start_failed_.store(!start_error_.ok(), std::memory_order_release);
    return start_error_;
  }

  Status start_workers() {
    const JobOptions& o = shared_.options;
    if (o.state_backend) {
      shared_.state_backend = o.state_backend;
    } else {
      MS_ASSIGN_OR_RETURN(shared_.state_backend, make_memory_state_backend());
    }
    const int p = o.parallelism;
    MS_RETURN_IF_ERROR(open_sinks());
    MS_RETURN_IF_ERROR(start_checkpoints());
    for (const auto& node : nodes()) {
      MS_RETURN_IF_ERROR(node->prepare(p));
      if (restored_) MS_RETURN_IF_ERROR(node->restore(*restored_));
      if (node->stateful) ++shared_.stateful_operators;
    }

    assign_key_groups();

    std::vector<std::shared_ptr<ExchangeChannelsBase>> channels(nodes().size());
    for (const auto& node : nodes()) {
      if (node->exchange) {
        channels[static_cast<std::size_t>(node->id)] =
            node->exchange->make_channels(p, o.channel_capacity);
      }
    }
    for (int w = 0; w < p; ++w) {
      auto main = std::make_unique<Worker>(shared_, w, p);
      std::unique_ptr<Worker> sources;
      if (o.source_threads) sources = std::make_unique<Worker>(shared_, w, p);
      MS_RETURN_IF_ERROR(instantiate(*main, sources ? *sources : *main, channels));
      workers_.push_back(std::move(main));
      if (sources) workers_.push_back(std::move(sources));
    }
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      workers_[i]->set_checkpoint_unit(static_cast<int>(i));
    }
    if (coordinator_) coordinator_->start(static_cast<int>(workers_.size()));
    running_.store(static_cast<int>(workers_.size()));
    threads_started_ = true;
    for (auto& w : workers_) {
      threads_.emplace_back([this, worker = w.get()] {
        worker->run();
        running_.fetch_sub(1);
      });
    }
    return Status();
  }

  Status wait() {
    if (!started_) return absl::FailedPreconditionError("Job::wait(): the job was not started");
    if (!start_error_.ok()) {
      if (coordinator_) coordinator_->stop();
      close_sinks();
      return start_error_;
    }
    join();
    Status s = shared_.first_error();
    if (s.ok() && cancelled_by_user_) s = absl::CancelledError("the job was cancelled");
    if (coordinator_ && !coordinator_done_) {
      coordinator_done_ = true;
      if (s.ok() && shared_.checkpoints != nullptr) {
        s = coordinator_->finish();
      } else {
        coordinator_->stop();
      }
      coordinator_->release_storage();
    }
    close_sinks();
    return s;
  }

  void cancel() {
    cancelled_by_user_ = true;
    shared_.cancelled.store(true);
  }

  std::map<std::string, std::int64_t> metrics() const { return shared_.metrics.snapshot(); }
  bool finished() const {
    return started_ && (start_failed_.load(std::memory_order_acquire) ||
                        (threads_started_ && running_.load() == 0));
  }
  const JobOptions& options() const { return shared_.options; }

 private:
  // Creates every node's instance for one worker index, downstream first, so
  // that a node's consumers exist when it is created; the reverse of creation
  // order is a reverse topological order. Stage 0 (sources and their chains,
  // with the senders of the first exchanges) goes to `sources`, the rest to
  // `main`; they may be the same worker. Either way each ring keeps a single
  // producer thread.
  Status instantiate(Worker& main, Worker& sources,
                     const std::vector<std::shared_ptr<ExchangeChannelsBase>>& channels) {
    const std::vector<Node*> nodes = this->nodes();
    std::vector<Port> inputs(nodes.size());
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
      Node& node = **it;
      Worker& worker = node.stage == 0 ? sources : main;
      std::vector<Port> downstream(node.consumers.size());
      for (std::size_t port = 0; port < node.consumers.size(); ++port) {
        // Each consumer's input on this worker: a chained consumer's
        // collector, or a sender into the consumer's exchange.
        std::vector<Port> targets;
        const Node* first = nullptr;
        for (const int c : node.consumers[port]) {
          // Consumers added after build() are not part of this job.
          if (static_cast<std::size_t>(c) >= nodes.size()) continue;
          const Node& consumer = *nodes[static_cast<std::size_t>(c)];
          if (first == nullptr) first = &consumer;
          targets.push_back(
              consumer.exchange
                  ? consumer.exchange->make_sender(worker, *channels[static_cast<std::size_t>(c)],
                                                   node.stage, consumer.name)
                  : inputs[static_cast<std::size_t>(c)]);
          MS_RETURN_IF_ERROR(check_wiring(node, port, targets.back()));
        }
        if (targets.size() == 1) {
          downstream[port] = targets[0];
        } else if (targets.size() > 1) {
          // Several consumers: a fan-out of the port's record type, which all
          // consumers share as their input type.
          downstream[port] = first->make_fan_out(worker, targets);
          MS_RETURN_IF_ERROR(check_wiring(node, port, downstream[port]));
        }
      }
      StatusOr<Port> input = node.instantiate(worker, downstream);
      if (!input.ok()) {
        return Status(input.status().code(),
                      fmt::format("{}: {}", node.name, std::string(input.status().message())));
      }
      inputs[static_cast<std::size_t>(node.id)] = *input;
      if (node.input >= 0 && !input->connected()) {
        return absl::InternalError(fmt::format("{}: consumes a stream but has no input", node.name));
      }
      if (node.input >= 0) {
        MS_RETURN_IF_ERROR(check_wiring(*nodes[static_cast<std::size_t>(node.input)],
                                        static_cast<std::size_t>(node.input_port), *input));
      }
      if (node.exchange) {
        const Node& producer = *nodes[static_cast<std::size_t>(node.input)];
        std::vector<bool> senders(static_cast<std::size_t>(worker.parallelism()));
        for (int c = 0; c < worker.parallelism(); ++c) {
          senders[static_cast<std::size_t>(c)] = producer.active_on(*graph_, c);
        }
        node.exchange->make_gate(worker, *channels[static_cast<std::size_t>(node.id)], *input,
                                 node.stage, senders);
      }
    }
    return Status();
  }

  // SinkBase::open() of every sink, in node order.
  Status open_sinks() {
    SinkContext context;
    context.checkpoint_interval = std::chrono::duration_cast<std::chrono::milliseconds>(
        shared_.options.checkpoint.interval);
    context.parallelism = shared_.options.parallelism;
    context.metrics = &shared_.metrics;
    for (const Node* node : nodes()) {
      if (!node->sink) continue;
      opened_sinks_.push_back(node->sink);
      Status s = node->sink->open(context);
      if (!s.ok()) {
        return Status(s.code(), fmt::format("{}: {}", node->name, std::string(s.message())));
      }
    }
    return Status();
  }

  // SinkBase::close() of every opened sink, once.
  void close_sinks() {
    for (const auto& sink : opened_sinks_) sink->close();
    opened_sinks_.clear();
  }

  // The coordinator, when the job checkpoints or restores; loads the
  // checkpoint to restore.
  Status start_checkpoints() {
    const CheckpointOptions& c = shared_.options.checkpoint;
    if (c.interval.count() == 0 && c.restore.kind == RestoreFrom::Kind::kNone) return Status();
    std::vector<Coordinator::SinkRef> sinks;
    std::vector<Coordinator::SourceRef> sources;
    for (const Node* node : nodes()) {
      if (node->sink) {
        sinks.push_back({node->uid, node->name, std::make_shared<CoordinatedSink>(node->sink)});
      }
      if (node->source) {
        sources.push_back(
            {node->uid, node->name, std::make_shared<CoordinatedSource>(node->source)});
      }
    }
    MS_ASSIGN_OR_RETURN(coordinator_, Coordinator::create(c, coordinated_job_, std::move(sinks),
                                                          std::move(sources)));
    MS_ASSIGN_OR_RETURN(restored_, coordinator_->restore());
    if (restored_) {
      // State is matched by uid (Stream::uid()).
      const std::vector<Node*> all = nodes();
      for (const auto& [op, part] : restored_->operators) {
        if (std::none_of(all.begin(), all.end(), [&](const Node* n) { return n->uid == op; })) {
          return absl::FailedPreconditionError(fmt::format(
              "checkpoint {} holds state of the operator with uid '{}', which this job does not "
              "have (the pipeline changed? operators without .uid() get \"<kind>#<position>\", "
              "which shifts when steps are added before them: give stateful steps a uid)",
              restored_->id, op));
        }
      }
      for (const auto& [split, snap] : restored_->splits) {
        if (std::none_of(all.begin(), all.end(),
                         [&](const Node* n) { return n->uid == split.first; })) {
          return absl::FailedPreconditionError(fmt::format(
              "checkpoint {} holds positions of the source with uid '{}', which this job does "
              "not have (the pipeline changed? give sources a uid)",
              restored_->id, split.first));
        }
      }
      shared_.restored = restored_.get();
      shared_.restored_id = restored_->id;
    }
    if (c.interval.count() > 0) shared_.checkpoints = coordinator_.get();
    return Status();
  }

  // Contiguous key-group ranges, smaller for the workers that read splits on
  // their own thread (see JobOptions::reader_key_group_share).
  void assign_key_groups() {
    const JobOptions& o = shared_.options;
    std::vector<double> weights(static_cast<std::size_t>(o.parallelism), 1.0);
    if (!o.source_threads) {
      std::vector<bool> reads(weights.size(), false);
      for (const Node* node : nodes()) {
        if (node->input >= 0) continue;
        for (int w = 0; w < o.parallelism; ++w) {
          if (node->active_on(*graph_, w)) reads[static_cast<std::size_t>(w)] = true;
        }
      }
      const auto readers = std::count(reads.begin(), reads.end(), true);
      if (readers > 0 && readers < o.parallelism) {
        for (std::size_t w = 0; w < weights.size(); ++w) {
          if (reads[w]) weights[w] = o.reader_key_group_share;
        }
      }
    }
    shared_.key_group_ranges = key_group_ranges(o.max_parallelism, weights);
    shared_.key_group_owner.assign(static_cast<std::size_t>(o.max_parallelism), 0);
    for (std::size_t w = 0; w < shared_.key_group_ranges.size(); ++w) {
      const KeyGroupRange r = shared_.key_group_ranges[w];
      for (int kg = r.first; kg <= r.last; ++kg) {
        shared_.key_group_owner[static_cast<std::size_t>(kg)] = static_cast<int>(w);
      }
    }
  }

  void join() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  std::shared_ptr<Graph> graph_;
  WorkerShared shared_;
  CoordinatedJob coordinated_job_{shared_};
  std::unique_ptr<Coordinator> coordinator_;
  std::shared_ptr<const RestoredCheckpoint> restored_;
  std::vector<std::shared_ptr<SinkBase>> opened_sinks_;
  bool coordinator_done_ = false;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> started_{false};
  std::atomic<bool> threads_started_{false};
  std::atomic<int> running_{0};
  Status start_error_;  // written by start(); read by the thread that waits
  std::atomic<bool> start_failed_{false};
  // The nodes that build() validated: nodes added to the pipeline afterwards
  // (or consumers attached to them) are not part of this job.
  std::size_t node_limit_ = 0;
  std::atomic<bool> cancelled_by_user_{false};
};

// The Job behind the API: the current JobAttempt, and the restart
// strategy that replaces it by a fresh one after a retriable failure. The
// graph's nodes are prepared per run, so a new JobAttempt over the same graph
// is a new run of the same pipeline.
class JobRunner {
 public:
  JobRunner(std::shared_ptr<Graph> graph, JobOptions options)
      : graph_(graph), options_(options),
        state_(std::make_unique<JobAttempt>(std::move(graph), std::move(options))) {}

  Status start() {
    Status s = current()->start();
    start_failed_ = !s.ok();
    return s;
  }

  Status wait() {
    Status s = current()->wait();
    const RestartStrategy& r = options_.restart;
    // The first start's errors are the caller's to see (start() returned
    // them): a bad configuration or an unreachable server is not retried.
    while (!s.ok() && !start_failed_ && !cancelled_.load() && restarts_.load() < r.max_attempts &&
           std::find(r.retriable.begin(), r.retriable.end(), s.code()) != r.retriable.end()) {
      const int attempt = restarts_.fetch_add(1) + 1;
      call_log(options_.log, LogLevel::kWarning,
               fmt::format("the job failed ({}); restart {} of {} in {} ms", s.ToString(),
                           attempt, r.max_attempts, r.delay.count()));
      // The failed attempt is gone before the next one opens its sinks (a
      // transactional sink's lease and producers are released by then).
      JobOptions next = options_;
      next.checkpoint.restore = RestoreFrom::latest();
      replace(nullptr);
      const auto until = std::chrono::steady_clock::now() + r.delay;
      while (!cancelled_.load() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            std::chrono::milliseconds(20), until - std::chrono::steady_clock::now()));
      }
      if (cancelled_.load()) return absl::CancelledError("the job was cancelled");
      JobAttempt* state = replace(std::make_unique<JobAttempt>(graph_, std::move(next)));
      s = state->start();
      if (s.ok()) {
        if (cancelled_.load()) state->cancel();
        s = state->wait();
      } else {
        (void)state->wait();  // releases what the failed start opened
      }
    }
    return s;
  }

  void cancel() {
    cancelled_.store(true);
    std::lock_guard<std::mutex> lock(mu_);
    if (state_) state_->cancel();
  }

  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return state_ == nullptr || state_->finished();
  }

  std::map<std::string, std::int64_t> metrics() const {
    std::map<std::string, std::int64_t> m;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (state_) m = state_->metrics();
    }
    m["job_restarts"] = restarts_.load();
    return m;
  }

  const JobOptions& options() const { return options_; }

 private:
  JobAttempt* current() {
    std::lock_guard<std::mutex> lock(mu_);
    return state_.get();
  }
  // Installs `next` as the current attempt; the old one is destroyed outside
  // the lock (it joins threads and closes sinks).
  JobAttempt* replace(std::unique_ptr<JobAttempt> next) {
    std::unique_ptr<JobAttempt> old;
    JobAttempt* raw = next.get();
    {
      std::lock_guard<std::mutex> lock(mu_);
      old = std::move(state_);
      state_ = std::move(next);
    }
    old.reset();
    return raw;
  }

  std::shared_ptr<Graph> graph_;
  const JobOptions options_;
  mutable std::mutex mu_;
  std::unique_ptr<JobAttempt> state_;  // guarded by mu_ (replaced on restart)
  std::atomic<int> restarts_{0};
  std::atomic<bool> cancelled_{false};
  bool start_failed_ = false;  // the first start failed: wait() does not restart
};

}  // namespace detail

Job::Job(std::shared_ptr<detail::Graph> graph, JobOptions options)
    : runner_(std::make_unique<detail::JobRunner>(std::move(graph), std::move(options))) {}
Job::Job(Job&&) noexcept = default;
Job& Job::operator=(Job&&) noexcept = default;
Job::~Job() = default;

Status Job::run() {
  MS_RETURN_IF_ERROR(start());
  return wait();
}
Status Job::start() { return runner_->start(); }
Status Job::wait() { return runner_->wait(); }
void Job::cancel() { runner_->cancel(); }
bool Job::finished() const { return runner_->finished(); }
std::map<std::string, std::int64_t> Job::metrics() const { return runner_->metrics(); }
const JobOptions& Job::options() const { return runner_->options(); }

}  // namespace meterstream
