#include "meterstream/runtime/detail/graph.hpp"

#include <map>
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

int Graph::add(std::unique_ptr<Node> node, const std::string& kind, int ports,
                const std::string& name) {
  const int id = static_cast<int>(nodes_.size());
  node->id = id;
  // The default uid is what the node name was before names and uids were
  // separated, so that checkpoints of unchanged pipelines keep restoring.
  node->uid = fmt::format("{}#{}", kind, id);
  node->name = name.empty() ? kind : name;
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

void Graph::set_name(int id, std::string name) {
  if (name.empty()) {
    record_error(absl::InvalidArgumentError(
        fmt::format("name(): the name of '{}' must not be empty", node(id).name)));
    return;
  }
  node(id).name = std::move(name);
}

void Graph::set_uid(int id, std::string uid) {
  if (uid.empty()) {
    record_error(absl::InvalidArgumentError(
        fmt::format("uid(): the uid of '{}' must not be empty", node(id).name)));
    return;
  }
  node(id).uid = std::move(uid);
  node(id).uid_set = true;
}

Status Graph::check_uids(std::size_t count) const {
  std::map<std::string, const Node*> seen;
  for (std::size_t i = 0; i < count && i < nodes_.size(); ++i) {
    const Node& n = *nodes_[i];
    auto [it, inserted] = seen.emplace(n.uid, &n);
    if (!inserted) {
      return absl::FailedPreconditionError(fmt::format(
          "two operators have uid '{}': '{}' and '{}' (a uid names one operator's state: give "
          "each its own)",
          n.uid, it->second->name, n.name));
    }
  }
  return Status();
}

void Graph::record_error(Status status) {
  if (error_.ok()) error_ = std::move(status);
}

}  // namespace meterstream::detail
