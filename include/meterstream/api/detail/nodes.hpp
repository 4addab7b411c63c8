// Typed nodes and exchanges of the logical plan. Not API.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "meterstream/core/key_group.hpp"
#include "meterstream/runtime/detail/exchange.hpp"
#include "meterstream/runtime/detail/fan_out.hpp"
#include "meterstream/runtime/detail/graph.hpp"
#include "meterstream/runtime/detail/source_head.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream::detail {

// A node whose instance is made by a function: most DSL operators.
class FnNode final : public Node {
 public:
  // make(worker, node uid and name, downstream ports) -> the instance's
  // input port.
  using Make =
      std::function<StatusOr<Port>(Worker&, const OperatorIds&, const std::vector<Port>&)>;
  explicit FnNode(Make make) : make_(std::move(make)) {}
  StatusOr<Port> instantiate(Worker& worker, const std::vector<Port>& downstream) override {
    return make_(worker, ids(), downstream);
  }

 private:
  Make make_;
};

template <typename T>
class SourceNode final : public Node {
 public:
  explicit SourceNode(std::shared_ptr<Source<T>> source) : source_(std::move(source)) {
    this->source = source_;
  }

  Status prepare(int /*parallelism*/) override {
    MS_ASSIGN_OR_RETURN(splits_, source_->create_splits());
    return Status();
  }

  bool active_on(const Graph&, int worker) const override {
    return static_cast<std::size_t>(worker) < splits_.size();
  }

  Status restore(const RestoredCheckpoint& checkpoint) override {
    for (const auto& [key, split] : checkpoint.splits) {
      if (key.first != uid) continue;
      if (key.second < 0 || static_cast<std::size_t>(key.second) >= splits_.size()) {
        return absl::FailedPreconditionError(
            "checkpoint " + std::to_string(checkpoint.id) + " has split " +
            std::to_string(key.second) + " of source '" + name + "' (uid '" + uid +
            "'), which now has " +
            std::to_string(splits_.size()) + " splits");
      }
      SplitReader<T>& reader = *splits_[static_cast<std::size_t>(key.second)];
      if (split.ended && !resumes(checkpoint, split, reader)) continue;
      Status s = reader.seek(split.position);
      if (!s.ok()) {
        return Status(s.code(), "restoring split '" + reader.name() + "' of source '" + name +
                                    "': " + std::string(s.message()));
      }
    }
    return Status();
  }

  StatusOr<Port> instantiate(Worker& worker, const std::vector<Port>& downstream) override {
    // Split i goes to worker i mod P.
    std::vector<std::unique_ptr<SplitReader<T>>> mine;
    std::vector<int> ids;
    for (std::size_t i = static_cast<std::size_t>(worker.index()); i < splits_.size();
         i += static_cast<std::size_t>(worker.parallelism())) {
      mine.push_back(std::move(splits_[i]));
      ids.push_back(static_cast<int>(i));
    }
    worker.add_head(std::make_unique<SourceHead<T>>(
        name, uid, std::move(mine), std::move(ids), event_time_,
        downstream[0].get<T>(), downstream[1].get<std::string>()),
        OperatorIds{uid, name});
    return Port();
  }

  std::optional<EventTimeSpec<T>> event_time_;

 private:
  std::shared_ptr<Source<T>> source_;
  std::vector<std::unique_ptr<SplitReader<T>>> splits_;
};

template <typename T, typename PartitionFactory>
class ExchangeSpec final : public ExchangeSpecBase {
 public:
  explicit ExchangeSpec(PartitionFactory factory) : factory_(std::move(factory)) {}

  std::shared_ptr<ExchangeChannelsBase> make_channels(int parallelism,
                                                      std::size_t capacity) override {
    return std::make_shared<Channels>(
        std::make_shared<ExchangeChannels<T>>(parallelism, capacity));
  }
  Port make_sender(Worker& worker, const ExchangeChannelsBase& channels, int stage,
                   const std::string& consumer) override {
    auto partition = factory_(worker);
    using Sender = ExchangeSender<T, decltype(partition)>;
    return Port(static_cast<Collector<T>*>(worker.add_operator(std::make_unique<Sender>(
        "partitioning into " + consumer, rings(channels), std::move(partition), stage))));
  }
  void make_gate(Worker& worker, const ExchangeChannelsBase& channels, Port downstream, int stage,
                 const std::vector<bool>& senders) override {
    auto gate = std::make_unique<InputGate<T>>(rings(channels), worker.index(),
                                               downstream.get<T>(), senders);
    gate->stage = stage;
    worker.add_head(std::move(gate));
  }

 private:
  // This edge's rings, as the runtime holds them.
  struct Channels final : ExchangeChannelsBase {
    explicit Channels(std::shared_ptr<ExchangeChannels<T>> r) : rings(std::move(r)) {}
    std::shared_ptr<ExchangeChannels<T>> rings;
  };
  // The runtime hands each spec the channels it made (make_channels()).
  static const std::shared_ptr<ExchangeChannels<T>>& rings(const ExchangeChannelsBase& channels) {
    return static_cast<const Channels&>(channels).rings;
  }

  PartitionFactory factory_;
};

// key_by: records go to the worker that owns their key's key group.
template <typename T, typename KeyFn>
struct KeyPartition {
  using K = std::decay_t<std::invoke_result_t<const KeyFn&, const T&>>;
  KeyFn key_fn;
  std::vector<int> owner;  // key group -> worker
  std::uint64_t mask = 0;  // owner.size() - 1 when a power of two (the default 128)

  int operator()(const T& v) const {
    const std::uint64_t h = KeyHash<K>{}(std::invoke(key_fn, v));
    return owner[mask != 0 ? (h & mask) : (h % owner.size())];
  }
};

template <typename T, typename KeyFn>
auto key_exchange(KeyFn key_fn) {
  auto factory = [key_fn](Worker& w) {
    KeyPartition<T, KeyFn> p{key_fn, {}};
    p.owner.resize(static_cast<std::size_t>(w.max_parallelism()));
    if ((p.owner.size() & (p.owner.size() - 1)) == 0) p.mask = p.owner.size() - 1;
    for (int kg = 0; kg < w.max_parallelism(); ++kg) {
      p.owner[static_cast<std::size_t>(kg)] =
          w.owner_of(kg);
    }
    return p;
  };
  return std::make_shared<ExchangeSpec<T, decltype(factory)>>(std::move(factory));
}

// rebalance: records go round-robin to every worker.
template <typename T>
std::shared_ptr<ExchangeSpecBase> rebalance_exchange() {
  auto factory = [](Worker& w) {
    return [n = w.parallelism(), next = w.index()](const T&) mutable {
      next = next + 1 == n ? 0 : next + 1;
      return next;
    };
  };
  return std::make_shared<ExchangeSpec<T, decltype(factory)>>(std::move(factory));
}

}  // namespace meterstream::detail
