// KeyedStream<K, T>: a stream partitioned by key (Stream::key_by()).
//
// Keyed streams are windowed (window()) or processed per key with state and
// timers (process()). K is deduced from the key function; it needs a KeyHash
// (integers and strings have one) and, for process(), a KeyCodec.
//
// A KeyedStream comes from a Stream (stream.hpp, which includes this
// header); process() and input() give a Stream back.
//
// Thread-safety: as Stream.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/api/detail/dedup_operator.hpp"
#include "meterstream/api/detail/keyed_process_operator.hpp"
#include "meterstream/api/detail/nodes.hpp"
#include "meterstream/api/detail/stream_core.hpp"
#include "meterstream/api/process_function.hpp"
#include "meterstream/api/windowed_stream.hpp"
#include "meterstream/window/assigners.hpp"

namespace meterstream {

// KeyFn is the key function's type, as key_by() deduces it: keep the handle
// in an `auto` and the key function is inlined into the partitioning and the
// keyed operator. KeyedStream<K, T> (KeyFn = AnyKeyFn<K, T>, a std::function)
// names the handle without it, e.g. as a parameter; a KeyedStream of any key
// function converts to it. Its steps then call the key function through the
// std::function, once per record where it partitions and where the keyed
// operator reads the key.
//
// Example:
//   ms::Stream<Usage> usage_of(ms::KeyedStream<std::uint64_t, ms::MeterReading> by_meter);
//   usage_of(readings.key_by(&ms::MeterReading::meter_id));
template <typename K, typename T, typename KeyFn>
class KeyedStream {
 public:
  using key_type = K;
  using value_type = T;

  // The same keyed stream with its key function type-erased (see above).
  template <typename F, typename Erased = KeyFn,
            typename = std::enable_if_t<std::is_same_v<Erased, detail::AnyKeyFn<K, T>> &&
                                        !std::is_same_v<F, Erased>>>
  KeyedStream(const KeyedStream<K, T, F>& other)  // NOLINT(google-explicit-constructor)
      : core_(other.core_), key_fn_(other.key_fn_), partitioned_(other.partitioned_),
        salts_(other.salts_) {}

  // Spreads each key's records over `salts` salts (hot keys): the window
  // aggregation after it aggregates per (key, salt, window) on the workers
  // the salts go to, then merges the salts' partial results per (key,
  // window) with the aggregate's merge(). The results are the unsalted ones:
  // one per key and window, and one upsert per late record within the
  // allowed lateness. Only window(tumbling() or sliding()).aggregate() or
  // reduce() may follow; build() refuses an aggregate without merge().
  // salted(1) salts nothing. Use about as many salts as workers.
  KeyedStream salted(int salts) const {
    if (salts < 1) {
      core_.record_error(absl::InvalidArgumentError(
          "key_by().salted(): the number of salts must be >= 1, got " + std::to_string(salts)));
      return KeyedStream(core_.invalid(), key_fn_, partitioned_);
    }
    KeyedStream k = *this;
    k.salts_ = salts;
    return k;
  }

  // Groups each key's records into event-time windows: tumbling(), sliding()
  // or session(). The stream needs event time (with_watermarks() upstream).
  template <typename Assigner>
  WindowedStream<K, T, KeyFn, Assigner> window(Assigner assigner) const {
    return WindowedStream<K, T, KeyFn, Assigner>(core_, key_fn_, assigner, partitioned_, salts_);
  }

  // Drops records whose sequence number seq_fn(const T&) was already seen for
  // their key (retries). Per key it keeps a bitmap of the last `horizon`
  // sequence numbers (at most horizon / 8 bytes, grown only as far back as the
  // key's records reach); a record more than `horizon` behind its key's
  // highest sequence number is kept and counted ("dedup_beyond_horizon").
  // Dropped records are counted ("dedup_dropped"). The result stays keyed:
  // window() or process() after it need no new exchange.
  template <typename SeqFn>
  KeyedStream dedup_by_sequence(SeqFn seq_fn, std::uint64_t horizon = 4096) const {
    if (!check_unsalted("dedup_by_sequence")) return KeyedStream(core_.invalid(), key_fn_, true);
    if (horizon == 0) {
      core_.record_error(
          absl::InvalidArgumentError("dedup_by_sequence(): the horizon must be >= 1"));
      return KeyedStream(core_.invalid(), key_fn_, true);
    }
    auto key_fn = key_fn_;
    const detail::StreamCore out = detail::attach<T>(
        core_, "dedup_by_sequence", "dedup-sequence",
        [key_fn, seq_fn, horizon](detail::Worker& w, const detail::OperatorIds& ids,
                                  const std::vector<detail::Port>& d) {
          return detail::chain<detail::SequenceDedupOp<K, T, KeyFn, SeqFn>, T, T>(
              w, ids, d, key_fn, seq_fn, horizon);
        },
        detail::port_types<T>(), false, exchange(), /*stateful=*/true);
    if (out.valid()) out.graph->set_name(out.node, "key_by.dedup_by_sequence");
    return KeyedStream(out, key_fn_, true);
  }

  // Runs process function `fn` per key (see process_function.hpp), emitting Out.
  template <typename Out, typename F>
  Stream<Out> process(F fn) const {
    if (!check_unsalted("process")) return detail::StreamAccess::stream<Out>(core_.invalid());
    auto key_fn = key_fn_;
    const detail::StreamCore out = detail::attach<T>(
        core_, "process", "process",
        [key_fn, fn](detail::Worker& w, const detail::OperatorIds& ids,
                     const std::vector<detail::Port>& d) {
          return detail::chain<detail::KeyedProcessOp<K, T, KeyFn, F, Out>, T, Out>(
              w, ids, d, key_fn, fn);
        },
        detail::port_types<Out>(), false, exchange(), /*stateful=*/true);
    if (out.valid()) out.graph->set_name(out.node, "key_by.process");
    return detail::StreamAccess::stream<Out>(out);
  }

  // Names the step that made this stream: dedup_by_sequence() (see
  // Stream::name()). key_by() itself adds no step: name the step after it.
  KeyedStream name(std::string name) const {
    if (check_step("name")) input().name(std::move(name));
    return *this;
  }
  // Sets the uid of the step that made this stream: dedup_by_sequence() (see
  // Stream::uid()).
  KeyedStream uid(std::string uid) const {
    if (check_step("uid")) input().uid(std::move(uid));
    return *this;
  }

  // The records as a plain stream again (not partitioned for later steps).
  Stream<T> input() const { return detail::StreamAccess::stream<T>(core_); }

 private:
  friend struct detail::StreamAccess;
  template <typename, typename, typename>
  friend class KeyedStream;

  // `partitioned`: `core` is already partitioned by this key (the output of a
  // keyed operator), so the next keyed operator is chained, not exchanged.
  KeyedStream(detail::StreamCore core, KeyFn key_fn, bool partitioned)
      : core_(std::move(core)), key_fn_(std::move(key_fn)), partitioned_(partitioned) {}

  // The repartitioning into this stream's keyed operators; none when the
  // input is partitioned by this key already.
  std::shared_ptr<detail::ExchangeSpecBase> exchange() const {
    if (partitioned_) return nullptr;
    return detail::key_exchange<T>(key_fn_);
  }

  // Whether this stream was made by a step (dedup_by_sequence()), which
  // name() and uid() apply to; records an error if not.
  bool check_step(const char* method) const {
    if (partitioned_ || !core_.graph) return true;
    core_.record_error(absl::InvalidArgumentError(
        std::string(method) + "(): key_by() adds no step of its own; call " + method +
        "() on the step after it (e.g. .window(...).aggregate(...)." + method + "(...))"));
    return false;
  }

  // Salting applies to window aggregations only; records an error if not.
  bool check_unsalted(const char* method) const {
    if (salts_ <= 1) return true;
    core_.record_error(absl::InvalidArgumentError(
        std::string("key_by().salted().") + method +
        "(): salting applies to window().aggregate() and window().reduce() only"));
    return false;
  }

  detail::StreamCore core_;
  KeyFn key_fn_;
  bool partitioned_ = false;
  int salts_ = 1;  // salted(); 1: not salted
};

}  // namespace meterstream
