#include "checkpoint/metadata.hpp"

#include <utility>

#include "checkpoint/storage_util.hpp"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace meterstream::detail {

using nlohmann::json;

namespace {

constexpr const char* kFormat = "meterstream-checkpoint/1";
constexpr const char* kStateMagic = "MSOPSTATE1";

bool from_hex(std::string_view hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out->clear();
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

// Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates).
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// Names in the metadata (sources, sinks, operators, staged output) come from
// users and file paths, which need not be UTF-8, while JSON text must be:
// valid UTF-8 is stored as a string, anything else as {"hex": "<bytes>"}, so
// that a restore gets the very bytes back.
json text_json(const std::string& s) {
  if (valid_utf8(s)) return s;
  return json{{"hex", to_hex(std::string_view(s))}};
}

// The inverse of text_json(); throws json::exception on another shape (load()
// turns that into kDataLoss).
std::string text_of(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  std::string out;
  if (!from_hex(j.at("hex").get<std::string>(), &out)) {
    throw json::other_error::create(501, "a name's hex bytes do not decode", &j);
  }
  return out;
}

json text_list(const std::vector<std::string>& list) {
  json out = json::array();
  for (const std::string& s : list) out.push_back(text_json(s));
  return out;
}

}  // namespace

std::string checkpoint_dir(std::int64_t id) { return fmt::format("chk-{:010}", id); }
std::string metadata_path(std::int64_t id) { return checkpoint_dir(id) + "/_metadata"; }

std::int64_t checkpoint_id_of(std::string_view path) {
  if (path.substr(0, 4) != "chk-") return -1;
  path.remove_prefix(4);
  std::int64_t id = 0;
  std::size_t n = 0;
  while (n < path.size() && path[n] >= '0' && path[n] <= '9') {
    id = id * 10 + (path[n] - '0');
    ++n;
  }
  if (n == 0 || (n < path.size() && path[n] != '/')) return -1;
  return id;
}

std::string encode_instance_state(const OperatorInstanceState& op) {
  std::string out = kStateMagic;
  put_u64(&out, op.keyed.size());
  for (const auto& [kg, bytes] : op.keyed) {
    put_i64(&out, kg);
    put_u64(&out, bytes.size());
    out += bytes;
  }
  put_u64(&out, op.operator_state.size());
  out += op.operator_state;
  return out;
}

Status decode_instance_state(std::string_view in, const std::string& path, int worker,
                             RestoredCheckpoint::Operator* into) {
  auto bad = [&] { return absl::DataLossError(fmt::format("{}: operator state does not decode", path)); };
  if (in.substr(0, std::string_view(kStateMagic).size()) != kStateMagic) return bad();
  in.remove_prefix(std::string_view(kStateMagic).size());
  std::uint64_t n = 0;
  if (!get_u64(&in, &n)) return bad();
  for (std::uint64_t i = 0; i < n; ++i) {
    std::int64_t kg = 0;
    std::uint64_t len = 0;
    if (!get_i64(&in, &kg) || !get_u64(&in, &len) || len > in.size()) return bad();
    into->keyed[static_cast<int>(kg)].emplace_back(in.substr(0, len));
    in.remove_prefix(len);
  }
  std::uint64_t len = 0;
  if (!get_u64(&in, &len) || len != in.size()) return bad();
  into->operator_states[worker] = std::string(in);
  return Status();
}

StatusOr<std::string> encode_metadata(const CheckpointMetadata& m) {
  json meta;
  meta["format"] = kFormat;
  meta["id"] = m.id;
  meta["time_ms"] = m.time_ms;
  meta["final"] = m.final;
  meta["parallelism"] = m.parallelism;
  meta["max_parallelism"] = m.max_parallelism;
  json ranges = json::array();
  for (const KeyGroupRange& r : m.key_group_ranges) ranges.push_back({r.first, r.last});
  meta["key_group_ranges"] = std::move(ranges);
  json sources = json::array();
  for (const SplitState& s : m.sources) {
    sources.push_back({{"source", text_json(s.source)},
                       {"split", s.split},
                       {"position", to_hex(s.position)},
                       {"watermark", s.watermark},
                       {"max_timestamp", s.max_timestamp},
                       {"since_watermark", s.since_watermark},
                       {"ended", s.ended}});
  }
  meta["sources"] = std::move(sources);
  json operators = json::array();
  for (const CheckpointMetadata::Operator& op : m.operators) {
    json stores = json::array();
    for (const CheckpointMetadata::Store& s : op.stores) {
      json list = json::array();
      for (const CheckpointMetadata::StoreFile& f : s.files) {
        list.push_back({{"name", f.name}, {"path", f.path}, {"shared", f.shared}});
      }
      stores.push_back({{"backend", s.backend},
                        {"key_groups", {s.key_groups.first, s.key_groups.last}},
                        {"files", std::move(list)}});
    }
    operators.push_back({{"operator", text_json(op.op)},
                         {"worker", op.worker},
                         {"key_groups", {op.key_groups.first, op.key_groups.last}},
                         {"state", op.state_path},
                         {"stores", std::move(stores)}});
  }
  meta["operators"] = std::move(operators);
  json sinks = json::array();
  for (const auto& [sink, list] : m.sinks) {
    sinks.push_back({{"sink", text_json(sink)}, {"commit", text_list(list)}});
  }
  meta["sinks"] = std::move(sinks);
  meta["files"] = m.files;
  // Every name above is valid UTF-8 (text_json), so dump() cannot throw; the
  // catch keeps it that way should a new field forget it.
  try {
    return meta.dump(1);
  } catch (const json::exception& e) {
    return absl::InternalError(
        fmt::format("checkpoint {}: its metadata does not encode as JSON: {}", m.id, e.what()));
  }
}

StatusOr<CheckpointMetadata> decode_metadata(const std::string& bytes, const std::string& path,
                                             std::int64_t id, int max_parallelism) {
  json meta = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(fmt::format("{}: {}", path, what));
  };
  if (meta.is_discarded() || !meta.is_object()) return bad("not JSON");
  try {
    if (meta.at("format").get<std::string>() != kFormat) {
      return bad(fmt::format("format '{}', expected '{}'", meta.at("format").get<std::string>(),
                             kFormat));
    }
    CheckpointMetadata m;
    m.max_parallelism = meta.at("max_parallelism").get<int>();
    if (m.max_parallelism != max_parallelism) {
      return absl::FailedPreconditionError(fmt::format(
          "{}: taken with max_parallelism {}, the job has {}; key groups cannot be mapped",
          path, m.max_parallelism, max_parallelism));
    }
    m.id = meta.at("id").get<std::int64_t>();
    if (m.id != id) return bad(fmt::format("holds id {}", m.id));
    m.final = meta.value("final", false);
    for (const json& s : meta.at("sources")) {
      SplitState split;
      split.source = text_of(s.at("source"));
      split.split = s.at("split").get<int>();
      if (!from_hex(s.at("position").get<std::string>(), &split.position)) {
        return bad("a split position is not hex");
      }
      split.watermark = s.at("watermark").get<std::int64_t>();
      split.max_timestamp = s.at("max_timestamp").get<std::int64_t>();
      split.since_watermark = s.at("since_watermark").get<std::int64_t>();
      split.ended = s.at("ended").get<bool>();
      m.sources.push_back(std::move(split));
    }
    for (const json& s : meta.at("sinks")) {
      std::vector<std::string>& commit = m.sinks[text_of(s.at("sink"))];
      for (const json& c : s.at("commit")) commit.push_back(text_of(c));
    }
    for (const json& op : meta.at("operators")) {
      CheckpointMetadata::Operator o;
      o.op = text_of(op.at("operator"));
      o.worker = op.at("worker").get<int>();
      o.state_path = op.at("state").get<std::string>();
      for (const json& st : op.at("stores")) {
        CheckpointMetadata::Store s;
        s.backend = st.at("backend").get<std::string>();
        s.key_groups = KeyGroupRange{st.at("key_groups").at(0).get<int>(),
                                     st.at("key_groups").at(1).get<int>()};
        for (const json& f : st.at("files")) {
          CheckpointMetadata::StoreFile file{f.at("name").get<std::string>(), "",
                                             f.at("shared").get<bool>()};
          if (file.name.empty() || file.name.find('/') != std::string::npos || file.name[0] == '.') {
            return bad(fmt::format("bad store file name '{}'", file.name));
          }
          file.path = f.at("path").get<std::string>();
          s.files.push_back(std::move(file));
        }
        o.stores.push_back(std::move(s));
      }
      m.operators.push_back(std::move(o));
    }
    for (const json& f : meta.at("files")) m.files.insert(f.get<std::string>());
    return m;
  } catch (const json::exception& e) {
    return bad(fmt::format("malformed: {}", e.what()));
  }
}

StatusOr<std::set<std::string>> decode_metadata_files(const std::string& bytes,
                                                      const std::string& path) {
  json meta = json::parse(bytes, nullptr, false);
  try {
    if (meta.is_discarded() || !meta.is_object() || !meta.contains("files")) {
      throw json::other_error::create(501, "not JSON or no files", &meta);
    }
    return meta.at("files").get<std::set<std::string>>();
  } catch (const json::exception& e) {
    return absl::DataLossError(fmt::format("{}: {}", path, e.what()));
  }
}

}  // namespace meterstream::detail
