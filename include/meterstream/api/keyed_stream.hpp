// KeyedStream<K, T>: a stream partitioned by key (Stream::key_by()).
//
// Keyed streams are windowed (window()) or processed per key with state and
// timers (process()). K is deduced from the key function; it needs a KeyHash
// (integers and strings have one) and, for process(), a KeyCodec.
//
// Thread-safety: as Stream.
#pragma once

#include <string>
#include <utility>

#include "meterstream/api/detail/dedup_operator.hpp"
#include "meterstream/api/detail/keyed_process_operator.hpp"
#include "meterstream/api/detail/nodes.hpp"
#include "meterstream/api/stream.hpp"
#include "meterstream/api/process_function.hpp"
#include "meterstream/window/assigners.hpp"

namespace meterstream {

template <typename T>
class Stream;
template <typename K, typename T, typename KeyFn, typename Assigner>
class WindowedStream;

template <typename K, typename T, typename KeyFn>
class KeyedStream {
 public:
  using key_type = K;
  using value_type = T;

  // `partitioned`: `input` is already partitioned by this key (the output of a
  // keyed operator), so the next keyed operator is chained, not exchanged.
  KeyedStream(Stream<T> input, KeyFn key_fn, bool partitioned = false)
      : input_(std::move(input)), key_fn_(std::move(key_fn)), partitioned_(partitioned) {}

  // Groups each key's records into event-time windows: tumbling(), sliding()
  // or session(). The stream needs event time (with_watermarks() upstream).
  template <typename Assigner>
  WindowedStream<K, T, KeyFn, Assigner> window(Assigner assigner) const {
    return WindowedStream<K, T, KeyFn, Assigner>(input_, key_fn_, assigner, partitioned_);
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
    if (horizon == 0) {
      if (input_.graph()) {
        input_.graph()->record_error(
            absl::InvalidArgumentError("dedup_by_sequence(): the horizon must be >= 1"));
      }
      return KeyedStream(Stream<T>(input_.graph(), -1, 0, 0), key_fn_, true);
    }
    auto key_fn = key_fn_;
    Stream<T> out = input_.template attach<T>(
        "dedup_by_sequence", "dedup-sequence",
        [key_fn, seq_fn, horizon](detail::Worker& w, const detail::OperatorIds& ids,
                                  const std::vector<void*>& d) {
          return Stream<T>::template chain<detail::SequenceDedupOp<K, T, KeyFn, SeqFn>, T>(
              w, ids, d, key_fn, seq_fn, horizon);
        },
        1, false, exchange(), /*stateful=*/true)
        .name("key_by.dedup_by_sequence");
    return KeyedStream(out, key_fn_, true);
  }

  // Runs process function `fn` per key (see process_function.hpp), emitting Out.
  template <typename Out, typename F>
  Stream<Out> process(F fn) const {
    auto key_fn = key_fn_;
    return input_.template attach<Out>(
        "process", "process",
        [key_fn, fn](detail::Worker& w, const detail::OperatorIds& ids, const std::vector<void*>& d) {
          return Stream<T>::template chain<detail::KeyedProcessOp<K, T, KeyFn, F, Out>, Out>(
              w, ids, d, key_fn, fn);
        },
        1, false, exchange(), /*stateful=*/true)
        .name("key_by.process");
  }

  // Names the step that made this stream: dedup_by_sequence() (see
  // Stream::name()). key_by() itself adds no step: name the step after it.
  KeyedStream name(std::string name) const {
    if (check_step("name")) input_.name(std::move(name));
    return *this;
  }
  // Sets the uid of the step that made this stream: dedup_by_sequence() (see
  // Stream::uid()).
  KeyedStream uid(std::string uid) const {
    if (check_step("uid")) input_.uid(std::move(uid));
    return *this;
  }

  const Stream<T>& input() const { return input_; }
  const KeyFn& key_fn() const { return key_fn_; }

 private:
  // The repartitioning into this stream's keyed operators; none when the
  // input is partitioned by this key already.
  std::shared_ptr<detail::ExchangeSpecBase> exchange() const {
    if (partitioned_) return nullptr;
    return detail::key_exchange<T>(key_fn_);
  }

  // Whether this stream was made by a step (dedup_by_sequence()), which
  // name() and uid() apply to; records an error if not.
  bool check_step(const char* method) const {
    if (partitioned_ || !input_.graph()) return true;
    input_.graph()->record_error(absl::InvalidArgumentError(
        std::string(method) + "(): key_by() adds no step of its own; call " + method +
        "() on the step after it (e.g. .window(...).aggregate(...)." + method + "(...))"));
    return false;
  }

  Stream<T> input_;
  KeyFn key_fn_;
  bool partitioned_ = false;
};

}  // namespace meterstream

#include "meterstream/api/windowed_stream.hpp"
