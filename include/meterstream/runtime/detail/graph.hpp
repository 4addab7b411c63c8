// The logical plan that the DSL builds and Job runs. Not API.
//
// Nodes are added in creation order, which is a topological order: a node's
// input is always an earlier node. An output port may have any number of
// consumers (a stream handle may be used by several steps; each worker then
// hands the port's output to each of them through a FanOut, fan_out.hpp); the
// edge into a node is either chained (direct calls on the same worker) or an
// exchange (key_by, rebalance).
#pragma once

#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include "meterstream/core/status.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream::detail {

// A wiring end: a Collector<T>* with its record type, so that the untyped
// graph can hand collectors between typed nodes. The type is checked once,
// when a node takes its downstream collectors (get<T>()); records then flow
// through the typed pointer, with nothing per record.
class Port {
 public:
  Port() = default;  // unconnected
  template <typename T>
  explicit Port(Collector<T>* collector)
      : collector_(collector), type_(collector != nullptr ? &typeid(T) : nullptr) {}

  bool connected() const { return collector_ != nullptr; }
  // The record type; typeid(void) when unconnected.
  const std::type_info& type() const { return type_ != nullptr ? *type_ : typeid(void); }
  // The collector; nullptr when unconnected or when the port carries another
  // type (a wiring bug, reported by check_wiring() before any record flows).
  template <typename T>
  Collector<T>* get() const {
    return type_ != nullptr && *type_ == typeid(T) ? static_cast<Collector<T>*>(collector_)
                                                   : nullptr;
  }

 private:
  void* collector_ = nullptr;  // a Collector<T> for T = *type_
  const std::type_info* type_ = nullptr;
};

// The rings of one exchange edge for one job run (ExchangeChannels<T>),
// made and read only by the ExchangeSpec of that edge.
class ExchangeChannelsBase {
 public:
  virtual ~ExchangeChannelsBase() = default;
};

// How records cross an exchange edge: creates the rings and both ends.
class ExchangeSpecBase {
 public:
  virtual ~ExchangeSpecBase() = default;
  virtual std::shared_ptr<ExchangeChannelsBase> make_channels(int parallelism,
                                                              std::size_t capacity) = 0;
  // Returns the sender, owned by `worker`. `consumer` names the receiving
  // node in errors (its partitioning runs user code).
  virtual Port make_sender(Worker& worker, const ExchangeChannelsBase& channels, int stage,
                           const std::string& consumer) = 0;
  // Adds the receiving head for `worker`, delivering into `downstream`
  // (which the runtime has checked with check_wiring()).
  // `senders[c]` is false when worker c's sending instance can never produce
  // (no source split upstream of it on that worker): such a channel is ended
  // from the start and never holds back the watermark, so that watermarks do
  // not depend on thread timing.
  virtual void make_gate(Worker& worker, const ExchangeChannelsBase& channels, Port downstream,
                           int stage, const std::vector<bool>& senders) = 0;
};

class Graph;

class Node {
 public:
  virtual ~Node() = default;

  // Called once per run before instances are created (sources open their splits).
  virtual Status prepare(int /*parallelism*/) { return Status(); }
  // Called after prepare() when the job restores a checkpoint: sources seek
  // their splits to the checkpoint's positions.
  virtual Status restore(const RestoredCheckpoint& /*checkpoint*/) { return Status(); }
  // Creates this node's instance on `worker`. `downstream[p]` takes output
  // port p's records, unconnected when the port is unconsumed; the runtime
  // has checked them against out_types (check_wiring()). Returns the
  // instance's input (unconnected for sources).
  virtual StatusOr<Port> instantiate(Worker& worker, const std::vector<Port>& downstream) = 0;
  // Whether this node's instance on `worker` can ever receive records. Valid
  // after prepare().
  virtual bool active_on(const Graph& graph, int worker) const;

  int id = -1;
  // State identity: keys the node's state, checkpoint entries and RocksDB
  // column families; matched on restore. Default "<kind>#<id>"
  // ("window-aggregate#4"), or the user's Stream::uid().
  std::string uid;
  // Display label for errors, logs and metrics: a default a user recognises
  // ("window(tumbling 1min).aggregate"), or the user's Stream::name().
  std::string name;
  bool uid_set = false;             // uid() was called (not the default)
  OperatorIds ids() const { return OperatorIds{uid, name}; }
  int input = -1;                   // the producing node; -1 for sources
  int input_port = 0;
  std::shared_ptr<ExchangeSpecBase> exchange;  // on the input edge; null when chained
  // Per output port: the consuming nodes, in the order they were added
  // (empty when unconsumed).
  std::vector<std::vector<int>> consumers;
  std::vector<bool> side_output;    // per output port: may stay unconsumed
  // Per output port: its record type, checked against each consumer's input
  // when the job wires the instances.
  std::vector<const std::type_info*> out_types;
  // Per output port: bumped when a step changes the port in place
  // (with_watermarks() on a source), which makes older handles stale.
  std::vector<int> port_version;
  // For nodes with an input: makes, on a worker, the port that hands a batch
  // to each of several consumers of the input's record type (a FanOut), for
  // a producer port with more than one consumer (each checked with
  // check_wiring() against the producer's port).
  Port (*make_fan_out)(Worker&, const std::vector<Port>&) = nullptr;
  bool event_time = false;          // port 0 carries timestamps and watermarks
  bool stateful = false;            // keeps keyed state: shares the operator memory budget
  std::shared_ptr<SinkBase> sink;   // for sink nodes: commits their staged output
  std::shared_ptr<SourceBase> source;  // for source nodes: told when checkpoints commit
  int stage = 0;
};

class Graph {
 public:
  // Adds `node` with output ports of record types `out_types`; its uid is
  // "<kind>#<id>", its name `name` (`kind` when empty).
  int add(std::unique_ptr<Node> node, const std::string& kind,
          std::vector<const std::type_info*> out_types, const std::string& name = "");
  Node& node(int id) { return *nodes_[static_cast<std::size_t>(id)]; }
  const Node& node(int id) const { return *nodes_[static_cast<std::size_t>(id)]; }
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }

  // Checks that a handle of output `port` of `producer` at `version` is not
  // stale (the port was not changed in place since). On misuse records an
  // error naming `method` and returns false.
  bool check_handle(int producer, int port, int version, const char* method);
  // For a step that changes output `port` in place: checks the handle as
  // check_handle() and that the port has no consumer yet, then bumps its
  // version. On misuse records an error naming `method` and returns false.
  bool change_in_place(int producer, int port, int version, const char* method);
  // Adds `consumer` to the consumers of output `port` of `producer`.
  void connect(int producer, int port, int consumer);

  // Sets the display name / uid of `node` (Stream::name(), Stream::uid());
  // records an error for an empty one.
  void set_name(int node, std::string name);
  void set_uid(int node, std::string uid);
  // The first two nodes among the first `count` that share a uid, as an error.
  Status check_uids(std::size_t count) const;

  // Records a plan error; the first one wins and Pipeline::build() returns it.
  void record_error(Status status);
  const Status& error() const { return error_; }

 private:
  std::vector<std::unique_ptr<Node>> nodes_;
  Status error_;
};

// The record types of a node's output ports, in port order.
template <typename... Outs>
std::vector<const std::type_info*> port_types() {
  return {&typeid(Outs)...};
}

// Checks that `port`, given as output `index` of `node`, takes that output's
// record type (or is unconnected); a wiring bug otherwise (kInternal naming
// both types). The runtime calls it once per edge and worker, before any
// record flows.
Status check_wiring(const Node& node, std::size_t index, const Port& port);

}  // namespace meterstream::detail
