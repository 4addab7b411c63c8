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

Status check_wiring(const Node& node, std::size_t index, const Port& port) {
  const std::type_info* type = index < node.out_types.size() ? node.out_types[index] : nullptr;
  if (!port.connected() || (type != nullptr && port.type() == *type)) return Status();
  return absl::InternalError(fmt::format(
      "wiring output {} of '{}': it carries {}, its consumer takes {}", index, node.name,
      type != nullptr ? type->name() : "no port", port.type().name()));
}

int Graph::add(std::unique_ptr<Node> node, const std::string& kind,
               std::vector<const std::type_info*> out_types, const std::string& name) {
  const std::size_t ports = out_types.size();
  const int id = static_cast<int>(nodes_.size());
  node->id = id;
  // The default uid is what the node name was before names and uids were
  // separated, so that checkpoints of unchanged pipelines keep restoring.
  node->uid = fmt::format("{}#{}", kind, id);
  node->name = name.empty() ? kind : name;
  node->consumers.assign(ports, {});
  node->side_output.assign(ports, false);
  node->port_version.assign(ports, 0);
  node->out_types = std::move(out_types);
  nodes_.push_back(std::move(node));
  return id;
}

bool Graph::check_handle(int producer, int port, int version, const char* method) {
  const Node& p = node(producer);
  if (p.port_version[static_cast<std::size_t>(port)] == version) return true;
  record_error(absl::FailedPreconditionError(fmt::format(
      "{}(): the stream from '{}' was replaced by with_watermarks(), which gives the source's "
      "own stream event time; use the handle with_watermarks() returned",
      method, p.name)));
  return false;
}

bool Graph::change_in_place(int producer, int port, int version, const char* method) {
  if (!check_handle(producer, port, version, method)) return false;
  Node& p = node(producer);
  const auto idx = static_cast<std::size_t>(port);
  if (!p.consumers[idx].empty()) {
    record_error(absl::FailedPreconditionError(fmt::format(
        "{}(): the stream from '{}' already feeds '{}'; call {}() on it first and use the "
        "handle it returns for every step",
        method, p.name, node(p.consumers[idx].front()).name, method)));
    return false;
  }
  ++p.port_version[idx];
  return true;
}

void Graph::connect(int producer, int port, int consumer) {
  Node& c = node(consumer);
  c.input = producer;
  c.input_port = port;
  node(producer).consumers[static_cast<std::size_t>(port)].push_back(consumer);
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
