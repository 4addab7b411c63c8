// Codecs: how values and keys become bytes.
//
// Keyed state, checkpoints and connectors store values as bytes. Codec<T> says
// how a T is written and read back; KeyCodec<T> is the encoding used where the
// byte order matters (the keys of a MapState, the current key of keyed state).
//
// Provided codecs:
//   - trivially copyable types (integers, floating point, enums, plain structs):
//     their object bytes (memcpy, host byte order); decode checks the exact size.
//   - std::string: its bytes, unchanged.
//   - std::vector<T> and std::pair<A, B> of codec'able types: each element
//     prefixed by its length as a varint.
// Pointers have no codec (their bytes are meaningless in another process).
//
// Users specialise Codec for their own types:
//
// Example:
//   struct Reading { std::string meter_id; double wh; };
//
//   template <>
//   struct meterstream::Codec<Reading> {
//     static void encode(const Reading& r, std::string* out) {
//       meterstream::encode_field(r.meter_id, out);
//       meterstream::Codec<double>::encode(r.wh, out);
//     }
//     static bool decode(std::string_view in, Reading* r) {
//       return meterstream::decode_field(&in, &r->meter_id) &&
//              meterstream::Codec<double>::decode(in, &r->wh);
//     }
//   };
//
// The memcpy codec is host-endian and includes padding bytes: it is for state
// and checkpoints read back by the same build, not for data exchanged with
// other programs. Structs with padding need their own codec to be used as keys
// (KeyCodec rejects them at compile time).
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace meterstream {

// Codec<T>::encode(const T&, std::string* out) APPENDS the encoding of a value to
// `out`; Codec<T>::decode(std::string_view in, T* out) reads a value that
// occupies exactly `in` and returns false when `in` is malformed (then `*out`
// is unspecified).
template <typename T, typename Enable = void>
struct Codec;

namespace detail {

template <typename T>
struct IsPair : std::false_type {};
template <typename A, typename B>
struct IsPair<std::pair<A, B>> : std::true_type {};

// True for the types whose Codec is their object bytes.
template <typename T>
inline constexpr bool kIsMemcpyCodec =
    std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
    !std::is_member_pointer_v<T> && !std::is_array_v<T> && !IsPair<T>::value;

// Appends `v` as a base-128 varint (LEB128, as protobuf and RocksDB).
inline void put_varint(std::uint64_t v, std::string* out) {
  char buf[10];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, static_cast<std::size_t>(n));
}

// Reads a varint from the front of `*in` and advances it; false when truncated
// or longer than 10 bytes.
inline bool get_varint(std::string_view* in, std::uint64_t* v) {
  std::uint64_t result = 0;
  for (std::size_t i = 0; i < in->size() && i < 10; ++i) {
    const auto byte = static_cast<std::uint8_t>((*in)[i]);
    result |= static_cast<std::uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      *v = result;
      in->remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

// Appends `bytes` prefixed by its length.
inline void put_length_prefixed(std::string_view bytes, std::string* out) {
  put_varint(bytes.size(), out);
  out->append(bytes.data(), bytes.size());
}

// Reads a length-prefixed field from the front of `*in` and advances it.
inline bool get_length_prefixed(std::string_view* in, std::string_view* field) {
  std::uint64_t len = 0;
  if (!get_varint(in, &len) || len > in->size()) return false;
  *field = in->substr(0, static_cast<std::size_t>(len));
  in->remove_prefix(static_cast<std::size_t>(len));
  return true;
}

}  // namespace detail

// Appends Codec<T>'s (or C's) encoding of `v` prefixed by its length as a
// varint: the building block of codecs for composite types (see the Example
// above).
template <typename T, typename C = Codec<T>>
void encode_field(const T& v, std::string* out) {
  if constexpr (detail::kIsMemcpyCodec<T> && std::is_same_v<C, Codec<T>>) {
    detail::put_varint(sizeof(T), out);
    C::encode(v, out);
  } else {
    // The length is known only after encoding: encode in place, then insert
    // the (usually one-byte) length in front of it.
    const std::size_t start = out->size();
    C::encode(v, out);
    std::string len;
    detail::put_varint(out->size() - start, &len);
    out->insert(start, len);
  }
}

// Reads a field written by encode_field from the front of `*in` and advances
// it; false when the field is truncated or does not decode.
template <typename T, typename C = Codec<T>>
bool decode_field(std::string_view* in, T* out) {
  std::string_view field;
  return detail::get_length_prefixed(in, &field) && C::decode(field, out);
}

// Trivially copyable types: their object bytes.
template <typename T>
struct Codec<T, std::enable_if_t<detail::kIsMemcpyCodec<T>>> {
  static void encode(const T& v, std::string* out) {
    out->append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  static bool decode(std::string_view in, T* out) {
    if (in.size() != sizeof(T)) return false;
    if constexpr (std::is_same_v<T, bool>) {
      if (in[0] != 0 && in[0] != 1) return false;
    }
    std::memcpy(static_cast<void*>(out), in.data(), sizeof(T));
    return true;
  }
};

// std::string: its bytes.
template <>
struct Codec<std::string> {
  static void encode(const std::string& v, std::string* out) { out->append(v); }
  static bool decode(std::string_view in, std::string* out) {
    out->assign(in.data(), in.size());
    return true;
  }
};

// std::vector<T>: the elements' length-prefixed encodings, concatenated (no
// count: appending an encoded element to an encoded vector gives a valid
// encoded vector, which ListState relies on).
template <typename T, typename Alloc>
struct Codec<std::vector<T, Alloc>> {
  static void encode(const std::vector<T, Alloc>& v, std::string* out) {
    for (const T& e : v) encode_field(e, out);
  }
  static bool decode(std::string_view in, std::vector<T, Alloc>* out) {
    out->clear();
    while (!in.empty()) {
      T e{};
      if (!decode_field(&in, &e)) return false;
      out->push_back(std::move(e));
    }
    return true;
  }
};

// std::pair<A, B>: both members length-prefixed.
template <typename A, typename B>
struct Codec<std::pair<A, B>> {
  static void encode(const std::pair<A, B>& v, std::string* out) {
    encode_field(v.first, out);
    encode_field(v.second, out);
  }
  static bool decode(std::string_view in, std::pair<A, B>* out) {
    return decode_field(&in, &out->first) &&
           decode_field(&in, &out->second) && in.empty();
  }
};

// KeyCodec<T>: an encoding whose byte-wise (memcmp) order is the order of the
// values, where one is provided. Used for MapState user keys, so that a
// MapState iterates in key order, and for the current key.
//
//   - unsigned integers: big-endian;
//   - signed integers: big-endian with the sign bit flipped (so -1 < 0 < 1);
//   - float / double: IEEE bits, big-endian, all bits flipped for negatives and
//     the sign bit flipped for positives (-0.0 and 0.0 are distinct keys; NaNs
//     sort after +inf or before -inf by sign);
//   - bool, enums (by underlying type), std::string (its bytes).
// Every other type falls back to Codec<T>: deterministic but not ordered.
// Specialise KeyCodec for your key types to get ordered iteration.
template <typename T, typename Enable = void>
struct KeyCodec : Codec<T> {
  static_assert(!detail::kIsMemcpyCodec<T> || std::has_unique_object_representations_v<T>,
                "KeyCodec<T>: T has padding bytes, so its memcpy encoding is not "
                "deterministic; specialise Codec or KeyCodec for it");
};

namespace detail {

template <typename U>
void put_big_endian(U u, std::string* out) {
  char buf[sizeof(U)];
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    buf[sizeof(U) - 1 - i] = static_cast<char>(u & 0xff);
    u = static_cast<U>(u >> 8);
  }
  out->append(buf, sizeof(U));
}

template <typename U>
bool get_big_endian(std::string_view in, U* u) {
  if (in.size() != sizeof(U)) return false;
  U r = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    r = static_cast<U>((r << 8) | static_cast<std::uint8_t>(in[i]));
  }
  *u = r;
  return true;
}

template <typename T>
inline constexpr bool kIsOrderedInteger =
    std::is_integral_v<T> && !std::is_same_v<T, bool>;

}  // namespace detail

template <typename T>
struct KeyCodec<T, std::enable_if_t<detail::kIsOrderedInteger<T>>> {
  using U = std::make_unsigned_t<T>;
  static constexpr U kFlip =
      std::is_signed_v<T> ? static_cast<U>(U{1} << (sizeof(U) * 8 - 1)) : U{0};
  static void encode(const T& v, std::string* out) {
    detail::put_big_endian(static_cast<U>(static_cast<U>(v) ^ kFlip), out);
  }
  static bool decode(std::string_view in, T* out) {
    U u;
    if (!detail::get_big_endian(in, &u)) return false;
    *out = static_cast<T>(static_cast<U>(u ^ kFlip));
    return true;
  }
};

template <typename T>
struct KeyCodec<T, std::enable_if_t<std::is_floating_point_v<T> &&
                                    (sizeof(T) == 4 || sizeof(T) == 8)>> {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static constexpr U kSign = U{1} << (sizeof(U) * 8 - 1);
  static void encode(const T& v, std::string* out) {
    U u;
    std::memcpy(&u, &v, sizeof(U));
    u = (u & kSign) ? static_cast<U>(~u) : static_cast<U>(u | kSign);
    detail::put_big_endian(u, out);
  }
  static bool decode(std::string_view in, T* out) {
    U u;
    if (!detail::get_big_endian(in, &u)) return false;
    u = (u & kSign) ? static_cast<U>(u & ~kSign) : static_cast<U>(~u);
    std::memcpy(out, &u, sizeof(U));
    return true;
  }
};

template <typename T>
struct KeyCodec<T, std::enable_if_t<std::is_enum_v<T>>> {
  using Underlying = std::underlying_type_t<T>;
  static void encode(const T& v, std::string* out) {
    KeyCodec<Underlying>::encode(static_cast<Underlying>(v), out);
  }
  static bool decode(std::string_view in, T* out) {
    Underlying u;
    if (!KeyCodec<Underlying>::decode(in, &u)) return false;
    *out = static_cast<T>(u);
    return true;
  }
};

// bool and std::string: Codec<T> is already ordered.
template <>
struct KeyCodec<bool> : Codec<bool> {};
template <>
struct KeyCodec<std::string> : Codec<std::string> {};

namespace detail {
// Whether T has a Codec (can be written to a state store).
template <typename T, typename = void>
struct HasCodec : std::false_type {};
template <typename T>
struct HasCodec<T, std::void_t<decltype(Codec<T>::encode(std::declval<const T&>(),
                                                        std::declval<std::string*>()))>>
    : std::true_type {};
}  // namespace detail

}  // namespace meterstream
