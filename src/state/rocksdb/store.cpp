#include "state/rocksdb/store.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "rocksdb/write_batch.h"
#include "state/rocksdb/errors.hpp"
#include "state/rocksdb/keys.hpp"
#include "state/ttl_format.hpp"

namespace meterstream::detail {
namespace {

// The keys of one key group that start with a prefix: the seek key and the
// upper bound, which the iterator reads and which must outlive it.
struct PrefixScan {
  PrefixScan(int key_group, std::string_view prefix) {
    put_key_group(key_group, &lower);
    lower.append(prefix.data(), prefix.size());
    upper = prefix_successor(lower);
    upper_slice = rocksdb::Slice(upper);
  }
  std::unique_ptr<rocksdb::Iterator> iterator(rocksdb::DB* db, rocksdb::ReadOptions ro,
                                              rocksdb::ColumnFamilyHandle* cf) const {
    ro.iterate_upper_bound = &upper_slice;
    return std::unique_ptr<rocksdb::Iterator>(db->NewIterator(ro, cf));
  }
  std::string lower;
  std::string upper;
  rocksdb::Slice upper_slice;
};

}  // namespace

RocksDBKeyedStateStore::RocksDBKeyedStateStore(std::shared_ptr<OpenStores> open_stores,
                                               std::string operator_id, KeyGroupRange range,
                                               int max_parallelism,
                                               std::shared_ptr<Database> db)
    : KeyedStoreBase(std::move(open_stores), std::move(operator_id), range, max_parallelism),
      db_(std::move(db)),
      operator_clocks_(db_->operator_clocks(operator_id_)) {
  write_options_.disableWAL = true;  // durability comes from checkpoints
  operator_clocks_->add(shared_clock());
}

RocksDBKeyedStateStore::~RocksDBKeyedStateStore() {
  for (State& state : states_) db_->release_column(state.column, range_);
  operator_clocks_->remove(&clock());
}

StatusOr<RocksDBState> RocksDBKeyedStateStore::new_state(const StateDescriptor& descriptor) {
  MS_ASSIGN_OR_RETURN(Column * column, db_->acquire_column(operator_id_, descriptor));
  return State{descriptor, column, column->handle};
}

const std::string& RocksDBKeyedStateStore::make_key(int key_group, std::string_view key) {
  key_buffer_.clear();
  put_key_group(key_group, &key_buffer_);
  key_buffer_.append(key.data(), key.size());
  return key_buffer_;
}

Status RocksDBKeyedStateStore::error(const rocksdb::Status& s, int state, int key_group,
                                     const char* what) const {
  return from_rocksdb(s, absl::StrCat("operator '", operator_id_, "' state '",
                                      descriptor(state)->name, "' key group ", key_group,
                                      ": RocksDB ", what));
}

StatusOr<bool> RocksDBKeyedStateStore::get(int state, int key_group, std::string_view key,
                                           std::string* value) {
  const State* s = find(state, key_group);
  if (s == nullptr) return locate_error(state, key_group);
  const std::string& k = make_key(key_group, key);
  rocksdb::PinnableSlice stored;
  const rocksdb::Status rs = db()->Get(read_options_, s->cf, k, &stored);
  if (rs.IsNotFound()) return false;
  if (!rs.ok()) return error(rs, state, key_group, "get");
  if (!s->descriptor.ttl) {
    value->assign(stored.data(), stored.size());
    return true;
  }
  const StateTtl& ttl = *s->descriptor.ttl;
  Timestamp expiry = 0;
  if (!get_expiry(to_view(stored), &expiry)) {
    return short_value_error(state, key_group, stored.size());
  }
  const Timestamp now = clock().now(ttl.domain);
  if (is_expired(expiry, now)) {
    // Removed lazily; the compaction filter would drop it later anyway.
    const rocksdb::Status d = db()->Delete(write_options_, s->cf, k);
    if (!d.ok()) return error(d, state, key_group, "delete of an expired value");
    return false;
  }
  value->assign(stored.data() + kExpiryBytes, stored.size() - kExpiryBytes);
  if (ttl.refresh_on_read) {
    std::string restamped;
    restamped.reserve(stored.size());
    put_expiry(expiry_for(now, ttl), &restamped);
    restamped.append(*value);
    const rocksdb::Status p = db()->Put(write_options_, s->cf, k, restamped);
    if (!p.ok()) return error(p, state, key_group, "refresh on read");
  }
  return true;
}

Status RocksDBKeyedStateStore::put(int state, int key_group, std::string_view key,
                                   std::string_view value) {
  const State* s = find(state, key_group);
  if (s == nullptr) return locate_error(state, key_group);
  const std::string& k = make_key(key_group, key);
  rocksdb::Status rs;
  if (!s->descriptor.ttl) {
    rs = db()->Put(write_options_, s->cf, k, to_slice(value));
  } else {
    const StateTtl& ttl = *s->descriptor.ttl;
    std::string stored;
    stored.reserve(kExpiryBytes + value.size());
    put_expiry(expiry_for(clock().now(ttl.domain), ttl), &stored);
    stored.append(value.data(), value.size());
    rs = db()->Put(write_options_, s->cf, k, stored);
  }
  if (!rs.ok()) return error(rs, state, key_group, "put");
  return Status();
}

Status RocksDBKeyedStateStore::append(int state, int key_group, std::string_view key,
                                      std::string_view bytes) {
  const State* s = find(state, key_group);
  if (s == nullptr) return locate_error(state, key_group);
  const std::string& k = make_key(key_group, key);
  if (!s->descriptor.ttl) {
    const rocksdb::Status rs = db()->Merge(write_options_, s->cf, k, to_slice(bytes));
    if (!rs.ok()) return error(rs, state, key_group, "merge");
    return Status();
  }
  // Read-modify-write (see store.hpp): the whole value's TTL restarts; an
  // expired value is replaced, not extended.
  const StateTtl& ttl = *s->descriptor.ttl;
  const Timestamp now = clock().now(ttl.domain);
  rocksdb::PinnableSlice old;
  const rocksdb::Status g = db()->Get(read_options_, s->cf, k, &old);
  if (!g.ok() && !g.IsNotFound()) return error(g, state, key_group, "get");
  std::string stored;
  put_expiry(expiry_for(now, ttl), &stored);
  if (g.ok()) {
    Timestamp expiry = 0;
    if (!get_expiry(to_view(old), &expiry)) {
      return short_value_error(state, key_group, old.size());
    }
    if (!is_expired(expiry, now)) {
      stored.append(old.data() + kExpiryBytes, old.size() - kExpiryBytes);
    }
  }
  stored.append(bytes.data(), bytes.size());
  const rocksdb::Status p = db()->Put(write_options_, s->cf, k, stored);
  if (!p.ok()) return error(p, state, key_group, "put");
  return Status();
}

Status RocksDBKeyedStateStore::remove(int state, int key_group, std::string_view key) {
  const State* s = find(state, key_group);
  if (s == nullptr) return locate_error(state, key_group);
  const rocksdb::Status rs = db()->Delete(write_options_, s->cf, make_key(key_group, key));
  if (!rs.ok()) return error(rs, state, key_group, "delete");
  return Status();
}

Status RocksDBKeyedStateStore::for_each(
    int state, int key_group, std::string_view prefix,
    absl::FunctionRef<bool(std::string_view, std::string_view)> fn) {
  const State* s = find(state, key_group);
  if (s == nullptr) return locate_error(state, key_group);
  PrefixScan scan(key_group, prefix);
  std::unique_ptr<rocksdb::Iterator> it = scan.iterator(db(), read_options_, s->cf);

  const std::optional<StateTtl>& ttl = s->descriptor.ttl;
  const Timestamp now = ttl ? clock().now(ttl->domain) : 0;
  rocksdb::WriteBatch fixes;  // TTL: deletes of expired values, refreshes
  Status status;
  for (it->Seek(scan.lower); it->Valid(); it->Next()) {
    std::string_view key = to_view(it->key());
    std::string_view value = to_view(it->value());
    if (ttl) {
      Timestamp expiry = 0;
      if (!get_expiry(value, &expiry)) {
        status = short_value_error(state, key_group, value.size());
        break;
      }
      if (is_expired(expiry, now)) {
        fixes.Delete(s->cf, it->key()).PermitUncheckedError();
        continue;
      }
      value.remove_prefix(kExpiryBytes);
      if (ttl->refresh_on_read) {
        std::string restamped;
        put_expiry(expiry_for(now, *ttl), &restamped);
        restamped.append(value.data(), value.size());
        fixes.Put(s->cf, it->key(), restamped).PermitUncheckedError();
      }
    }
    key.remove_prefix(2);
    if (!fn(key, value)) break;
  }
  if (status.ok() && !it->status().ok()) status = error(it->status(), state, key_group, "scan");
  it.reset();
  if (fixes.Count() > 0) {
    const rocksdb::Status w = db()->Write(write_options_, &fixes);
    if (!w.ok() && status.ok()) status = error(w, state, key_group, "TTL update after scan");
  }
  return status;
}

Status RocksDBKeyedStateStore::remove_prefix(int state, int key_group,
                                             std::string_view prefix) {
  const State* s = find(state, key_group);
  if (s == nullptr) return locate_error(state, key_group);
  PrefixScan scan(key_group, prefix);
  std::unique_ptr<rocksdb::Iterator> it = scan.iterator(db(), read_options_, s->cf);
  rocksdb::WriteBatch batch;
  for (it->Seek(scan.lower); it->Valid(); it->Next()) {
    batch.Delete(s->cf, it->key()).PermitUncheckedError();
  }
  if (!it->status().ok()) return error(it->status(), state, key_group, "scan");
  it.reset();
  if (batch.Count() == 0) return Status();
  const rocksdb::Status w = db()->Write(write_options_, &batch);
  if (!w.ok()) return error(w, state, key_group, "delete of a prefix");
  return Status();
}

Status RocksDBKeyedStateStore::for_each_in_key_group(
    int key_group, absl::FunctionRef<bool(int, std::string_view, std::string_view)> fn) {
  if (!range_.contains(key_group)) return range_error(key_group);
  const PrefixScan scan(key_group, "");
  for (std::size_t i = 0; i < states_.size(); ++i) {
    const State& s = states_[i];
    const int state = static_cast<int>(i);
    const std::optional<StateTtl>& ttl = s.descriptor.ttl;
    const Timestamp now = ttl ? clock().now(ttl->domain) : 0;
    std::unique_ptr<rocksdb::Iterator> it = scan.iterator(db(), read_options_, s.cf);
    for (it->Seek(scan.lower); it->Valid(); it->Next()) {
      const std::string_view value = to_view(it->value());
      if (ttl) {
        Timestamp expiry = 0;
        if (!get_expiry(value, &expiry)) {
          return short_value_error(state, key_group, value.size());
        }
        if (is_expired(expiry, now)) continue;
      }
      if (!fn(state, to_view(it->key()).substr(2), value)) return Status();
    }
    if (!it->status().ok()) return error(it->status(), state, key_group, "scan");
  }
  return Status();
}

Status RocksDBKeyedStateStore::clear_key_group(int key_group) {
  if (!range_.contains(key_group)) return range_error(key_group);
  const std::string begin = key_group_key(key_group);
  const std::string end = key_group_key(key_group + 1);
  for (std::size_t i = 0; i < states_.size(); ++i) {
    const rocksdb::Status rs = db()->DeleteRange(write_options_, states_[i].cf, begin, end);
    if (!rs.ok()) return error(rs, static_cast<int>(i), key_group, "delete range");
  }
  return Status();
}

Status RocksDBKeyedStateStore::put_stored(int state, int key_group, std::string_view key,
                                          std::string_view stored) {
  const State* s = find(state, key_group);
  if (s == nullptr) return locate_error(state, key_group);
  MS_RETURN_IF_ERROR(check_stored(state, key_group, stored));
  const rocksdb::Status rs =
      db()->Put(write_options_, s->cf, make_key(key_group, key), to_slice(stored));
  if (!rs.ok()) return error(rs, state, key_group, "put");
  return Status();
}

// Never compacts on the caller's thread (an operator's worker): it asks
// RocksDB's background threads to flush the TTL states' memtables (the TTL
// filter runs on flushes too) and to compact the files of this store's key
// range (SuggestCompactRange marks them), and returns. Periodic compaction
// reaches the files that no one asks about.
Status RocksDBKeyedStateStore::purge_expired() {
  const std::string begin = key_group_key(range_.first);
  const std::string end = key_group_key(range_.last + 1);
  const rocksdb::Slice b(begin);
  const rocksdb::Slice e(end);
  rocksdb::FlushOptions flush;
  flush.wait = false;
  flush.allow_write_stall = true;  // do not wait for a stall to clear either
  for (std::size_t i = 0; i < states_.size(); ++i) {
    if (!states_[i].descriptor.ttl) continue;
    rocksdb::Status rs = db()->Flush(flush, states_[i].cf);
    if (rs.ok()) rs = db()->SuggestCompactRange(states_[i].cf, &b, &e);
    if (!rs.ok()) {
      return from_rocksdb(rs, absl::StrCat("operator '", operator_id_, "' state '",
                                           states_[i].descriptor.name,
                                           "': removing expired values"));
    }
  }
  return Status();
}

StatusOr<std::uint64_t> RocksDBKeyedStateStore::approximate_size_bytes() {
  const std::string begin = key_group_key(range_.first);
  const std::string end = key_group_key(range_.last + 1);
  const rocksdb::Range range(begin, end);
  rocksdb::SizeApproximationOptions options;
  options.include_memtables = true;
  options.include_files = true;
  std::uint64_t total = 0;
  for (const State& s : states_) {
    std::uint64_t size = 0;
    const rocksdb::Status rs = db()->GetApproximateSizes(options, s.cf, &range, 1, &size);
    if (!rs.ok()) {
      return from_rocksdb(rs, absl::StrCat("operator '", operator_id_, "' state '",
                                           s.descriptor.name, "': approximate size"));
    }
    total += size;
  }
  return total;
}

}  // namespace meterstream::detail
