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
#include <utility>
#include <vector>

#include "meterstream/api/detail/dedup_operator.hpp"
#include "meterstream/api/detail/nodes.hpp"
#include "meterstream/api/detail/operators.hpp"
#include "meterstream/runtime/operator.hpp"
#include "meterstream/time/watermark_strategy.hpp"

namespace meterstream {

template <typename K, typename T, typename KeyFn>
class KeyedStream;

// A sink in the plan (Stream::sink()), to name or uid it (see Stream::name(),
// Stream::uid()).
class SinkStep {
 public:
  SinkStep(std::shared_ptr<detail::Graph> graph, int node) : graph_(std::move(graph)), node_(node) {}
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
                                       const std::vector<void*>& d) {
      return chain<detail::MapOp<T, R, F>, R>(w, ids, d, f);
    });
  }

  // Keeps the records for which f(const T&) is true.
  template <typename F>
  Stream<T> filter(F f) const {
    return attach<T>("filter", "filter", [f](detail::Worker& w, const detail::OperatorIds& ids,
                                             const std::vector<void*>& d) {
      return chain<detail::FilterOp<T, F>, T>(w, ids, d, f);
    });
  }

  // Zero or more outputs per record: f(const T&, Emitter<R>&) calls emit().
  template <typename R, typename F>
  Stream<R> flat_map(F f) const {
    return attach<R>("flat_map", "flat_map", [f](detail::Worker& w, const detail::OperatorIds& ids,
                                                 const std::vector<void*>& d) {
      return chain<detail::FlatMapOp<T, R, F>, R>(w, ids, d, f);
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
      graph_->record_error(absl::InvalidArgumentError(
          "with_watermarks(): " + strategy.inexact() +
          " is not a whole number of milliseconds (event time counts milliseconds)"));
      return invalid();
    }
    if (strategy.bound_ms() < 0) {
      graph_->record_error(absl::InvalidArgumentError(
          "with_watermarks(): bounded_out_of_orderness() needs a bound >= 0, got " +
          std::to_string(strategy.bound_ms()) + " ms"));
      return invalid();
    }
    if (strategy.emit_every() < 0 || strategy.idle_timeout_ms() < 0) {
      graph_->record_error(absl::InvalidArgumentError(
          "with_watermarks(): with_emit_every() and with_idleness() need values >= 0"));
      return invalid();
    }
    detail::EventTimeSpec<T> spec{
        strategy, std::make_shared<detail::FnTimestampAssigner<T, F>>(std::move(timestamp))};
    detail::Node& n = graph_->node(node_);
    auto* source = dynamic_cast<detail::SourceNode<T>*>(&n);
    if (source != nullptr && port_ == 0 && !exchange_) {
      // Per split, inside the source.
      if (!graph_->change_in_place(node_, port_, version_, "with_watermarks")) return invalid();
      source->event_time_ = std::move(spec);
      n.event_time = true;
      return Stream<T>(graph_, node_, port_, n.port_version[0]);
    }
    return attach<T>(
        "with_watermarks", "watermarks",
        [spec](detail::Worker& w, const detail::OperatorIds& ids, const std::vector<void*>& d) {
          return chain<detail::WatermarkAssignerOp<T>, T>(w, ids, d, spec);
        },
        1, /*event_time_out=*/true)
        .name("with_watermarks");
  }

  // Partitions by key: records with equal keys meet on one worker. The key is
  // key_fn(const T&) (a callable or a pointer to member); its type needs a
  // KeyHash (integers and strings have one).
  template <typename KeyFn>
  auto key_by(KeyFn key_fn) const {
    using K = std::decay_t<std::invoke_result_t<const KeyFn&, const T&>>;
    if (!valid() || !graph_->check_handle(node_, port_, version_, "key_by")) {
      return KeyedStream<K, T, KeyFn>(invalid(), std::move(key_fn));
    }
    return KeyedStream<K, T, KeyFn>(*this, std::move(key_fn));
  }

  // Drops records whose id id_fn(const T&) was seen within `ttl` of event time
  // before (the first is kept): exact deduplication of retries, with state per
  // id that expires when the watermark passes first-seen time + ttl. Records
  // are repartitioned by id. Dropped records are counted ("dedup_dropped").
  template <typename IdFn, typename Rep, typename Period>
  Stream<T> dedup_by(IdFn id_fn, std::chrono::duration<Rep, Period> ttl) const {
    using Id = std::decay_t<std::invoke_result_t<const IdFn&, const T&>>;
    const std::int64_t ttl_ms = to_millis(ttl);
    if (valid() && !has_event_time()) {
      graph_->record_error(absl::InvalidArgumentError(
          "dedup_by(): the ttl is event time and the stream has none: call with_watermarks() "
          "first"));
      return invalid();
    }
    if (valid() && ttl_ms <= 0) {
      graph_->record_error(absl::InvalidArgumentError(
          "dedup_by(): the ttl must be > 0, got " + std::to_string(ttl_ms) + " ms"));
      return invalid();
    }
    return attach<T>(
        "dedup_by", "dedup-id",
        [id_fn, ttl_ms](detail::Worker& w, const detail::OperatorIds& ids, const std::vector<void*>& d) {
          return chain<detail::IdDedupOp<Id, T, IdFn>, T>(w, ids, d, id_fn, ttl_ms);
        },
        1, false, detail::key_exchange<T>(id_fn), /*stateful=*/true)
        .name("dedup_by(ttl " + detail::format_millis(ttl_ms) + ")");
  }

  // Spreads records round-robin over all workers.
  Stream<T> rebalance() const {
    if (!valid() || !graph_->check_handle(node_, port_, version_, "rebalance")) return invalid();
    return Stream<T>(graph_, node_, port_, version_, detail::rebalance_exchange<T>());
  }

  // Names the step that made this stream (Flink's name()): the label in
  // errors, logs and metrics. Default: the step's kind and arguments, e.g.
  // "map", "window(tumbling 1min).aggregate", "source:file:events.csv".
  // Example: .window(ms::tumbling(1min)).aggregate(Usage{}).name("usage per minute")
  Stream<T> name(std::string name) const {
    if (valid()) graph_->set_name(node_, std::move(name));
    return *this;
  }

  // Sets the uid of the step that made this stream (Flink's uid()): its
  // state is stored under it and matched by it on restore. Give stateful
  // steps (windows, dedup, process, sources, sinks) a uid if the pipeline
  // may change: the default uid, "<kind>#<position in the plan>", shifts
  // when steps are added before it, and the checkpoint then no longer
  // restores. Uids must be unique in a pipeline (build() checks).
  Stream<T> uid(std::string uid) const {
    if (valid()) graph_->set_uid(node_, std::move(uid));
    return *this;
  }

  // Ends the stream in `sink`; each worker writes through its own writer.
  // Returns the sink step, to name() or uid() it.
  SinkStep sink(std::shared_ptr<Sink<T>> sink) const {
    if (!sink) {
      if (graph_) graph_->record_error(absl::InvalidArgumentError("sink(): the sink is null"));
      return SinkStep(graph_, -1);
    }
    Stream<T> s = attach<T>(
        "sink", "sink:" + sink->name(),
        [sink](detail::Worker& w, const detail::OperatorIds& ids,
               const std::vector<void*>&) -> StatusOr<void*> {
          MS_ASSIGN_OR_RETURN(auto writer, sink->create_writer(w.index(), w.parallelism()));
          auto* op = w.add_operator(
              std::make_unique<detail::SinkOp<T>>(ids, std::move(writer), sink), ids);
          return static_cast<void*>(static_cast<Collector<T>*>(op));
        },
        /*ports=*/0);
    if (s.valid()) graph_->node(s.node_).sink = sink;
    return SinkStep(graph_, s.node_);
  }

  // --- For the DSL's own types; not needed in pipelines. ---

  Stream() = default;
  Stream(std::shared_ptr<detail::Graph> graph, int node, int port, int version,
         std::shared_ptr<detail::ExchangeSpecBase> exchange = nullptr)
      : graph_(std::move(graph)), node_(node), port_(port), version_(version),
        exchange_(std::move(exchange)) {}

  bool valid() const { return graph_ && node_ >= 0; }
  // Port 0 of a node with event time carries timestamps and watermarks; so do
  // its side outputs (late records keep their timestamps), except a source's
  // undecodable-records output, whose records have none.
  bool has_event_time() const {
    if (!valid()) return false;
    const detail::Node& n = graph_->node(node_);
    return n.event_time && (port_ == 0 || n.input >= 0);
  }
  const std::shared_ptr<detail::Graph>& graph() const { return graph_; }
  int node() const { return node_; }
  int port() const { return port_; }

  // Adds a node that consumes this stream (through `exchange` if given, or the
  // pending rebalance), besides any other consumer it has; `make` creates its
  // instance on a worker. Returns the handle of the new node's output port 0.
  // `stateful`: the node keeps keyed state and takes a share of the operator
  // memory budget.
  template <typename R>
  Stream<R> attach(const char* method, const std::string& kind, detail::FnNode::Make make,
                   int ports = 1, bool event_time_out = false,
                   std::shared_ptr<detail::ExchangeSpecBase> exchange = nullptr,
                   bool stateful = false) const {
    if (!valid() || !graph_->check_handle(node_, port_, version_, method)) {
      return Stream<R>(graph_, -1, 0, 0);
    }
    auto node = std::make_unique<detail::FnNode>(std::move(make));
    node->make_fan_out = &detail::make_fan_out<T>;
    node->event_time = has_event_time() || event_time_out;
    node->stateful = stateful;
    node->exchange = exchange ? std::move(exchange) : exchange_;
    const int id = graph_->add(std::move(node), kind, ports);
    graph_->connect(node_, port_, id);
    detail::Node& n = graph_->node(id);
    n.stage = graph_->node(node_).stage + (n.exchange ? 1 : 0);
    return Stream<R>(graph_, id, 0, 0);
  }

  // Creates operator Op(ids, output collector, args...) on a worker, chained.
  template <typename Op, typename Out, typename... Args>
  static StatusOr<void*> chain(detail::Worker& w, const detail::OperatorIds& ids,
                               const std::vector<void*>& downstream, Args&&... args) {
    auto* op = w.add_operator(
        std::make_unique<Op>(ids, static_cast<Collector<Out>*>(downstream[0]),
                             std::forward<Args>(args)...),
        ids);
    return static_cast<void*>(static_cast<Collector<T>*>(op));
  }

 protected:
  Stream<T> invalid() const { return Stream<T>(graph_, -1, 0, 0); }

  std::shared_ptr<detail::Graph> graph_;
  int node_ = -1;
  int port_ = 0;
  int version_ = 0;
  std::shared_ptr<detail::ExchangeSpecBase> exchange_;  // pending rebalance
};

}  // namespace meterstream

#include "meterstream/api/keyed_stream.hpp"
