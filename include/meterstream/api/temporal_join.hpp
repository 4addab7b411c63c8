// temporal_join(): Flink's event-time temporal join of a stream with a
// versioned reference changelog (e.g. calibration records).
//
//   auto readings = p.source(...).with_watermarks(ms::bounded_out_of_orderness(5min),
//                                                 &ms::MeterReading::ts_ms);
//   auto calib = p.source(...).with_watermarks(ms::bounded_out_of_orderness(0ms),
//                                              &ms::Calibration::valid_from_ms);
//   auto joined = ms::temporal_join(
//       readings, &ms::MeterReading::meter_id, calib, &ms::Calibration::meter_id,
//       [](const ms::MeterReading& r, const ms::Calibration& c) { return ms::calibrate(r, c); },
//       "calibrate");
//   joined.joined.sink(...);       // one record per reading that has a version
//   joined.unmatched.sink(...);    // readings with no version at their time (side output)
//
// Semantics (docs/temporal-join.md):
// - The reference stream is a changelog of versions: its records' event
//   timestamps (with_watermarks() on it) are their validity times; a version
//   is valid from its time until the next version of the same key. Two
//   versions of one key with the same time: the later one wins.
// - Each reading is joined with the version of its key valid at the
//   reading's timestamp: the one with the greatest validity time <= it.
// - A reading waits until the reference stream's watermark reaches its
//   timestamp (until then a version for it may still arrive).
// - A reading with no version valid at its time goes to `unmatched`,
//   counted ("temporal_join_unmatched").
// - Both inputs are partitioned by key: each worker keeps the versions of the
//   keys it owns (not a broadcast: the same results with 1/P of the state).
// - Superseded versions are dropped once no reading can need them (behind
//   the readings' watermark and the oldest waiting reading).
// - State (versions and waiting readings) is checkpointed and restored;
//   K, T and R need Codecs for that.
//
// Errors, from Pipeline::build(): a reference stream or readings stream
// without watermarks, naming the join.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/api/detail/temporal_join_operator.hpp"
#include "meterstream/api/stream.hpp"

namespace meterstream {

// The join's outputs.
template <typename Out, typename T>
struct TemporalJoinResult {
  Stream<Out> joined;     // joiner(reading, version), at the reading's timestamp
  Stream<T> unmatched;    // readings with no version valid at their timestamp
};

// Joins `readings` (key key_t(const T&)) with the versions of `reference`
// (key key_r(const R&), validity time its event timestamp) valid at each
// reading's timestamp: joiner(const T&, const R&) -> Out. `name` names the
// step in errors, logs and metrics.
template <typename T, typename R, typename KeyT, typename KeyR, typename Joiner>
auto temporal_join(const Stream<T>& readings, KeyT key_t, const Stream<R>& reference, KeyR key_r,
                   Joiner joiner, std::string name = "temporal_join") {
  using K = std::decay_t<std::invoke_result_t<const KeyT&, const T&>>;
  using KR = std::decay_t<std::invoke_result_t<const KeyR&, const R&>>;
  using Out = std::decay_t<std::invoke_result_t<const Joiner&, const T&, const R&>>;
  static_assert(std::is_same_v<K, KR>,
                "temporal_join(): the readings' key and the reference key must have one type");
  using Op = detail::TemporalJoinOp<K, T, R, Out, KeyT, KeyR, Joiner>;
  using Result = TemporalJoinResult<Out, T>;

  const detail::StreamCore& in = detail::StreamAccess::core(readings);
  const detail::StreamCore& ref = detail::StreamAccess::core(reference);
  if (!in.valid() || !ref.valid()) {
    return Result{detail::StreamAccess::stream<Out>(in.invalid()),
                  detail::StreamAccess::stream<T>(in.invalid())};
  }
  if (in.graph != ref.graph) {
    in.record_error(absl::InvalidArgumentError(
        "temporal_join '" + name + "': the readings and the reference stream belong to "
        "different pipelines"));
    return Result{detail::StreamAccess::stream<Out>(in.invalid()),
                  detail::StreamAccess::stream<T>(in.invalid())};
  }
  if (!ref.has_event_time()) {
    in.record_error(absl::FailedPreconditionError(
        "temporal_join '" + name + "': the reference stream has no watermarks: call "
        "with_watermarks() on it (its timestamps are the versions' validity times; readings "
        "wait for its watermark)"));
    return Result{detail::StreamAccess::stream<Out>(in.invalid()),
                  detail::StreamAccess::stream<T>(in.invalid())};
  }
  if (!in.has_event_time()) {
    in.record_error(absl::FailedPreconditionError(
        "temporal_join '" + name + "': the readings have no event time: call "
        "with_watermarks() on them"));
    return Result{detail::StreamAccess::stream<Out>(in.invalid()),
                  detail::StreamAccess::stream<T>(in.invalid())};
  }

  auto link = std::make_shared<detail::TemporalJoinLink<R>>();
  const detail::StreamCore out = detail::attach<T>(
      in, "temporal_join", "temporal-join",
      [link, key_t, key_r, joiner](detail::Worker& w, const detail::OperatorIds& ids,
                                   const std::vector<detail::Port>& d) -> StatusOr<detail::Port> {
        Op* op = w.add_operator(
            std::make_unique<Op>(ids, d[0].get<Out>(), d[1].get<T>(), key_t, key_r, joiner), ids);
        link->set(&w, op);
        return detail::Port(static_cast<Collector<T>*>(op));
      },
      detail::port_types<Out, T>(), false, detail::key_exchange<T>(key_t), /*stateful=*/true);
  if (!out.valid()) {
    return Result{detail::StreamAccess::stream<Out>(out), detail::StreamAccess::stream<T>(out)};
  }
  out.graph->set_name(out.node, name);
  out.graph->node(out.node).side_output[1] = true;

  const detail::StreamCore feed = detail::attach<R>(
      ref, "temporal_join", "temporal-join-reference",
      [link](detail::Worker& w, const detail::OperatorIds& ids,
             const std::vector<detail::Port>&) -> StatusOr<detail::Port> {
        auto* f = w.add_operator(
            std::make_unique<detail::TemporalJoinFeed<R>>(link, &w, ids.name), ids);
        return detail::Port(static_cast<Collector<R>*>(f));
      },
      /*out_types=*/{}, false, detail::key_exchange<R>(key_r));
  if (feed.valid()) feed.graph->set_name(feed.node, name + ".reference");

  return Result{detail::StreamAccess::stream<Out>(out),
                detail::StreamAccess::stream<T>(out.side_output(1))};
}

}  // namespace meterstream
