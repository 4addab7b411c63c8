// The wiring behind the DSL's stream handles: where a handle points in the
// plan, and how a step is added to it. Not API.
//
// Every handle (Stream, KeyedStream, WindowedStream, the result streams)
// holds a StreamCore; only the DSL's own types reach it, through
// StreamAccess. A step's instance is made by a FnNode::Make that takes its
// downstream ports and returns its input port, each a typed collector
// (detail::Port, checked once when the job wires the instances).
//
// The api headers include one another one way only: pipeline.hpp ->
// stream.hpp -> keyed_stream.hpp -> windowed_stream.hpp -> this header, which
// declares the handle types the others return.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "meterstream/api/detail/nodes.hpp"
#include "meterstream/runtime/detail/fan_out.hpp"
#include "meterstream/runtime/detail/graph.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream {

template <typename T>
class Stream;
template <typename T>
class SourceStream;
namespace detail {
// The key function of a KeyedStream<K, T> named without its type: any
// callable of const T& giving K, called through std::function.
template <typename K, typename T>
using AnyKeyFn = std::function<K(const T&)>;
}  // namespace detail

template <typename K, typename T, typename KeyFn = detail::AnyKeyFn<K, T>>
class KeyedStream;
template <typename K, typename T, typename KeyFn, typename Assigner>
class WindowedStream;
template <typename Out, typename T>
class WindowedResultStream;

namespace detail {

// Where a handle points: output `port` of `node` at `version` (see
// Graph::check_handle()), with the exchange a rebalance() left pending. An
// invalid core (node -1) stands for a step whose error is recorded in the
// plan; every step on it is a no-op.
struct StreamCore {
  std::shared_ptr<Graph> graph;
  int node = -1;
  int port = 0;
  int version = 0;
  std::shared_ptr<ExchangeSpecBase> exchange;  // pending rebalance

  bool valid() const { return graph && node >= 0; }
  // The same plan, no node.
  StreamCore invalid() const { return StreamCore{graph, -1, 0, 0, nullptr}; }
  // Port 0 of a node with event time carries timestamps and watermarks; so do
  // its side outputs (late records keep their timestamps), except a source's
  // undecodable-records output, whose records have none.
  bool has_event_time() const {
    if (!valid()) return false;
    const Node& n = graph->node(node);
    return n.event_time && (port == 0 || n.input >= 0);
  }
  // Output `p` of the same node, at that port's current version.
  StreamCore side_output(int p) const {
    const int v = valid() ? graph->node(node).port_version[static_cast<std::size_t>(p)] : 0;
    return StreamCore{graph, node, p, v, nullptr};
  }
  // Records `status` in the plan (when there is one).
  void record_error(Status status) const {
    if (graph) graph->record_error(std::move(status));
  }
};

// Adds a node that consumes `in`, a stream of In (through `exchange` if
// given, or the pending rebalance), besides any other consumer it has; `make`
// creates its instance on a worker; its output ports carry `out_types`.
// Returns the core of the new node's output port 0, invalid on misuse (a
// stale handle, recorded by `method`). `stateful`: the node keeps keyed state
// and takes a share of the operator memory budget.
template <typename In>
StreamCore attach(const StreamCore& in, const char* method, const std::string& kind,
                  FnNode::Make make, std::vector<const std::type_info*> out_types,
                  bool event_time_out = false, std::shared_ptr<ExchangeSpecBase> exchange = nullptr,
                  bool stateful = false) {
  if (!in.valid() || !in.graph->check_handle(in.node, in.port, in.version, method)) {
    return in.invalid();
  }
  auto node = std::make_unique<FnNode>(std::move(make));
  node->make_fan_out = &make_fan_out<In>;
  node->event_time = in.has_event_time() || event_time_out;
  node->stateful = stateful;
  node->exchange = exchange ? std::move(exchange) : in.exchange;
  const int id = in.graph->add(std::move(node), kind, std::move(out_types));
  in.graph->connect(in.node, in.port, id);
  Node& n = in.graph->node(id);
  n.stage = in.graph->node(in.node).stage + (n.exchange ? 1 : 0);
  return StreamCore{in.graph, id, 0, 0, nullptr};
}

// Creates operator Op(ids, output collector, args...) on a worker, chained:
// it takes In and emits Out into downstream port 0. Returns its input port.
template <typename Op, typename In, typename Out, typename... Args>
StatusOr<Port> chain(Worker& w, const OperatorIds& ids, const std::vector<Port>& downstream,
                     Args&&... args) {
  // The ids go to the operator's context too (its uid keys its state).
  Collector<In>* op = w.add_operator(
      std::make_unique<Op>(ids, downstream[0].get<Out>(), std::forward<Args>(args)...), ids);
  return Port(op);
}

// The DSL types' access to one another's cores (they befriend it), so that
// the wiring is not part of any handle's public interface.
struct StreamAccess {
  template <typename H>
  static const StreamCore& core(const H& handle) {
    return handle.core_;
  }
  template <typename T>
  static Stream<T> stream(StreamCore core) {
    return Stream<T>(std::move(core));
  }
  template <typename K, typename T, typename KeyFn>
  static KeyedStream<K, T, KeyFn> keyed(StreamCore core, KeyFn key_fn, bool partitioned) {
    return KeyedStream<K, T, KeyFn>(std::move(core), std::move(key_fn), partitioned);
  }
};

}  // namespace detail
}  // namespace meterstream
