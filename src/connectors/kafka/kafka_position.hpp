// The checkpointed position of one Kafka partition, as bytes. Not API.
//
// The Kafka source returns it from SplitReader::position(); a transactional
// Kafka sink finds the job's Kafka positions among CheckpointCommit::splits
// by decoding each one, and commits them to their consumer group inside the
// transaction of the checkpoint (send_offsets_to_transaction).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace meterstream::detail {

struct KafkaPosition {
  std::string group;  // the consumer group the offsets are committed to ("": none)
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t next_offset = 0;  // the offset of the next record to read
  // Bounded mode: the offset at which the partition ends (-1: unbounded).
  std::int64_t end_offset = -1;
};

namespace kafka_position_detail {
constexpr std::string_view kMagic = "KAFKAPOS1";

inline void put_u64(std::string* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline bool get_u64(std::string_view* in, std::uint64_t* v) {
  if (in->size() < 8) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i) {
    *v |= static_cast<std::uint64_t>(static_cast<unsigned char>((*in)[static_cast<std::size_t>(i)]))
          << (8 * i);
  }
  in->remove_prefix(8);
  return true;
}
inline void put_str(std::string* out, std::string_view s) {
  put_u64(out, s.size());
  out->append(s);
}
inline bool get_str(std::string_view* in, std::string* s) {
  std::uint64_t n = 0;
  if (!get_u64(in, &n) || n > in->size()) return false;
  s->assign(in->substr(0, n));
  in->remove_prefix(n);
  return true;
}
}  // namespace kafka_position_detail

inline std::string encode_kafka_position(const KafkaPosition& p) {
  namespace d = kafka_position_detail;
  std::string out(d::kMagic);
  d::put_str(&out, p.group);
  d::put_str(&out, p.topic);
  d::put_u64(&out, static_cast<std::uint64_t>(static_cast<std::int64_t>(p.partition)));
  d::put_u64(&out, static_cast<std::uint64_t>(p.next_offset));
  d::put_u64(&out, static_cast<std::uint64_t>(p.end_offset));
  return out;
}

// nullopt when `bytes` is not a Kafka position (another source's split).
inline std::optional<KafkaPosition> decode_kafka_position(std::string_view bytes) {
  namespace d = kafka_position_detail;
  if (bytes.substr(0, d::kMagic.size()) != d::kMagic) return std::nullopt;
  bytes.remove_prefix(d::kMagic.size());
  KafkaPosition p;
  std::uint64_t partition = 0, next = 0, end = 0;
  if (!d::get_str(&bytes, &p.group) || !d::get_str(&bytes, &p.topic) ||
      !d::get_u64(&bytes, &partition) || !d::get_u64(&bytes, &next) ||
      !d::get_u64(&bytes, &end) || !bytes.empty()) {
    return std::nullopt;
  }
  p.partition = static_cast<std::int32_t>(static_cast<std::int64_t>(partition));
  p.next_offset = static_cast<std::int64_t>(next);
  p.end_offset = static_cast<std::int64_t>(end);
  return p;
}

}  // namespace meterstream::detail
