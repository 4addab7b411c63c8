#include "meterstream/runtime/detail/graph.hpp"

#include <utility>

#include "fmt/format.h"

namespace meterstream::detail {

bool Node::active_on(const Graph& graph, int worker) const {
  // Behind an exchange every worker may receive records; in a chain, the
  // instance is as active as its input's.
  if (input < 0) return true;
  if (exchange) return true;
  return graph.node(input).active_on(graph, worker);
}

int Graph::add(std::unique_ptr<Node> node, const std::string& kind, int ports) {
  const int id = static_cast<int>(nodes_.size());
  node->id = id;
  node->name = fmt::format("{}#{}", kind, id);
  node->consumers.assign(static_cast<std::size_t>(ports), -1);
  node->side_output.assign(static_cast<std::size_t>(ports), false);
  node->port_version.assign(static_cast<std::size_t>(ports), 0);
  nodes_.push_back(std::move(node));
  return id;
}

bool Graph::consume(int producer, int port, int version, const char* method) {
  Node& p = node(producer);
  const auto idx = static_cast<std::size_t>(port);
  if (p.port_version[idx] != version || p.consumers[idx] >= 0) {
    record_error(absl::FailedPreconditionError(fmt::format(
        "{}(): the stream from '{}' was already consumed; a stream handle can be used once "
        "(use the handle returned by the previous call)",
        method, p.name)));
    return false;
  }
  ++p.port_version[idx];
  return true;
}

void Graph::connect(int producer, int port, int consumer) {
  Node& c = node(consumer);
  c.input = producer;
  c.input_port = port;
  node(producer).consumers[static_cast<std::size_t>(port)] = consumer;
}

void Graph::record_error(Status status) {
  if (error_.ok()) error_ = std::move(status);
}

}  // namespace meterstream::detail
