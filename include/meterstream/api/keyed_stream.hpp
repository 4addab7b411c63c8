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

  KeyedStream(Stream<T> input, KeyFn key_fn) : input_(std::move(input)), key_fn_(std::move(key_fn)) {}

  // Groups each key's records into event-time windows: tumbling(), sliding()
  // or session(). The stream needs event time (with_watermarks() upstream).
  template <typename Assigner>
  WindowedStream<K, T, KeyFn, Assigner> window(Assigner assigner) const {
    return WindowedStream<K, T, KeyFn, Assigner>(input_, key_fn_, assigner);
  }

  // Runs process function `fn` per key (see process_function.hpp), emitting Out.
  template <typename Out, typename F>
  Stream<Out> process(F fn) const {
    auto key_fn = key_fn_;
    return input_.template attach<Out>(
        "process", "process",
        [key_fn, fn](detail::Worker& w, const std::string& name, const std::vector<void*>& d) {
          return Stream<T>::template chain<detail::KeyedProcessOp<K, T, KeyFn, F, Out>, Out>(
              w, name, d, key_fn, fn);
        },
        1, false, detail::key_exchange<T>(key_fn_));
  }

  const Stream<T>& input() const { return input_; }
  const KeyFn& key_fn() const { return key_fn_; }

 private:
  Stream<T> input_;
  KeyFn key_fn_;
};

}  // namespace meterstream

#include "meterstream/api/windowed_stream.hpp"
