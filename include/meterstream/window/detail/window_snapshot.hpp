// The checkpoint format of the window operators. Not API.
//
// Operator-wide bytes of an instance (OperatorInstanceState::operator_state):
//
//   i64 watermark                 read by restored_watermark(), as every operator's
//   definition                    since the window definition was recorded (below)
//   time windows only: u64 next spill chunk number, u64 keys of the last fired window
//
// The definition: u64 kDefinitionMagic, u8 version (1), u8 kind ('T' time
// windows, 'S' sessions), i64 size, slide, offset, gap (ms; 0 where the kind
// has none), then the aggregate's type name, length-prefixed. The magic
// cannot be a chunk number (those are < 2^32), so the bytes of a checkpoint
// from before the definition was recorded read as "definition unknown" and
// restore as they did. A restore whose recorded definition differs from the
// job's is refused (kFailedPrecondition, naming the operator, the old and the
// new definition): it would otherwise reinterpret windows with other ends or
// accumulators of another aggregate.
//
// Time windows' keyed bytes: one blob under kAllKeyGroups, a header (u64
// format: kRawFormat or kCodecFormat, u64 sizeof key, u64 sizeof
// accumulator), then per window i64 start, u8 flags (1 fired, 2 spilled), u64
// entry count and the entries (key and accumulator as raw bytes when both are
// trivially copyable, through their Codec otherwise). Spilled chunks are in
// the spill store, whose snapshot goes along.
//
// Session windows' keyed bytes: per key group, per key its Codec bytes, u64
// session count, per session i64 start, i64 end, u8 fired and the accumulator
// through its Codec.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "meterstream/core/codec.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/core/time.hpp"
#include "meterstream/runtime/detail/operator_checkpoint.hpp"
#include "meterstream/checkpoint/detail/checkpoint_parts.hpp"
#include "meterstream/window/aggregate.hpp"
#include "meterstream/window/assigners.hpp"

namespace meterstream::detail {

// What a window operator's state depends on: restoring state into an
// operator with another definition is refused.
struct WindowDefinition {
  char kind = 'T';  // 'T' tumbling or sliding windows, 'S' sessions
  std::int64_t size_ms = 0;
  std::int64_t slide_ms = 0;  // == size_ms for tumbling windows
  std::int64_t offset_ms = 0;
  std::int64_t gap_ms = 0;
  std::string aggregate;  // aggregate_type_name<A>()

  bool operator==(const WindowDefinition& o) const {
    return kind == o.kind && size_ms == o.size_ms && slide_ms == o.slide_ms &&
           offset_ms == o.offset_ms && gap_ms == o.gap_ms && aggregate == o.aggregate;
  }
  bool operator!=(const WindowDefinition& o) const { return !(*this == o); }

  // "tumbling 1min, aggregate Usage", for the refusal.
  std::string describe() const {
    std::string s;
    if (kind == 'S') {
      s = "session " + format_millis(gap_ms);
    } else if (slide_ms == size_ms) {
      s = "tumbling " + format_millis(size_ms);
    } else {
      s = "sliding " + format_millis(size_ms) + "/" + format_millis(slide_ms);
    }
    if (offset_ms != 0) s += " offset " + format_millis(offset_ms);
    return s + ", aggregate " + aggregate;
  }
};

// The name of aggregate A's type as recorded in checkpoints (the compiler's
// demangled spelling). reduce(f) records the reduced type only: its state is
// an optional T whatever f is, and f may change between runs (as Flink lets a
// ReduceFunction change).
template <typename A>
struct AggregateTypeName {
  static std::string get() { return type_name<A>(); }
};
template <typename T, typename F>
struct AggregateTypeName<ReduceAggregate<T, F>> {
  static std::string get() { return "reduce<" + type_name<T>() + ">"; }
};

// The definitions of the assigners with aggregate A. Sliding windows whose
// slide equals their size are the tumbling windows of that size: their state
// is interchangeable.
template <typename A>
WindowDefinition window_definition(const TumblingWindows& w) {
  return WindowDefinition{'T', w.size_ms, w.size_ms, w.offset_ms, 0, AggregateTypeName<A>::get()};
}
template <typename A>
WindowDefinition window_definition(const SlidingWindows& w) {
  return WindowDefinition{'T', w.size_ms, w.slide_ms, w.offset_ms, 0, AggregateTypeName<A>::get()};
}
template <typename A>
WindowDefinition window_definition(const SessionWindows& w) {
  return WindowDefinition{'S', 0, 0, 0, w.gap_ms, AggregateTypeName<A>::get()};
}

// "MSWINDEF": above 2^32, so never a time window's chunk number.
inline constexpr std::uint64_t kDefinitionMagic = 0x4D5357494E444546ULL;
inline constexpr unsigned char kDefinitionVersion = 1;

// Appends the definition record to operator-wide bytes.
inline void put_window_definition(const WindowDefinition& d, std::string* out) {
  put_u64(out, kDefinitionMagic);
  out->push_back(static_cast<char>(kDefinitionVersion));
  out->push_back(d.kind);
  put_i64(out, d.size_ms);
  put_i64(out, d.slide_ms);
  put_i64(out, d.offset_ms);
  put_i64(out, d.gap_ms);
  put_length_prefixed(d.aggregate, out);
}

// Reads the definition record at the front of `*in` (the operator-wide bytes
// after the watermark) and advances past it. nullopt, `*in` unchanged, when
// the bytes have none (a checkpoint from before it was recorded); false when
// a record is there but does not decode.
inline bool get_window_definition(std::string_view* in, std::optional<WindowDefinition>* out) {
  out->reset();
  std::string_view rest = *in;
  std::uint64_t magic = 0;
  if (!get_u64(&rest, &magic) || magic != kDefinitionMagic) return true;
  if (rest.size() < 2 || static_cast<unsigned char>(rest[0]) != kDefinitionVersion) return false;
  WindowDefinition d;
  d.kind = rest[1];
  rest.remove_prefix(2);
  std::string_view aggregate;
  if (!get_i64(&rest, &d.size_ms) || !get_i64(&rest, &d.slide_ms) ||
      !get_i64(&rest, &d.offset_ms) || !get_i64(&rest, &d.gap_ms) ||
      !get_length_prefixed(&rest, &aggregate)) {
    return false;
  }
  d.aggregate = std::string(aggregate);
  *out = std::move(d);
  *in = rest;
  return true;
}

// The operator-wide bytes of one old instance after the watermark and the
// definition record (if any): where an operator's own fields start. Throws
// (kDataLoss) when they do not decode.
inline std::string_view window_fields(std::string_view bytes, const std::string& op) {
  std::int64_t wm = 0;
  std::optional<WindowDefinition> d;
  if (!get_i64(&bytes, &wm) || !get_window_definition(&bytes, &d)) {
    throw_corrupt(op, "its operator state");
  }
  return bytes;
}

// Refuses (kFailedPrecondition) to restore `part` into operator `op` defined
// as `current` when an old instance recorded another definition; accepts
// checkpoints without one. Throws kDataLoss when the bytes do not decode.
inline void check_window_definition(const RestoredCheckpoint::Operator& part,
                                    const std::string& op, const WindowDefinition& current) {
  for (const auto& [worker, bytes] : part.operator_states) {
    std::string_view in = bytes;
    std::int64_t wm = 0;
    std::optional<WindowDefinition> old;
    if (!get_i64(&in, &wm) || !get_window_definition(&in, &old)) {
      throw_corrupt(op, "its operator state");
    }
    if (old && *old != current) {
      throw StatusError{absl::FailedPreconditionError(
          op + ": the checkpoint's window state was written for " + old->describe() +
          ", but this job defines " + current.describe() +
          "; its windows would be restored wrongly, so the restore is refused (restore a "
          "checkpoint of this window definition, or start the job without restoring)")};
    }
  }
}

// The time windows' blob: its header and entries.
template <typename K, typename Acc>
struct TimeWindowsFormat {
  // Trivially copyable keys and accumulators are copied as raw bytes (a
  // checkpoint is read by the same build on the same architecture; the sizes
  // in the header catch a changed layout), others go through their Codec.
  static constexpr bool kRaw = std::is_trivially_copyable_v<K> &&
                               std::is_trivially_copyable_v<Acc> &&
                               std::is_default_constructible_v<K>;
  // Whether the windows can be checkpointed at all.
  static constexpr bool kWritable = kRaw || (HasCodec<K>::value && HasCodec<Acc>::value);
  static constexpr std::uint64_t kRawFormat = 1;
  static constexpr std::uint64_t kCodecFormat = 2;
  static constexpr std::size_t kEntryBytes = kRaw ? sizeof(K) + sizeof(Acc) : 16;  // estimate

  static void put_header(std::string* blob) {
    put_u64(blob, kRaw ? kRawFormat : kCodecFormat);
    put_u64(blob, sizeof(K));
    put_u64(blob, sizeof(Acc));
  }

  // Reads the header; throws kDataLoss when it does not decode and
  // kFailedPrecondition when the blob was written for other types.
  static void get_header(std::string_view* in, const std::string& op) {
    std::uint64_t format = 0, key_size = 0, acc_size = 0;
    if (!get_u64(in, &format) || !get_u64(in, &key_size) || !get_u64(in, &acc_size)) {
      throw_corrupt(op, "the windows");
    }
    if (format != (kRaw ? kRawFormat : kCodecFormat) ||
        (kRaw && (key_size != sizeof(K) || acc_size != sizeof(Acc)))) {
      throw StatusError{absl::FailedPreconditionError(
          op + ": the checkpoint's windows were written with other key or "
               "accumulator types (format " + std::to_string(format) + ", sizes " +
          std::to_string(key_size) + "/" + std::to_string(acc_size) + ")")};
    }
  }

  static void put_window(std::string* blob, Timestamp start, bool fired, bool spilled,
                         std::uint64_t entries) {
    put_i64(blob, start);
    blob->push_back(static_cast<char>((fired ? 1 : 0) | (spilled ? 2 : 0)));
    put_u64(blob, entries);
  }

  // Reads a window's start, flags and entry count; false when truncated.
  static bool get_window(std::string_view* in, Timestamp* start, bool* fired, bool* spilled,
                         std::uint64_t* entries) {
    if (!get_i64(in, start) || in->empty()) return false;
    const auto flags = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    *fired = (flags & 1) != 0;
    *spilled = (flags & 2) != 0;
    return get_u64(in, entries);
  }

  // Appends the entries of `table` (key, accumulator).
  template <typename Table>
  static void put_entries(std::string* blob, const Table& table) {
    if constexpr (kRaw) {
      std::size_t at = blob->size();
      blob->resize(at + table.size() * (sizeof(K) + sizeof(Acc)));
      char* out = blob->data();
      for (const auto& [key, acc] : table) {
        std::memcpy(out + at, &key, sizeof(K));
        std::memcpy(out + at + sizeof(K), &acc, sizeof(Acc));
        at += sizeof(K) + sizeof(Acc);
      }
    } else if constexpr (kWritable) {
      for (const auto& [key, acc] : table) {
        encode_field<K, KeyCodec<K>>(key, blob);
        encode_field<Acc>(acc, blob);
      }
    }
  }

  // Reads one entry; false when truncated or it does not decode.
  static bool get_entry(std::string_view* in, K* key, Acc* acc) {
    if constexpr (kRaw) {
      if (in->size() < sizeof(K) + sizeof(Acc)) return false;
      std::memcpy(key, in->data(), sizeof(K));
      std::memcpy(acc, in->data() + sizeof(K), sizeof(Acc));
      in->remove_prefix(sizeof(K) + sizeof(Acc));
      return true;
    } else if constexpr (kWritable) {
      return decode_field<K, KeyCodec<K>>(in, key) && decode_field<Acc>(in, acc);
    } else {
      return false;
    }
  }
};

// The session windows' bytes of one key group: per key its sessions.
template <typename K, typename Acc>
struct SessionsFormat {
  static constexpr bool kWritable = HasCodec<K>::value && HasCodec<Acc>::value;

  static void put_key(std::string* b, const K& key, std::uint64_t sessions) {
    encode_field<K, KeyCodec<K>>(key, b);
    put_u64(b, sessions);
  }
  static void put_session(std::string* b, Timestamp start, Timestamp end, bool fired,
                          const Acc& acc) {
    put_i64(b, start);
    put_i64(b, end);
    b->push_back(fired ? 1 : 0);
    encode_field<Acc>(acc, b);
  }

  // Read what put_key() and put_session() wrote; false when truncated or it
  // does not decode.
  static bool get_key(std::string_view* in, K* key, std::uint64_t* sessions) {
    return decode_field<K, KeyCodec<K>>(in, key) && get_u64(in, sessions);
  }
  static bool get_session(std::string_view* in, Timestamp* start, Timestamp* end, bool* fired,
                          Acc* acc) {
    if (!get_i64(in, start) || !get_i64(in, end) || in->empty()) return false;
    *fired = in->front() != 0;
    in->remove_prefix(1);
    return decode_field<Acc>(in, acc);
  }
};

}  // namespace meterstream::detail
