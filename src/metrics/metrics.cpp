#include "meterstream/metrics/metrics.hpp"

#include <algorithm>

namespace meterstream {

Counter* MetricRegistry::counter(std::string_view name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.try_emplace(std::string(name)).first;
  it->second.counters.push_back(std::make_unique<Counter>());
  return it->second.counters.back().get();
}

Gauge* MetricRegistry::gauge(std::string_view name, GaugeMerge merge, std::int64_t initial) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = entries_.try_emplace(std::string(name));
  if (inserted) {
    it->second.is_gauge = true;
    it->second.merge = merge;
  }
  it->second.gauges.push_back(std::make_unique<Gauge>());
  it->second.gauges.back()->set(initial);
  return it->second.gauges.back().get();
}

std::map<std::string, std::int64_t> MetricRegistry::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::int64_t> out;
  for (const auto& [name, e] : entries_) {
    std::int64_t v = 0;
    if (!e.is_gauge) {
      for (const auto& c : e.counters) v += c->value();
    } else if (!e.gauges.empty()) {
      v = e.gauges.front()->value();
      for (const auto& g : e.gauges) {
        switch (e.merge) {
          case GaugeMerge::kMin: v = std::min(v, g->value()); break;
          case GaugeMerge::kMax: v = std::max(v, g->value()); break;
          case GaugeMerge::kSum: break;
        }
      }
      if (e.merge == GaugeMerge::kSum) {
        v = 0;
        for (const auto& g : e.gauges) v += g->value();
      }
    }
    out[name] = v;
  }
  return out;
}

}  // namespace meterstream
