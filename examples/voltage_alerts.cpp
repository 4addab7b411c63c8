// voltage_alerts: alert when a meter's voltage stays below 200 V for 60 s.
//
//   smart_meter_source        the workload with 30% voltage sags (anomaly_ppm),
//        |                    no late events and no duplicates
//   with_watermarks           bounded out-of-orderness 1 s, ts = ts_ms
//        |
//   key_by(meter_id) ........ exchange
//        |
//   process(SagDetector)      per meter: ValueState<Episode> "sag" and an
//        |                    event-time timer at since + 60 s
//        v
//   collect_into(alerts)      compared with a plain loop over the same events
//
// The rule, per meter: a reading below 200 V starts a sag episode (state =
// its timestamp, timer at +60 s). A normal reading ends the episode (state
// cleared, timer deleted). The alert is raised once per episode: when the
// timer fires (the watermark passed +60 s with no normal reading), or, if a
// normal reading later than +60 s arrives before the watermark, then.
// At the end of input every pending timer fires (as in Flink), so a sag still
// open at the end raises its alert then.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <meterstream/meterstream.hpp>

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

constexpr std::uint16_t kSagDv = 2000;       // 200.0 V
constexpr std::int64_t kSagMs = 60 * 1000;   // must last this long

struct Alert {
  std::uint64_t meter_id = 0;
  std::int64_t since_ms = 0;  // first reading of the sag
  bool operator<(const Alert& o) const {
    return std::tie(meter_id, since_ms) < std::tie(o.meter_id, o.since_ms);
  }
  bool operator==(const Alert& o) const {
    return meter_id == o.meter_id && since_ms == o.since_ms;
  }
};

// The state of a sag episode: when it started and whether it has alerted.
struct Episode {
  std::int64_t since_ms = 0;
  bool alerted = false;
};

struct SagDetector {
  using Context = ms::ProcessContext<std::uint64_t, Alert>;

  void process_element(const ms::MeterReading& r, Context& ctx) {
    ms::ValueState<Episode> state = ctx.value_state<Episode>("sag");
    const std::optional<Episode> episode = state.value();
    if (r.voltage_dv < kSagDv) {
      if (!episode) {
        state.update(Episode{r.ts_ms, false});
        ctx.register_event_time_timer(r.ts_ms + kSagMs);
      }
      return;
    }
    if (!episode) return;
    // A normal reading ends the episode. It lasted long enough when this
    // reading is later than the deadline and the timer has not fired yet.
    if (!episode->alerted) {
      const std::int64_t deadline = episode->since_ms + kSagMs;
      if (r.ts_ms > deadline) ctx.emit(Alert{ctx.key(), episode->since_ms}, deadline);
      ctx.delete_event_time_timer(deadline);
    }
    state.clear();
  }

  void on_timer(ms::Timestamp time, ms::TimeDomain, Context& ctx) {
    ms::ValueState<Episode> state = ctx.value_state<Episode>("sag");
    std::optional<Episode> episode = state.value();
    if (!episode || episode->alerted || episode->since_ms + kSagMs != time) return;
    ctx.emit(Alert{ctx.key(), episode->since_ms});
    episode->alerted = true;  // one alert per episode; it lasts until a normal reading
    state.update(*episode);
  }
};

// The same rule as a plain loop: valid because this workload has no late
// events, so each meter's readings arrive in timestamp order.
std::vector<Alert> expected_alerts(const ms::SmartMeterWorkload& workload) {
  std::vector<Alert> alerts;
  std::unordered_map<std::uint64_t, std::int64_t> since;
  ms::SmartMeterGenerator gen(workload);
  ms::MeterReading r;
  while (gen.next(&r)) {
    auto it = since.find(r.meter_id);
    if (r.voltage_dv < kSagDv) {
      if (it == since.end()) since.emplace(r.meter_id, r.ts_ms);
    } else if (it != since.end()) {
      if (r.ts_ms > it->second + kSagMs) alerts.push_back({r.meter_id, it->second});
      since.erase(it);
    }
  }
  for (const auto& [meter, start] : since) alerts.push_back({meter, start});
  std::sort(alerts.begin(), alerts.end());
  return alerts;
}

}  // namespace

int main() {
  ms::SmartMeterWorkload workload;
  workload.meters = 2000;
  workload.events = 400000;   // about 45 minutes of readings
  workload.anomaly_ppm = 300000;  // 30% of readings sag
  workload.late_ppm = 0;
  workload.dup_ppm = 0;
  if (ms::Status s = workload.validate(); !s.ok()) {
    std::fprintf(stderr, "voltage_alerts: workload: %s\n", s.ToString().c_str());
    return 1;
  }

  std::vector<Alert> alerts;
  ms::Pipeline p;
  p.source(ms::smart_meter_source(workload))
      .with_watermarks(ms::bounded_out_of_orderness(1s), &ms::MeterReading::ts_ms)
      .key_by(&ms::MeterReading::meter_id)
      .process<Alert>(SagDetector{})
      .sink(ms::collect_into(alerts));

  ms::StatusOr<ms::Job> job = p.build();
  if (!job.ok()) {
    std::fprintf(stderr, "voltage_alerts: build: %s\n", job.status().ToString().c_str());
    return 1;
  }
  if (ms::Status s = job->run(); !s.ok()) {
    std::fprintf(stderr, "voltage_alerts: run: %s\n", s.ToString().c_str());
    return 1;
  }

  std::sort(alerts.begin(), alerts.end());
  std::printf("%zu alerts from %llu readings of %llu meters; the first ten:\n", alerts.size(),
              static_cast<unsigned long long>(workload.events),
              static_cast<unsigned long long>(workload.meters));
  for (std::size_t i = 0; i < alerts.size() && i < 10; ++i) {
    std::printf("  meter %-5llu below 200 V from %lld for >= 60 s\n",
                static_cast<unsigned long long>(alerts[i].meter_id),
                static_cast<long long>(alerts[i].since_ms));
  }

  const std::vector<Alert> expected = expected_alerts(workload);
  if (alerts != expected) {
    std::fprintf(stderr, "voltage_alerts: %zu alerts, but the plain loop finds %zu\n",
                 alerts.size(), expected.size());
    return 1;
  }
  std::printf("same alerts as a plain loop over the events\n");
  return 0;
}
