// Stream<T>: a typed handle to a stream of records in a Pipeline.
//
// Each call adds a step to the pipeline's plan and returns the handle of its
// output. A handle may be used by any number of steps: each gets every record
// and every watermark of the stream (records are shared between them, copied
// only for steps that change their input, such as filter() and map()), and a
// checkpoint covers them all. Element types are deduced from the callables.
// Misuse (a negative bound, a null sink, the handle a source had before
// with_watermarks()) is recorded in the plan and reported by Pipeline::build()
// before any record flows.
//
// Example: one stream of readings, two consumers.
//   auto readings = p.source(ms::from_vector(events))
//                       .with_watermarks(ms::bounded_out_of_orderness(5min),
//                                        &MeterReading::ts_ms);
//   readings.key_by(&MeterReading::meter_id)
//       .window(ms::tumbling(1min))
//       .aggregate(Usage{})
//       .sink(ms::collect_into(usage));
//   readings.filter([](const MeterReading& r) { return r.voltage_dv < 2000; })
//       .map([](const MeterReading& r) { return r.meter_id; })
//       .sink(ms::collect_into(sagging_meters));
//
// Thread-safety: building a pipeline is single-threaded. The callables run on
// the worker threads; each worker has its own copy.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "meterstream/api/detail/dedup_operator.hpp"
#include "meterstream/api/detail/nodes.hpp"
#include "meterstream/api/detail/operators.hpp"
#include "meterstream/api/detail/stream_core.hpp"
#include "meterstream/api/keyed_stream.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/time/watermark_strategy.hpp"

namespace meterstream {

// A sink in the plan (Stream::sink()), to name or uid it (see Stream::name(),
// Stream::uid()).
class SinkStep {
 public:
  // The sink's label in errors and metrics. Default: "sink:<the sink's name()>".
  SinkStep name(std::string name) const {
    if (graph_ && node_ >= 0) graph_->set_name(node_, std::move(name));
    return *this;
  }
  // The uid its staged output is kept under in checkpoints.
  SinkStep uid(std::string uid) const {
    if (graph_ && node_ >= 0) graph_->set_uid(node_, std::move(uid));
    return *this;
  }

 private:
  template <typename>
  friend class Stream;
  SinkStep(std::shared_ptr<detail::Graph> graph, int node) : graph_(std::move(graph)), node_(node) {}

  std::shared_ptr<detail::Graph> graph_;
  int node_ = -1;
};

template <typename T>
class Stream {
 public:
  using value_type = T;

  // One output per record: f(const T&) -> R.
  template <typename F>
  auto map(F f) const {
    using R = std::decay_t<std::invoke_result_t<const F&, const T&>>;
    return attach<R>("map", "map", [f](detail::Worker& w, const detail::OperatorIds& ids,
                                       const std::vector<detail::Port>& d) {
      return detail::chain<detail::MapOp<T, R, F>, T, R>(w, ids, d, f);
    });
  }

  // Keeps the records for which f(const T&) is true.
  template <typename F>
  Stream<T> filter(F f) const {
    return attach<T>("filter", "filter", [f](detail::Worker& w, const detail::OperatorIds& ids,
                                             const std::vector<detail::Port>& d) {
      return detail::chain<detail::FilterOp<T, F>, T, T>(w, ids, d, f);
    });
  }

  // Zero or more outputs per record: f(const T&, Emitter<R>&) calls emit().
  template <typename R, typename F>
  Stream<R> flat_map(F f) const {
    return attach<R>("flat_map", "flat_map", [f](detail::Worker& w, const detail::OperatorIds& ids,
                                                 const std::vector<detail::Port>& d) {
      return detail::chain<detail::FlatMapOp<T, R, F>, T, R>(w, ids, d, f);
    });
  }

  // Gives the stream event time: `timestamp` (a callable or a pointer to
  // member, T -> milliseconds since the epoch) reads each record's timestamp,
  // and `strategy` makes the watermarks. Applied right after a source,
  // watermarks are made per split, inside the source: the source's own stream
  // gets event time, so call it before any other use of that stream (an
  // error otherwise) and use the handle it returns. Elsewhere watermarks are
  // made per worker.
  //
  // The timestamp must be an integral number of milliseconds: a
  // floating-point (or any other) type does not compile, rather than being
  // truncated silently. Convert in a callable:
  //   .with_watermarks(strategy, [](const R& r) { return std::llround(r.ts_s * 1000); })
  template <typename F>
  Stream<T> with_watermarks(WatermarkStrategy strategy, F timestamp) const {
    static_assert(detail::is_timestamp_fn_v<F, T>,
                  "with_watermarks(): the timestamp (a pointer to member or a callable of "
                  "const T&) must give an integral number of milliseconds since the epoch, "
                  "not a double or a duration; convert it in a callable");
    if (!valid()) return *this;
    if (!strategy.inexact().empty()) {
      core_.record_error(absl::InvalidArgumentError(
          "with_watermarks(): " + strategy.inexact() +
          " is not a whole number of milliseconds (event time counts milliseconds)"));
      return invalid();
    }
    if (strategy.bound_ms() < 0) {
      core_.record_error(absl::InvalidArgumentError(
          "with_watermarks(): bounded_out_of_orderness() needs a bound >= 0, got " +
          std::to_string(strategy.bound_ms()) + " ms"));
      return invalid();
    }
    if (strategy.emit_every() < 0 || strategy.idle_timeout_ms() < 0) {
      core_.record_error(absl::InvalidArgumentError(
          "with_watermarks(): with_emit_every() and with_idleness() need values >= 0"));
      return invalid();
    }
    detail::EventTimeSpec<T> spec{
        strategy, std::make_shared<detail::FnTimestampAssigner<T, F>>(std::move(timestamp))};
    detail::Node& n = core_.graph->node(core_.node);
    auto* source = dynamic_cast<detail::SourceNode<T>*>(&n);
    if (source != nullptr && core_.port == 0 && !core_.exchange) {
      // Per split, inside the source.
      if (!core_.graph->change_in_place(core_.node, core_.port, core_.version,
                                        "with_watermarks")) {
        return invalid();
      }
      source->event_time_ = std::move(spec);
      n.event_time = true;
      return Stream<T>(core_.side_output(0));
    }
    return attach<T>(
        "with_watermarks", "watermarks",
        [spec](detail::Worker& w, const detail::OperatorIds& ids,
               const std::vector<detail::Port>& d) {
          return detail::chain<detail::WatermarkAssignerOp<T>, T, T>(w, ids, d, spec);
        },
        detail::port_types<T>(), /*event_time_out=*/true)
        .name("with_watermarks");
  }

  // Partitions by key: records with equal keys meet on one worker. The key is
  // key_fn(const T&) (a callable or a pointer to member); its type needs a
  // KeyHash (integers and strings have one).
  template <typename KeyFn>
  auto key_by(KeyFn key_fn) const {
    using K = std::decay_t<std::invoke_result_t<const KeyFn&, const T&>>;
    if (!valid() || !core_.graph->check_handle(core_.node, core_.port, core_.version, "key_by")) {
      return detail::StreamAccess::keyed<K, T>(core_.invalid(), std::move(key_fn), false);
    }
    return detail::StreamAccess::keyed<K, T>(core_, std::move(key_fn), false);
  }

  // Drops records whose id id_fn(const T&) was seen within `ttl` of event time
  // before (the first is kept): exact deduplication of retries, with state per
  // id that expires when the watermark passes first-seen time + ttl. Records
  // are repartitioned by id. Dropped records are counted ("dedup_dropped").
  template <typename IdFn, typename Rep, typename Period>
  Stream<T> dedup_by(IdFn id_fn, std::chrono::duration<Rep, Period> ttl) const {
    using Id = std::decay_t<std::invoke_result_t<const IdFn&, const T&>>;
    const std::int64_t ttl_ms = to_millis(ttl);
    if (valid() && !core_.has_event_time()) {
      core_.record_error(absl::InvalidArgumentError(
          "dedup_by(): the ttl is event time and the stream has none: call with_watermarks() "
          "first"));
      return invalid();
    }
    if (valid() && ttl_ms <= 0) {
      core_.record_error(absl::InvalidArgumentError(
          "dedup_by(): the ttl must be > 0, got " + std::to_string(ttl_ms) + " ms"));
      return invalid();
    }
    return attach<T>(
        "dedup_by", "dedup-id",
        [id_fn, ttl_ms](detail::Worker& w, const detail::OperatorIds& ids,
                        const std::vector<detail::Port>& d) {
          return detail::chain<detail::IdDedupOp<Id, T, IdFn>, T, T>(w, ids, d, id_fn, ttl_ms);
        },
        detail::port_types<T>(), false, detail::key_exchange<T>(id_fn), /*stateful=*/true)
        .name("dedup_by(ttl " + detail::format_millis(ttl_ms) + ")");
  }

  // Spreads records round-robin over all workers.
  Stream<T> rebalance() const {
    if (!valid() || !core_.graph->check_handle(core_.node, core_.port, core_.version, "rebalance")) {
      return invalid();
    }
    detail::StreamCore c = core_;
    c.exchange = detail::rebalance_exchange<T>();
    return Stream<T>(std::move(c));
  }

  // Names the step that made this stream (Flink's name()): the label in
  // errors, logs and metrics. Default: the step's kind and arguments, e.g.
  // "map", "window(tumbling 1min).aggregate", "source:file:events.csv".
  // Example: .window(ms::tumbling(1min)).aggregate(Usage{}).name("usage per minute")
  Stream<T> name(std::string name) const {
    if (valid()) core_.graph->set_name(core_.node, std::move(name));
    return *this;
  }

  // Sets the uid of the step that made this stream (Flink's uid()): its
  // state is stored under it and matched by it on restore. Give stateful
  // steps (windows, dedup, process, sources, sinks) a uid if the pipeline
  // may change: the default uid, "<kind>#<position in the plan>", shifts
  // when steps are added before it, and the checkpoint then no longer
  // restores. Uids must be unique in a pipeline (build() checks).
  Stream<T> uid(std::string uid) const {
    if (valid()) core_.graph->set_uid(core_.node, std::move(uid));
    return *this;
  }

  // Ends the stream in `sink`; each worker writes through its own writer.
  // Returns the sink step, to name() or uid() it.
  SinkStep sink(std::shared_ptr<Sink<T>> sink) const {
    if (!sink) {
      core_.record_error(absl::InvalidArgumentError("sink(): the sink is null"));
      return SinkStep(core_.graph, -1);
    }
    const detail::StreamCore s = detail::attach<T>(
        core_, "sink", "sink:" + sink->name(),
        [sink](detail::Worker& w, const detail::OperatorIds& ids,
               const std::vector<detail::Port>&) -> StatusOr<detail::Port> {
          MS_ASSIGN_OR_RETURN(auto writer, sink->create_writer(w.index(), w.parallelism()));
          Collector<T>* op = w.add_operator(
              std::make_unique<detail::SinkOp<T>>(ids, std::move(writer), sink), ids);
          return detail::Port(op);
        },
        /*out_types=*/{});
    if (s.valid()) s.graph->node(s.node).sink = sink;
    return SinkStep(s.graph, s.node);
  }

  // An empty handle, to assign a stream to later.
  Stream() = default;

 private:
  friend struct detail::StreamAccess;
  template <typename>
  friend class SourceStream;
  template <typename, typename>
  friend class WindowedResultStream;

  explicit Stream(detail::StreamCore core) : core_(std::move(core)) {}

  bool valid() const { return core_.valid(); }
  Stream<T> invalid() const { return Stream<T>(core_.invalid()); }

  // detail::attach() from this stream, as a Stream<R>; out_types default to
  // one port of R.
  template <typename R>
  Stream<R> attach(const char* method, const std::string& kind, detail::FnNode::Make make,
                   std::vector<const std::type_info*> out_types = detail::port_types<R>(),
                   bool event_time_out = false,
                   std::shared_ptr<detail::ExchangeSpecBase> exchange = nullptr,
                   bool stateful = false) const {
    return detail::StreamAccess::stream<R>(detail::attach<T>(core_, method, kind, std::move(make),
                                                             std::move(out_types), event_time_out,
                                                             std::move(exchange), stateful));
  }

  detail::StreamCore core_;
};

}  // namespace meterstream
