// WindowedStream: a keyed stream cut into event-time windows
// (KeyedStream::window()). Only an API construct: aggregate() or reduce() fuse
// key_by + window + aggregate into one operator.
//
// Example: per meter and minute, the energy and the voltage range.
//   auto usage = readings.key_by(&MeterReading::meter_id)
//                    .window(ms::tumbling(1min))
//                    .allowed_lateness(30s)
//                    .aggregate(Usage{});           // Stream<WindowResult<uint64_t, Usage::Acc>>
//   usage.late().sink(ms::collect_into(too_late));  // records after the lateness
//
// A WindowedStream comes from a KeyedStream (keyed_stream.hpp, which
// includes this header); its results are a Stream (stream.hpp).
//
// Thread-safety: as Stream.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/api/detail/nodes.hpp"
#include "meterstream/api/detail/operators.hpp"
#include "meterstream/api/detail/stream_core.hpp"
#include "meterstream/window/aggregate.hpp"
#include "meterstream/window/assigners.hpp"
#include "meterstream/window/detail/salted_window.hpp"
#include "meterstream/window/detail/session_window_operator.hpp"
#include "meterstream/window/detail/time_window_operator.hpp"

namespace meterstream {

// The output of a window aggregation: the results, plus the late records.
template <typename Out, typename T>
class WindowedResultStream : public Stream<Out> {
 public:
  // The records that arrived after their windows' allowed lateness (side
  // output). They are counted ("window_late_records") whether or not this
  // stream is used.
  Stream<T> late() const {
    if (late_) return detail::StreamAccess::stream<T>(late_());
    return detail::StreamAccess::stream<T>(this->core_.side_output(1));
  }

  // See Stream::name() and Stream::uid(); they keep late() available.
  WindowedResultStream name(std::string name) const {
    return WindowedResultStream(Stream<Out>::name(std::move(name)), late_);
  }
  WindowedResultStream uid(std::string uid) const {
    return WindowedResultStream(Stream<Out>::uid(std::move(uid)), late_);
  }

 private:
  template <typename, typename, typename, typename>
  friend class WindowedStream;
  explicit WindowedResultStream(Stream<Out> results,
                                std::function<detail::StreamCore()> late = nullptr)
      : Stream<Out>(std::move(results)), late_(std::move(late)) {}
  // Adds the step that gives late() when it is not this node's side output
  // (salted(): the records unsalted again), only when late() is used.
  std::function<detail::StreamCore()> late_;
};

template <typename K, typename T, typename KeyFn, typename Assigner>
class WindowedStream {
  static_assert(detail::kIsWindowAssigner<Assigner>,
                "window(): use ms::tumbling(), ms::sliding() or ms::session()");

 public:

  // Keeps windows `lateness` after they fire: late records within it update
  // and re-emit their key's result. Default: 0.
  template <typename Rep, typename Period>
  WindowedStream allowed_lateness(std::chrono::duration<Rep, Period> lateness) const {
    WindowedStream w = *this;
    w.lateness_ms_ = to_millis(lateness);
    w.lateness_inexact_ = detail::not_whole_millis(lateness);
    return w;
  }

  // Aggregates each key's window with `agg` (see aggregate.hpp); emits one
  // WindowResult per key and window when the window fires.
  template <typename A>
  WindowedResultStream<WindowResult<K, aggregate_result_t<A>>, T> aggregate(A agg) const {
    return aggregate_as(std::move(agg), "aggregate");
  }

  // Combines each key's window with f(const T&, const T&) -> T.
  template <typename F>
  auto reduce(F f) const {
    return aggregate_as(ReduceAggregate<T, F>{std::move(f)}, "reduce");
  }

 private:
  template <typename, typename, typename>
  friend class KeyedStream;

  // `partitioned`: as KeyedStream's.
  WindowedStream(detail::StreamCore input, KeyFn key_fn, Assigner assigner, bool partitioned,
                 int salts = 1)
      : input_(std::move(input)), key_fn_(std::move(key_fn)), assigner_(assigner),
        partitioned_(partitioned), salts_(salts) {}

  // aggregate(), by `method` (its default name: "window(<assigner>).<method>").
  template <typename A>
  WindowedResultStream<WindowResult<K, aggregate_result_t<A>>, T> aggregate_as(
      A agg, const char* method) const {
    using Out = WindowResult<K, aggregate_result_t<A>>;
    if (Status s = validate(); !s.ok()) {
      input_.record_error(std::move(s));
      return WindowedResultStream<Out, T>(detail::StreamAccess::stream<Out>(input_.invalid()));
    }
    if (salts_ > 1) return salted_aggregate(std::move(agg), method);
    auto key_fn = key_fn_;
    const Assigner assigner = assigner_;
    const std::int64_t lateness = lateness_ms_;
    auto make = [key_fn, agg, assigner, lateness](detail::Worker& w, const detail::OperatorIds& ids,
                                                  const std::vector<detail::Port>& d)
        -> StatusOr<detail::Port> {
      Collector<Out>* out = d[0].get<Out>();
      Collector<T>* late = d[1].get<T>();
      // Sessions merge windows; tumbling and sliding windows do not.
      using Op = std::conditional_t<Assigner::kMerging,
                                    detail::SessionWindowOperator<K, T, KeyFn, A>,
                                    detail::TimeWindowOperator<K, T, KeyFn, Assigner, A>>;
      Collector<T>* op =
          w.add_operator(std::make_unique<Op>(ids, key_fn, agg, assigner, lateness, out, late), ids);
      return detail::Port(op);
    };
    const detail::StreamCore results = detail::attach<T>(
        input_, method, "window-aggregate", make, detail::port_types<Out, T>(), false,
        partitioned_ ? nullptr : detail::key_exchange<T>(key_fn_), /*stateful=*/true);
    if (results.valid()) {
      detail::Node& n = results.graph->node(results.node);
      n.side_output[1] = true;
      n.name = "window(" + assigner_.describe() + ")." + method;
    }
    return WindowedResultStream<Out, T>(detail::StreamAccess::stream<Out>(results));
  }

  // aggregate() after key_by().salted(n): salt, aggregate per (key, salt,
  // window), merge per (key, window) (see window/detail/salted_window.hpp).
  template <typename A>
  WindowedResultStream<WindowResult<K, aggregate_result_t<A>>, T> salted_aggregate(
      A agg, const char* method) const {
    using Out = WindowResult<K, aggregate_result_t<A>>;
    using Acc = typename A::accumulator_type;
    using SK = detail::SaltedKey<K>;
    using ST = detail::Salted<T, K>;
    using Partial = WindowResult<SK, Acc>;
    const std::string name = "window(" + assigner_.describe() + ")." + method;
    auto refuse = [&](const std::string& why) {
      input_.record_error(absl::InvalidArgumentError(
          name + ": key_by().salted(" + std::to_string(salts_) + ") " + why));
      return WindowedResultStream<Out, T>(detail::StreamAccess::stream<Out>(input_.invalid()));
    };
    if constexpr (!detail::HasMerge<A>::value) {
      return refuse("needs the aggregate's merge(Acc&, const Acc&) to combine the salts' "
                    "partial results; " + detail::type_name<A>() + " has none");
    } else if constexpr (Assigner::kMerging) {
      return refuse("does not apply to session windows (each salt would cut its own sessions)");
    } else {
      const auto n = static_cast<std::uint32_t>(salts_);
      auto key_fn = key_fn_;
      // 1. The salt, round-robin per worker, and its key group.
      const detail::StreamCore salted = detail::attach<T>(
          input_, method, "salt",
          [key_fn, n](detail::Worker& w, const detail::OperatorIds& ids,
                      const std::vector<detail::Port>& d) {
            const int m = w.max_parallelism();
            auto salt = [key_fn, n, m, next = static_cast<std::uint32_t>(w.index()) % n](
                            const T& v) mutable {
              next = next + 1 == n ? 0 : next + 1;
              K key = std::invoke(key_fn, v);
              const int base = key_group_of(key, m);
              return ST{v, SK{std::move(key), next, detail::salted_group(base, next, n, m)}};
            };
            return detail::chain<detail::MapOp<T, ST, decltype(salt)>, T, ST>(w, ids, d, salt);
          },
          detail::port_types<ST>());
      if (!salted.valid()) return refuse("could not be added");
      salted.graph->set_name(salted.node, "key_by.salted(" + std::to_string(salts_) + ")");
      // 2. Partial accumulators per (key, salt, window).
      const auto salted_key = [](const ST& s) -> const SK& { return s.key; };
      const Assigner assigner = assigner_;
      const std::int64_t lateness = lateness_ms_;
      detail::AccAggregate<A> partial_agg{agg};
      const detail::StreamCore partials = detail::attach<ST>(
          salted, method, "window-aggregate",
          [salted_key, partial_agg, assigner, lateness](
              detail::Worker& w, const detail::OperatorIds& ids,
              const std::vector<detail::Port>& d) -> StatusOr<detail::Port> {
            using Op = detail::TimeWindowOperator<SK, ST, decltype(salted_key), Assigner,
                                                  detail::AccAggregate<A>>;
            Collector<ST>* op = w.add_operator(
                std::make_unique<Op>(ids, salted_key, partial_agg, assigner, lateness,
                                     d[0].get<Partial>(), d[1].get<ST>()),
                ids);
            return detail::Port(op);
          },
          detail::port_types<Partial, ST>(), false, detail::key_exchange<ST>(salted_key),
          /*stateful=*/true);
      if (!partials.valid()) return refuse("could not be added");
      {
        detail::Node& p = partials.graph->node(partials.node);
        p.side_output[1] = true;
        p.name = name + ".partial";
      }
      // The late records, unsalted again (when late() is used).
      auto late = [partials, method, name]() {
        const detail::StreamCore c = detail::attach<ST>(
            partials.side_output(1), method, "map",
            [](detail::Worker& w, const detail::OperatorIds& ids,
               const std::vector<detail::Port>& d) {
              auto unsalt = [](const ST& s) { return s.value; };
              return detail::chain<detail::MapOp<ST, T, decltype(unsalt)>, ST, T>(w, ids, d,
                                                                                  unsalt);
            },
            detail::port_types<T>());
        if (c.valid()) c.graph->set_name(c.node, name + ".late");
        return c;
      };
      const detail::StreamCore marked = detail::attach<Partial>(
          partials, method, "salt-upserts",
          [](detail::Worker& w, const detail::OperatorIds& ids,
             const std::vector<detail::Port>& d) {
            return detail::chain<detail::SaltUpsertMarker<K, Acc>, Partial, Partial>(w, ids, d);
          },
          detail::port_types<Partial>());
      if (!marked.valid()) return refuse("could not be added");
      marked.graph->set_name(marked.node, name + ".upserts");
      // 3. One result per (key, window): the salts' parts merged.
      const detail::StreamCore results = detail::attach<Partial>(
          marked, method, "window-merge",
          [agg, lateness](detail::Worker& w, const detail::OperatorIds& ids,
                          const std::vector<detail::Port>& d) -> StatusOr<detail::Port> {
            Collector<Partial>* op = w.add_operator(
                std::make_unique<detail::SaltMergeOperator<K, A>>(ids, agg, lateness,
                                                                  d[0].get<Out>()),
                ids);
            return detail::Port(op);
          },
          detail::port_types<Out>(), false,
          detail::key_exchange<Partial>([](const Partial& p) -> const K& { return p.key.key; }),
          /*stateful=*/true);
      if (results.valid()) results.graph->set_name(results.node, name);
      return WindowedResultStream<Out, T>(detail::StreamAccess::stream<Out>(results), late);
    }
  }

  Status validate() const {
    std::string what = assigner_.invalid();
    if (what.empty() && !lateness_inexact_.empty()) {
      what = "allowed_lateness(): " + lateness_inexact_ +
             " is not a whole number of milliseconds (event time counts milliseconds)";
    }
    if (what.empty() && lateness_ms_ < 0) {
      what = "allowed_lateness() must be >= 0, got " + std::to_string(lateness_ms_) + " ms";
    }
    if (what.empty() && input_.valid() && !input_.has_event_time()) {
      what = "the stream has no event time: call with_watermarks() before key_by()";
    }
    if (what.empty()) return Status();
    return absl::InvalidArgumentError("window(): " + what);
  }

  detail::StreamCore input_;
  KeyFn key_fn_;
  Assigner assigner_;
  std::int64_t lateness_ms_ = 0;
  std::string lateness_inexact_;  // detail::not_whole_millis() of the lateness
  bool partitioned_ = false;
  int salts_ = 1;  // key_by().salted(); 1: not salted
};

}  // namespace meterstream
