// Keyed state: the typed, key-scoped API of operators and user functions
// (Flink's ValueState, MapState, ListState and AggregatingState).
//
// A state handle is bound to a KeyedStateStore, a registered state and a
// KeyContext. The runtime sets the KeyContext to the key of the record (or
// timer) being processed before calling user code, and every access through a
// handle reads and writes the state of that current key only.
//
// Example:
//   ms::KeyContext ctx;
//   MS_ASSIGN_OR_RETURN(auto count,
//                       ms::make_value_state<std::int64_t>(*store, ctx, "count"));
//   ms::set_current_key(ctx, std::string("meter-7"), store->max_parallelism());
//   count.update(count.value().value_or(0) + 1);
//
// A state may have a time-to-live (state/ttl.hpp, the last argument of the
// make_* factories); its expired values read as absent.
//
// Values are stored with Codec<V> (core/codec.hpp); MapState user keys with
// KeyCodec<UK>, so that a MapState iterates in key order for integer, floating
// point and string keys. Stored types must be default-constructible (decoding
// fills an existing object). Value, list and aggregating states store the
// current key's entry under the current key's bytes; MapState's layout is
// described at the class.
//
// Errors: the accessors neither return Status nor throw. When the backend
// fails or a stored value does not decode, the first such error is recorded
// in the handle's KeyContext (KeyContext::error, naming the state and the key
// group); from then on every access through that context does nothing (reads
// are empty, writes are dropped), so nothing is written on top of a failure.
// In a job the runtime checks the context after each call of user code and
// fails the job with that Status, naming the operator. Standalone users check
// ctx.error.
//
// Thread-safety: handles are cheap to copy and are used by the thread that
// owns their store. A default-constructed handle may only be assigned to.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/core/codec.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/state/state_backend.hpp"
#include "meterstream/state/ttl.hpp"

namespace meterstream {

// The key whose state handles read and write: its key group and its bytes
// (KeyCodec<K> of the key; see set_current_key). key_group is -1 while no key
// is set, and any state access then records an error.
struct KeyContext {
  int key_group = -1;
  std::string key;
  // The first error of a state access through a handle bound to this context
  // (see "Errors" above); OK until one fails. Handles write it through a const
  // context, hence mutable.
  mutable Status error;
};

// Makes `key` the current key of `ctx`: its key group out of
// `max_parallelism` (KeyHash<K>) and its bytes (KeyCodec<K>).
template <typename K>
void set_current_key(KeyContext& ctx, const K& key, int max_parallelism) {
  ctx.key_group = key_group_of(key, max_parallelism);
  ctx.key.clear();
  KeyCodec<K>::encode(key, &ctx.key);
}

// Thrown inside the library only (its internal caches), never into user code:
// the typed accessors record errors in the KeyContext instead. what() is
// status().ToString().
class StateError : public std::runtime_error {
 public:
  explicit StateError(Status status);
  const Status& status() const noexcept { return status_; }

 private:
  Status status_;
};

namespace detail {

// A kDataLoss Status naming the state, the key group and `what` ("value",
// "map key", ...) that did not decode.
Status decode_error(const KeyedStateStore& store, int state, int key_group, const char* what,
                    std::size_t size);

// What all handles share: the store, the state id and the key context, and
// accessors that record their errors in the context (first one wins) and do
// nothing once it holds one.
class StateHandle {
 public:
  StateHandle() = default;
  StateHandle(KeyedStateStore* store, int state, const KeyContext* ctx)
      : store_(store), state_(state), ctx_(ctx) {}

  // The registered state id.
  int state_id() const { return state_; }
  // False for a default-constructed handle.
  bool valid() const { return store_ != nullptr; }

 protected:
  int key_group() const { return ctx_->key_group; }
  const std::string& current_key() const { return ctx_->key; }

  // False once the context holds an error: accessors then do nothing.
  bool usable() const { return ctx_->error.ok(); }
  // Records `status` in the context unless it already holds an error.
  void fail(const Status& status) const {
    if (ctx_->error.ok()) ctx_->error = status;
  }

  bool read(std::string_view key, std::string* value) const {
    if (!usable()) return false;
    StatusOr<bool> found = store_->get(state_, ctx_->key_group, key, value);
    if (!found.ok()) {
      fail(found.status());
      return false;
    }
    return *found;
  }
  void write(std::string_view key, std::string_view value) const {
    if (usable()) check(store_->put(state_, ctx_->key_group, key, value));
  }
  void append(std::string_view key, std::string_view bytes) const {
    if (usable()) check(store_->append(state_, ctx_->key_group, key, bytes));
  }
  void erase(std::string_view key) const {
    if (usable()) check(store_->remove(state_, ctx_->key_group, key));
  }
  template <typename Fn>
  void scan(std::string_view prefix, Fn&& fn) const {
    if (usable()) check(store_->for_each(state_, ctx_->key_group, prefix, std::forward<Fn>(fn)));
  }
  void erase_prefix(std::string_view prefix) const {
    if (usable()) check(store_->remove_prefix(state_, ctx_->key_group, prefix));
  }
  // Decodes `bytes` into *out; false (and the error recorded) when they do
  // not decode.
  template <typename C, typename T>
  bool decode(std::string_view bytes, T* out, const char* what) const {
    if (C::decode(bytes, out)) return true;
    decode_failed(what, bytes.size());
    return false;
  }
  void decode_failed(const char* what, std::size_t size) const {
    fail(decode_error(*store_, state_, ctx_->key_group, what, size));
  }

 private:
  void check(const Status& status) const {
    if (!status.ok()) fail(status);
  }

  KeyedStateStore* store_ = nullptr;
  int state_ = -1;
  const KeyContext* ctx_ = nullptr;
};

}  // namespace detail

// One value of type V per key.
template <typename V>
class ValueState : public detail::StateHandle {
 public:
  using StateHandle::StateHandle;

  // The current key's value, or nullopt when it has none.
  std::optional<V> value() const {
    std::string bytes;
    if (!read(current_key(), &bytes)) return std::nullopt;
    std::optional<V> v(std::in_place);
    if (!decode<Codec<V>>(bytes, &*v, "value")) return std::nullopt;
    return v;
  }
  // Sets the current key's value.
  void update(const V& v) {
    std::string bytes;
    Codec<V>::encode(v, &bytes);
    write(current_key(), bytes);
  }
  // Removes the current key's value.
  void clear() { erase(current_key()); }
};

// A map from UK to UV per key.
//
// Layout: each entry is stored under the key
//   varint(size of current key) + current key + KeyCodec<UK>(user key)
// so that the entries of one key are one prefix scan and keys whose bytes are
// prefixes of each other ("a", "ab") do not see each other's entries.
// Iteration follows the byte order of KeyCodec<UK>: numeric order for integers
// and floating point (big-endian, sign-flipped), byte order for strings;
// specialise KeyCodec for other user key types to control it.
template <typename UK, typename UV>
class MapState : public detail::StateHandle {
 public:
  using StateHandle::StateHandle;

  // The value of `user_key`, or nullopt.
  std::optional<UV> get(const UK& user_key) const {
    std::string bytes;
    if (!read(entry_key(user_key), &bytes)) return std::nullopt;
    std::optional<UV> v(std::in_place);
    if (!decode<Codec<UV>>(bytes, &*v, "map value")) return std::nullopt;
    return v;
  }
  // Sets the value of `user_key`.
  void put(const UK& user_key, const UV& value) {
    std::string bytes;
    Codec<UV>::encode(value, &bytes);
    write(entry_key(user_key), bytes);
  }
  // Removes `user_key` (absent is fine).
  void remove(const UK& user_key) { erase(entry_key(user_key)); }
  // Whether `user_key` has a value.
  bool contains(const UK& user_key) const {
    std::string bytes;
    return read(entry_key(user_key), &bytes);
  }
  // Calls f(const UK&, const UV&) for each entry of the current key in user key
  // order. When f returns bool, false stops the iteration. f must not modify
  // this state (collect the keys to remove, then remove them).
  template <typename F>
  void for_each(F&& f) const {
    const std::string prefix = key_prefix();
    const char* failed = nullptr;
    std::size_t failed_size = 0;
    scan(prefix, [&](std::string_view key, std::string_view value) {
      UK uk{};
      UV uv{};
      key.remove_prefix(prefix.size());
      if (!KeyCodec<UK>::decode(key, &uk)) {
        failed = "map key";
        failed_size = key.size();
        return false;
      }
      if (!Codec<UV>::decode(value, &uv)) {
        failed = "map value";
        failed_size = value.size();
        return false;
      }
      if constexpr (std::is_same_v<std::invoke_result_t<F&, const UK&, const UV&>,
                                   bool>) {
        return static_cast<bool>(f(static_cast<const UK&>(uk), static_cast<const UV&>(uv)));
      } else {
        f(static_cast<const UK&>(uk), static_cast<const UV&>(uv));
        return true;
      }
    });
    if (failed != nullptr) decode_failed(failed, failed_size);
  }
  // Whether the current key has no entries.
  bool empty() const {
    bool found = false;
    scan(key_prefix(), [&](std::string_view, std::string_view) {
      found = true;
      return false;
    });
    return !found;
  }
  // Removes all entries of the current key.
  void clear() { erase_prefix(key_prefix()); }

 private:
  std::string key_prefix() const {
    std::string prefix;
    put_length_prefixed_key(&prefix);
    return prefix;
  }
  std::string entry_key(const UK& user_key) const {
    std::string key;
    put_length_prefixed_key(&key);
    KeyCodec<UK>::encode(user_key, &key);
    return key;
  }
  void put_length_prefixed_key(std::string* out) const {
    const std::string& k = current_key();
    out->reserve(k.size() + 16);
    detail::put_length_prefixed(k, out);
  }
};

// A list of V per key.
//
// Layout: the current key's value is Codec<std::vector<V>>'s encoding (the
// elements length-prefixed, concatenated), so add() appends without reading.
template <typename V>
class ListState : public detail::StateHandle {
 public:
  using StateHandle::StateHandle;

  // Appends `v` to the current key's list.
  void add(const V& v) {
    std::string bytes;
    encode_field(v, &bytes);
    append(current_key(), bytes);
  }
  // Appends all of `vs`.
  void add_all(const std::vector<V>& vs) {
    if (vs.empty()) return;
    std::string bytes;
    Codec<std::vector<V>>::encode(vs, &bytes);
    append(current_key(), bytes);
  }
  // The current key's list; empty when it has none.
  std::vector<V> get() const {
    std::vector<V> vs;
    std::string bytes;
    if (read(current_key(), &bytes) && !decode<Codec<std::vector<V>>>(bytes, &vs, "list")) {
      vs.clear();
    }
    return vs;
  }
  // Replaces the current key's list (an empty list clears it).
  void update(const std::vector<V>& vs) {
    if (vs.empty()) {
      clear();
      return;
    }
    std::string bytes;
    Codec<std::vector<V>>::encode(vs, &bytes);
    write(current_key(), bytes);
  }
  // Removes the current key's list.
  void clear() { erase(current_key()); }
};

// An aggregate of the T added per key, kept as an accumulator (Flink's
// AggregatingState). AggFn has the shape of Flink's AggregateFunction:
//
//   struct Average {
//     using accumulator_type = std::pair<double, std::int64_t>;  // sum, count
//     accumulator_type create() const { return {0.0, 0}; }
//     void add(accumulator_type& acc, const double& v) const { acc.first += v; ++acc.second; }
//     void merge(accumulator_type& acc, const accumulator_type& o) const {
//       acc.first += o.first; acc.second += o.second;
//     }
//     double result(const accumulator_type& acc) const { return acc.first / acc.second; }
//   };
//
// The accumulator is stored with Codec<accumulator_type>.
template <typename T, typename AggFn>
class AggregatingState : public detail::StateHandle {
 public:
  using accumulator_type = typename AggFn::accumulator_type;
  using result_type = std::decay_t<decltype(std::declval<const AggFn&>().result(
      std::declval<const accumulator_type&>()))>;

  AggregatingState() = default;
  AggregatingState(KeyedStateStore* store, int state, const KeyContext* ctx,
                   AggFn fn = AggFn{})
      : StateHandle(store, state, ctx), fn_(std::move(fn)) {}

  // Adds `v` to the current key's accumulator (created with fn.create() when
  // absent).
  void add(const T& v) {
    accumulator_type acc = load_or_create();
    fn_.add(acc, v);
    store_accumulator(acc);
  }
  // Merges another accumulator into the current key's (e.g. when session
  // windows merge).
  void merge(const accumulator_type& other) {
    accumulator_type acc = load_or_create();
    fn_.merge(acc, other);
    store_accumulator(acc);
  }
  // The current key's result, or nullopt when nothing was added.
  std::optional<result_type> get() const {
    std::optional<accumulator_type> acc = accumulator();
    if (!acc) return std::nullopt;
    return fn_.result(*acc);
  }
  // The current key's accumulator, or nullopt when nothing was added.
  std::optional<accumulator_type> accumulator() const {
    std::string bytes;
    if (!read(current_key(), &bytes)) return std::nullopt;
    std::optional<accumulator_type> acc(std::in_place);
    if (!decode<Codec<accumulator_type>>(bytes, &*acc, "accumulator")) return std::nullopt;
    return acc;
  }
  // Removes the current key's accumulator.
  void clear() { erase(current_key()); }

 private:
  accumulator_type load_or_create() const {
    std::optional<accumulator_type> acc = accumulator();
    return acc ? std::move(*acc) : fn_.create();
  }
  void store_accumulator(const accumulator_type& acc) {
    std::string bytes;
    Codec<accumulator_type>::encode(acc, &bytes);
    write(current_key(), bytes);
  }

  AggFn fn_{};
};

// Registers state `name` of the matching kind in `store` and returns a handle
// bound to `ctx`. `ttl`, when given, makes the state's values expire
// (state/ttl.hpp): map state per entry, the others per key. Errors: those of
// KeyedStateStore::register_state (an empty name; the name registered with
// another kind or TTL; a TTL that is not positive). `store` and `ctx` must
// outlive the handle.
//
// Example:
//   MS_ASSIGN_OR_RETURN(auto seen, ms::make_value_state<bool>(
//                                      *store, ctx, "seen", ms::Ttl(24h).event_time()));
template <typename V>
StatusOr<ValueState<V>> make_value_state(KeyedStateStore& store, const KeyContext& ctx,
                                         std::string name,
                                         std::optional<StateTtl> ttl = std::nullopt) {
  MS_ASSIGN_OR_RETURN(int id, store.register_state(StateDescriptor(
                                  std::move(name), StateDescriptor::Kind::kValue, ttl)));
  return ValueState<V>(&store, id, &ctx);
}

template <typename UK, typename UV>
StatusOr<MapState<UK, UV>> make_map_state(KeyedStateStore& store, const KeyContext& ctx,
                                          std::string name,
                                          std::optional<StateTtl> ttl = std::nullopt) {
  MS_ASSIGN_OR_RETURN(int id, store.register_state(StateDescriptor(
                                  std::move(name), StateDescriptor::Kind::kMap, ttl)));
  return MapState<UK, UV>(&store, id, &ctx);
}

template <typename V>
StatusOr<ListState<V>> make_list_state(KeyedStateStore& store, const KeyContext& ctx,
                                       std::string name,
                                       std::optional<StateTtl> ttl = std::nullopt) {
  MS_ASSIGN_OR_RETURN(int id, store.register_state(StateDescriptor(
                                  std::move(name), StateDescriptor::Kind::kList, ttl)));
  return ListState<V>(&store, id, &ctx);
}

// Example:
//   MS_ASSIGN_OR_RETURN(auto avg,
//                       ms::make_aggregating_state<double>(*store, ctx, "avg", Average{}));
template <typename T, typename AggFn>
StatusOr<AggregatingState<T, AggFn>> make_aggregating_state(
    KeyedStateStore& store, const KeyContext& ctx, std::string name, AggFn fn = AggFn{},
    std::optional<StateTtl> ttl = std::nullopt) {
  MS_ASSIGN_OR_RETURN(int id,
                      store.register_state(StateDescriptor(
                          std::move(name), StateDescriptor::Kind::kAggregating, ttl)));
  return AggregatingState<T, AggFn>(&store, id, &ctx, std::move(fn));
}

}  // namespace meterstream
