#include "meterstream/runtime/detail/worker.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <thread>

#include "fmt/format.h"
#include "meterstream/state/state_backend.hpp"

namespace meterstream::detail {

void WorkerShared::fail(Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (first_error_.ok()) first_error_ = std::move(status);
  }
  cancelled.store(true, std::memory_order_release);
}

void WorkerShared::log(LogLevel level, std::string_view message) const {
  call_log(options.log, level, message);
}

Status WorkerShared::first_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return first_error_;
}

Worker::Worker(WorkerShared& shared, int index, int parallelism)
    : shared_(shared),
      index_(index),
      parallelism_(parallelism),
      key_groups_(shared.key_group_ranges[static_cast<std::size_t>(index)]),
      reported_(shared.restored_id) {}

Worker::~Worker() = default;

std::size_t Worker::operator_memory_share() const {
  const std::size_t total = shared_.state_backend->operator_memory_bytes();
  if (total == 0) return 0;
  const auto parts = static_cast<std::size_t>(parallelism_) *
                     static_cast<std::size_t>(std::max(1, shared_.stateful_operators));
  return std::max<std::size_t>(total / parts, 1);
}

void Worker::add_instance(std::unique_ptr<OperatorInstance> op, OperatorIds ids) {
  auto context = std::make_unique<OperatorContext>(*this, std::move(ids));
  operators_.push_back(Instance{std::move(op), std::move(context)});
}

void Worker::add_head(std::unique_ptr<StageHead> head, OperatorIds ids) {
  heads_.push_back(head.get());
  add_instance(std::move(head), std::move(ids));
}

bool Worker::poll_heads(int min_stage_exclusive) {
  bool progressed = false;
  for (StageHead* head : heads_) {
    if (head->stage > min_stage_exclusive && !head->finished()) {
      progressed |= head->poll();
    }
  }
  return progressed;
}

void Worker::wait_for_space(int stage) {
  if (shared_.cancelled.load(std::memory_order_relaxed)) throw JobCancelled{};
  if (poll_heads(stage)) {
    blocked_rounds_ = 0;
  } else if (++blocked_rounds_ < 16) {
    // Nothing of ours to do: the consumer on another worker is behind.
    std::this_thread::yield();
  } else {
    // Far behind: sleep rather than spin, so that the consumer gets the core
    // when threads outnumber cores.
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

OperatorInstanceState& Worker::snapshot_of(std::int64_t epoch, const std::string& op) {
  WorkerCheckpointPart& p = pending_[epoch];
  for (OperatorInstanceState& o : p.operators) {
    if (o.op == op) return o;
  }
  OperatorInstanceState& o = p.operators.emplace_back();
  o.op = op;
  o.worker = index_;
  o.key_groups = key_groups_;
  return o;
}

void Worker::maybe_report() {
  CheckpointHub* hub = shared_.checkpoints;
  if (hub == nullptr) return;
  const std::int64_t n = hub->triggered.load(std::memory_order_acquire);
  if (n <= reported_) return;
  for (const StageHead* head : heads_) {
    if (!head->finished() && head->last_barrier < n) return;
  }
  reported_ = n;
  WorkerCheckpointPart report;
  report.id = n;
  // Contributions of checkpoint n and earlier; later ones wait for theirs.
  for (auto it = pending_.begin(); it != pending_.end() && it->first <= n;) {
    report.merge(std::move(it->second));
    it = pending_.erase(it);
  }
  hub->report(unit_, std::move(report));
}

void Worker::fire_processing_time() {
  Timestamp next = kMaxTimestamp;
  for (const Instance& i : operators_) next = std::min(next, i.op->next_processing_time());
  if (next == kMaxTimestamp) return;
  const Timestamp now = processing_time_now();
  if (now < next) return;
  for (const Instance& i : operators_) {
    if (i.op->next_processing_time() <= now) i.op->on_processing_time(now);
  }
}

void Worker::run() {
  std::stable_sort(heads_.begin(), heads_.end(),
                   [](const StageHead* a, const StageHead* b) { return a->stage < b->stage; });
  try {
    for (const Instance& i : operators_) i.op->open(*i.context);
    for (;;) {
      if (shared_.cancelled.load(std::memory_order_relaxed)) break;
      const bool progressed = poll_heads(-1);
      fire_processing_time();
      maybe_report();
      const bool all_finished = std::all_of(heads_.begin(), heads_.end(),
                                            [](const StageHead* h) { return h->finished(); });
      if (all_finished) {
        if (shared_.checkpoints != nullptr) {
          WorkerCheckpointPart rest;
          for (auto& [epoch, part] : pending_) rest.merge(std::move(part));
          pending_.clear();
          shared_.checkpoints->finished(unit_, std::move(rest));
        }
        break;
      }
      if (progressed) {
        idle_rounds_ = 0;
      } else if (++idle_rounds_ < 16) {
        std::this_thread::yield();
      } else {
        // Idle (waiting for a live source or another worker): back off, but
        // stay responsive for processing-time timers and alert latency.
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  } catch (const JobCancelled&) {
    // Another worker failed; its error is the job's.
  } catch (const StatusError& e) {
    shared_.fail(e.status);
  } catch (const std::exception& e) {
    shared_.fail(absl::InternalError(fmt::format("worker {}: {}", index_, e.what())));
  } catch (...) {
    shared_.fail(absl::InternalError(fmt::format("worker {}: unknown exception", index_)));
  }
}

}  // namespace meterstream::detail
