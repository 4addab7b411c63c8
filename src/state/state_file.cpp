// The snapshot file and the backend-independent steps of a restore
// (state/state_file.hpp).
#include "state/state_file.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "state/store_common.hpp"
#include "state/ttl_format.hpp"

namespace meterstream::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMagic = "MSSNAP01";
constexpr std::size_t kChecksumBytes = 8;

void put_uint(std::uint64_t v, int bytes, std::string* out) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void put_bytes(std::string_view s, std::string* out) {
  put_uint(s.size(), 4, out);
  out->append(s.data(), s.size());
}

// Reads big-endian integers and length-prefixed bytes from [pos, end); false
// when they run past `end`.
struct Cursor {
  std::string_view bytes;
  std::size_t pos;
  std::size_t end;

  bool uint(int n, std::uint64_t* v) {
    if (end - pos < static_cast<std::size_t>(n)) return false;
    *v = 0;
    for (int i = 0; i < n; ++i) *v = (*v << 8) | static_cast<std::uint8_t>(bytes[pos++]);
    return true;
  }
  bool u32(int* v) {
    std::uint64_t u = 0;
    if (!uint(4, &u) || u > 0x7fffffff) return false;
    *v = static_cast<int>(u);
    return true;
  }
  bool view(std::string_view* s) {
    int n = 0;
    if (!u32(&n) || end - pos < static_cast<std::size_t>(n)) return false;
    *s = bytes.substr(pos, static_cast<std::size_t>(n));
    pos += static_cast<std::size_t>(n);
    return true;
  }
};

}  // namespace

StateFileBuilder::StateFileBuilder(const StateFileHeader& header) {
  bytes_.append(kMagic.data(), kMagic.size());
  put_bytes(header.operator_id, &bytes_);
  put_uint(static_cast<std::uint64_t>(header.max_parallelism), 4, &bytes_);
  put_uint(static_cast<std::uint64_t>(header.key_groups.first), 4, &bytes_);
  put_uint(static_cast<std::uint64_t>(header.key_groups.last), 4, &bytes_);
  put_uint(header.states.size(), 4, &bytes_);
  for (const StateDescriptor& d : header.states) {
    put_bytes(d.name, &bytes_);
    put_uint(static_cast<std::uint64_t>(d.kind), 1, &bytes_);
    put_uint(d.ttl.has_value() ? 1 : 0, 1, &bytes_);
    const StateTtl ttl = d.ttl.value_or(StateTtl{});
    put_uint(static_cast<std::uint64_t>(ttl.ttl_ms), 8, &bytes_);
    put_uint(static_cast<std::uint64_t>(ttl.domain), 1, &bytes_);
    put_uint(ttl.refresh_on_read ? 1 : 0, 1, &bytes_);
  }
}

void StateFileBuilder::add(int state, int key_group, std::string_view key,
                              std::string_view stored) {
  put_uint(static_cast<std::uint64_t>(state), 4, &bytes_);
  put_uint(static_cast<std::uint64_t>(key_group), 4, &bytes_);
  put_bytes(key, &bytes_);
  put_bytes(stored, &bytes_);
}

Status StateFileBuilder::write(const std::string& path) {
  put_uint(hash_bytes(bytes_), kChecksumBytes, &bytes_);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes_.data(), static_cast<std::streamsize>(bytes_.size()));
  out.close();
  if (!out) {
    return absl::InternalError(absl::StrCat("cannot write snapshot file '", path, "'"));
  }
  return Status();
}

Status StateFileReader::parse_error(const char* what) const {
  return absl::DataLossError(
      absl::StrCat("snapshot file '", path_, "' does not parse: ", what));
}

Status StateFileReader::open(const std::string& path) {
  path_ = path;
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) {
    return absl::DataLossError(
        absl::StrCat("snapshot file '", path, "' cannot be read: ", ec.message()));
  }
  bytes_.resize(static_cast<std::size_t>(size));
  std::ifstream in(path, std::ios::binary);
  in.read(bytes_.data(), static_cast<std::streamsize>(bytes_.size()));
  if (!in) return absl::DataLossError(absl::StrCat("snapshot file '", path, "' cannot be read"));

  if (bytes_.size() < kMagic.size() + kChecksumBytes ||
      std::string_view(bytes_).substr(0, kMagic.size()) != kMagic) {
    return parse_error("not a meterstream snapshot file (magic MSSNAP01)");
  }
  end_ = bytes_.size() - kChecksumBytes;
  Cursor trailer{bytes_, end_, bytes_.size()};
  std::uint64_t checksum = 0;
  trailer.uint(kChecksumBytes, &checksum);
  if (checksum != hash_bytes(std::string_view(bytes_).substr(0, end_))) {
    return parse_error("checksum mismatch (truncated or corrupt)");
  }

  Cursor c{bytes_, kMagic.size(), end_};
  std::string_view operator_id;
  int num_states = 0;
  if (!c.view(&operator_id) || !c.u32(&header_.max_parallelism) ||
      !c.u32(&header_.key_groups.first) || !c.u32(&header_.key_groups.last) ||
      !c.u32(&num_states)) {
    return parse_error("truncated header");
  }
  header_.operator_id = std::string(operator_id);
  for (int i = 0; i < num_states; ++i) {
    std::string_view name;
    std::uint64_t kind = 0, has_ttl = 0, ttl_ms = 0, domain = 0, refresh = 0;
    if (!c.view(&name) || !c.uint(1, &kind) || !c.uint(1, &has_ttl) || !c.uint(8, &ttl_ms) ||
        !c.uint(1, &domain) || !c.uint(1, &refresh)) {
      return parse_error("truncated state descriptor");
    }
    if (kind > static_cast<std::uint64_t>(StateDescriptor::Kind::kAggregating) ||
        has_ttl > 1 || domain > static_cast<std::uint64_t>(TimeDomain::kProcessingTime) ||
        refresh > 1) {
      return parse_error("invalid state descriptor");
    }
    StateDescriptor d(std::string(name), static_cast<StateDescriptor::Kind>(kind));
    if (has_ttl == 1) {
      d.ttl = StateTtl{static_cast<std::int64_t>(ttl_ms), static_cast<TimeDomain>(domain),
                       refresh == 1};
    }
    if (!check_descriptor(header_.operator_id, d).ok()) {
      return parse_error("invalid state descriptor");
    }
    header_.states.push_back(std::move(d));
  }
  pos_ = c.pos;
  return Status();
}

StatusOr<bool> StateFileReader::next(StateFileEntry* entry) {
  if (pos_ == end_) return false;
  Cursor c{bytes_, pos_, end_};
  if (!c.u32(&entry->state) || !c.u32(&entry->key_group) || !c.view(&entry->key) ||
      !c.view(&entry->stored)) {
    return parse_error("truncated entry");
  }
  if (entry->state >= static_cast<int>(header_.states.size())) {
    return parse_error("entry of an unknown state");
  }
  if (!header_.key_groups.contains(entry->key_group)) {
    return parse_error("entry of a key group outside the snapshot's");
  }
  if (header_.states[static_cast<std::size_t>(entry->state)].ttl &&
      entry->stored.size() < kExpiryBytes) {
    return parse_error("TTL value shorter than its 8-byte expiry");
  }
  pos_ = c.pos;
  return true;
}

Status prepare_snapshot_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat("snapshot folder '", dir, "' already exists"));
  }
  const fs::path parent = fs::absolute(dir, ec).parent_path();
  if (!ec) fs::create_directories(parent, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot folder '", dir, "': cannot create its parent: ", ec.message()));
  }
  return Status();
}

Status begin_restore(KeyedStateStore& store, const std::string& dir,
                     const StoreManifest& snapshot, const std::string& file_name,
                     StateFileReader* reader, std::vector<int>* ids,
                     KeyGroupRange* groups) {
  const std::string context =
      absl::StrCat("operator '", store.operator_id(), "': restore from '", dir, "'");
  if (snapshot.backend != store.name()) {
    return absl::FailedPreconditionError(absl::StrCat(
        context, ": a snapshot of the ", snapshot.backend, " backend, this store is ",
        store.name()));
  }
  for (const StoreManifest::File& file : snapshot.files) {
    std::error_code ec;
    if (!fs::is_regular_file(fs::path(dir) / file.name, ec)) {
      return absl::DataLossError(
          absl::StrCat(context, ": snapshot file '", file.name, "' is missing"));
    }
  }
  MS_RETURN_IF_ERROR(reader->open((fs::path(dir) / file_name).string()));
  const StateFileHeader& header = reader->header();
  if (header.operator_id != store.operator_id() ||
      header.max_parallelism != store.max_parallelism()) {
    return absl::FailedPreconditionError(absl::StrCat(
        context, ": a snapshot of operator '", header.operator_id, "' with max_parallelism ",
        header.max_parallelism, ", this store's max_parallelism is ",
        store.max_parallelism()));
  }
  if (!(header.key_groups == snapshot.key_groups)) {
    return absl::DataLossError(absl::StrCat(
        context, ": snapshot file '", file_name, "' is of key groups [",
        header.key_groups.first, ", ", header.key_groups.last, "], the snapshot's are [",
        snapshot.key_groups.first, ", ", snapshot.key_groups.last, "]"));
  }
  ids->clear();
  for (const StateDescriptor& d : header.states) {
    // The descriptor was checked when read: a refusal is a conflict with a
    // state registered under its name.
    StatusOr<int> id = store.register_state(d);
    if (!id.ok()) {
      if (id.status().code() != absl::StatusCode::kInvalidArgument) return id.status();
      return absl::FailedPreconditionError(absl::StrCat(context, ": ", id.status().message()));
    }
    ids->push_back(*id);
  }
  const KeyGroupRange own = store.key_group_range();
  *groups = KeyGroupRange{std::max(own.first, snapshot.key_groups.first),
                          std::min(own.last, snapshot.key_groups.last)};
  return Status();
}

}  // namespace meterstream::detail
