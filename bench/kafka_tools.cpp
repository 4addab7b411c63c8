#include "kafka_tools.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "output_check.hpp"
#include <librdkafka/rdkafka.h>

#include "meterstream/connectors/generator/meter_reading_codec.hpp"

namespace meterstream::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Handle = std::unique_ptr<rd_kafka_t, HandleDeleter>;

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList =
    std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const {
    rd_kafka_metadata_destroy(md);
  }
};
using Metadata = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;

int timeout_ms(std::chrono::milliseconds t) {
  return static_cast<int>(std::clamp<std::int64_t>(t.count(), 1, 1 << 30));
}

// Fills `conf` with `props`; kInvalidArgument naming a property librdkafka
// rejects. Takes ownership of `conf` on error only.
Status set_props(rd_kafka_conf_t* conf,
                 const std::map<std::string, std::string>& props) {
  char err[512];
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(
          absl::StrCat("librdkafka property ", k, "=", v, ": ", err));
    }
  }
  return Status();
}

// Creates a handle from `conf` (consumed either way).
StatusOr<Handle> make_handle(rd_kafka_type_t type, rd_kafka_conf_t* conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("rd_kafka_new: ", err));
  }
  return Handle(rk);
}

// The cluster's metadata for every topic; kUnavailable when the brokers do
// not answer within `timeout`.
StatusOr<Metadata> metadata(rd_kafka_t* rk, const std::string& brokers,
                            std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* md = nullptr;
  const rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk, 1, nullptr, &md, timeout_ms(timeout));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("Kafka at ", brokers, " did not answer within ",
                     timeout.count(), " ms: ", rd_kafka_err2str(err)));
  }
  return Metadata(md);
}

// The topic's partition count and whether all partitions have a leader;
// count -1 when the topic does not exist.
struct TopicState {
  int partitions = -1;
  bool ready = false;
};

TopicState topic_state(const rd_kafka_metadata_t* md,
                       const std::string& topic) {
  TopicState s;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    if (topic != t.topic) continue;
    if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) return s;
    s.partitions = t.partition_cnt;
    s.ready = t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0;
    for (int p = 0; p < t.partition_cnt; ++p) {
      if (t.partitions[p].leader < 0) s.ready = false;
    }
  }
  return s;
}

// Creates `topic` with `partitions` partitions (replication factor: the
// broker's default) unless it exists; kFailedPrecondition when it exists
// with another count. Waits until every partition has a leader.
Status ensure_topic(rd_kafka_t* rk, const ProduceOptions& o) {
  MS_ASSIGN_OR_RETURN(Metadata md, metadata(rk, o.brokers, o.connect_timeout));
  TopicState s = topic_state(md.get(), o.topic);
  if (s.partitions < 0) {
    char err[512];
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(
        o.topic.c_str(), o.partitions, -1, err, sizeof err);
    if (nt == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("topic ", o.topic, ": ", err));
    }
    rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_event_t* ev =
        rd_kafka_queue_poll(q, timeout_ms(o.connect_timeout));
    std::string error;
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (ev == nullptr) {
      error = "no answer in time";
    } else if ((code = rd_kafka_event_error(ev)) !=
               RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = rd_kafka_event_error_string(ev);
    } else {
      size_t n = 0;
      const rd_kafka_topic_result_t** results =
          rd_kafka_CreateTopics_result_topics(
              rd_kafka_event_CreateTopics_result(ev), &n);
      if (n == 1 && (code = rd_kafka_topic_result_error(results[0])) !=
                        RD_KAFKA_RESP_ERR_NO_ERROR) {
        error = rd_kafka_topic_result_error_string(results[0]);
      }
    }
    if (ev != nullptr) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    // Created meanwhile by someone else: its count is checked below.
    if (!error.empty() && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      return absl::UnavailableError(absl::StrCat(
          "cannot create topic ", o.topic, " on ", o.brokers, ": ", error));
    }
  }
  const auto deadline = Clock::now() + o.connect_timeout;
  for (;;) {
    MS_ASSIGN_OR_RETURN(md, metadata(rk, o.brokers, o.connect_timeout));
    s = topic_state(md.get(), o.topic);
    if (s.partitions >= 0 && s.partitions != o.partitions) {
      return absl::FailedPreconditionError(
          absl::StrCat("topic ", o.topic, " exists with ", s.partitions,
                       " partitions, not ", o.partitions));
    }
    if (s.ready) return Status();
    if (Clock::now() > deadline) {
      return absl::UnavailableError(
          absl::StrCat("topic ", o.topic, " has no leader for all ",
                       o.partitions, " partitions in time"));
    }
    rd_kafka_poll(rk, 100);
  }
}

// Delivery reports of produce_workload().
struct Deliveries {
  std::atomic<std::uint64_t> failed{0};
  std::string first_error;  // written by the first failure only
};

}  // namespace

std::int32_t kafka_default_partition(std::string_view key,
                                     std::int32_t partitions) {
  // org.apache.kafka.common.utils.Utils.murmur2, in 32-bit unsigned
  // arithmetic (Java's int wraps the same way; >>> is a logical shift).
  constexpr std::uint32_t m = 0x5bd1e995;
  constexpr int r = 24;
  const auto* data = reinterpret_cast<const unsigned char*>(key.data());
  const std::size_t length = key.size();
  std::uint32_t h = 0x9747b28cU ^ static_cast<std::uint32_t>(length);
  for (std::size_t i = 0; i + 4 <= length; i += 4) {
    std::uint32_t k = static_cast<std::uint32_t>(data[i]) |
                      static_cast<std::uint32_t>(data[i + 1]) << 8 |
                      static_cast<std::uint32_t>(data[i + 2]) << 16 |
                      static_cast<std::uint32_t>(data[i + 3]) << 24;
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
  }
  const std::size_t tail = length & ~std::size_t{3};
  switch (length % 4) {
    case 3:
      h ^= static_cast<std::uint32_t>(data[tail + 2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<std::uint32_t>(data[tail + 1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= data[tail];
      h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<std::int32_t>((h & 0x7fffffffU) %
                                   static_cast<std::uint32_t>(partitions));
}

StatusOr<ProduceResult> produce_workload(const ProduceOptions& o) {
  if (o.brokers.empty())
    return absl::InvalidArgumentError("brokers must not be empty");
  if (o.topic.empty())
    return absl::InvalidArgumentError("topic must not be empty");
  if (o.partitions < 1)
    return absl::InvalidArgumentError("partitions must be >= 1");
  MS_RETURN_IF_ERROR(o.workload.validate());

  Deliveries deliveries;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  MS_RETURN_IF_ERROR(
      set_props(conf, {{"bootstrap.servers", o.brokers},
                       {"enable.idempotence", "true"},
                       {"acks", "all"},
                       // Kafka's default partitioner for keyed records.
                       {"partitioner", "murmur2_random"},
                       {"linger.ms", "20"},
                       {"batch.num.messages", "100000"},
                       {"queue.buffering.max.messages", "1000000"},
                       {"queue.buffering.max.kbytes", "1048576"},
                       {"allow.auto.create.topics", "false"}}));
  rd_kafka_conf_set_opaque(conf, &deliveries);
  rd_kafka_conf_set_dr_msg_cb(
      conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
        auto* d = static_cast<Deliveries*>(opaque);
        if (d->failed.fetch_add(1) == 0) {
          d->first_error = absl::StrCat(rd_kafka_err2str(m->err),
                                        " (partition ", m->partition, ")");
        }
      });
  MS_ASSIGN_OR_RETURN(Handle rk, make_handle(RD_KAFKA_PRODUCER, conf));
  MS_RETURN_IF_ERROR(ensure_topic(rk.get(), o));

  SmartMeterGenerator gen(o.workload);
  MeterReading r;
  char value[kMeterReadingSize];
  const auto start = Clock::now();
  std::uint64_t written = 0;
  while (gen.next(&r)) {
    if (gen.emitted() <= o.skip) continue;
    ++written;
    encode_meter_reading(r, value);
    const std::string key = encode_meter_key(r.meter_id);
    for (;;) {
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          rk.get(), RD_KAFKA_V_TOPIC(o.topic.c_str()),
          RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(value, sizeof value), RD_KAFKA_V_TIMESTAMP(r.ts_ms),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        return absl::UnavailableError(
            absl::StrCat("producing event ", gen.emitted(), " to ", o.topic,
                         ": ", rd_kafka_err2str(err)));
      }
      rd_kafka_poll(rk.get(), 10);
    }
    rd_kafka_poll(rk.get(), 0);
  }
  // Every message ends in a delivery report (success or failure) within
  // message.timeout.ms; flush returns when all have.
  rd_kafka_resp_err_t err;
  while ((err = rd_kafka_flush(rk.get(), 10000)) ==
         RD_KAFKA_RESP_ERR__TIMED_OUT) {
  }
  const auto stop = Clock::now();
  char reason[512];
  const rd_kafka_resp_err_t fatal =
      rd_kafka_fatal_error(rk.get(), reason, sizeof reason);
  if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::DataLossError(
        absl::StrCat("the producer to ", o.topic, " failed: ", reason));
  }
  if (deliveries.failed > 0) {
    return absl::DataLossError(absl::StrCat(
        deliveries.failed.load(), " of ", gen.emitted(), " events to ", o.topic,
        " were not acknowledged; first error: ", deliveries.first_error));
  }
  ProduceResult result;
  result.events = written;
  result.proc_s = std::chrono::duration<double>(stop - start).count();
  return result;
}

nlohmann::ordered_json produce_json(const ProduceOptions& o,
                                    const ProduceResult& result) {
  nlohmann::ordered_json j;
  j["events"] = result.events;
  j["topic"] = o.topic;
  j["partitions"] = o.partitions;
  j["proc_s"] = result.proc_s;
  j["events_per_s"] = result.proc_s > 0
                          ? static_cast<double>(result.events) / result.proc_s
                          : 0.0;
  return j;
}

StatusOr<KafkaOutputCheck> verify_kafka_output(const VerifyOptions& o) {
  if (o.brokers.empty())
    return absl::InvalidArgumentError("brokers must not be empty");
  if (o.topic.empty())
    return absl::InvalidArgumentError("topic must not be empty");

  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // group.id: librdkafka wants one for a consumer; nothing is committed.
  MS_RETURN_IF_ERROR(set_props(conf, {{"bootstrap.servers", o.brokers},
                                      {"group.id", "meterstream-bench-verify"},
                                      {"enable.auto.commit", "false"},
                                      {"enable.auto.offset.store", "false"},
                                      {"enable.partition.eof", "true"},
                                      {"isolation.level", "read_committed"},
                                      {"auto.offset.reset", "earliest"}}));
  MS_ASSIGN_OR_RETURN(Handle rk, make_handle(RD_KAFKA_CONSUMER, conf));
  // The high watermarks are asked of a read_uncommitted handle: under
  // read_committed the answer would be the last stable offset.
  rd_kafka_conf_t* probe_conf = rd_kafka_conf_new();
  MS_RETURN_IF_ERROR(
      set_props(probe_conf, {{"bootstrap.servers", o.brokers},
                             {"isolation.level", "read_uncommitted"}}));
  MS_ASSIGN_OR_RETURN(Handle probe, make_handle(RD_KAFKA_CONSUMER, probe_conf));

  MS_ASSIGN_OR_RETURN(Metadata md,
                      metadata(probe.get(), o.brokers, o.connect_timeout));
  const TopicState s = topic_state(md.get(), o.topic);
  if (s.partitions < 0) {
    return absl::NotFoundError(
        absl::StrCat("topic ", o.topic, " does not exist on ", o.brokers));
  }
  KafkaOutputCheck check;
  check.partitions = s.partitions;

  std::vector<std::int64_t> end(static_cast<std::size_t>(s.partitions), 0);
  std::vector<bool> done(end.size(), false);
  PartitionList assignment(rd_kafka_topic_partition_list_new(s.partitions));
  for (std::int32_t p = 0; p < s.partitions; ++p) {
    int64_t low = 0, high = 0;
    // Retried until connect_timeout: a broker that has just restarted
    // answers "not leader" for a moment.
    rd_kafka_resp_err_t err;
    const auto query_deadline = Clock::now() + o.connect_timeout;
    while ((err = rd_kafka_query_watermark_offsets(
                probe.get(), o.topic.c_str(), p, &low, &high,
                timeout_ms(o.connect_timeout))) != RD_KAFKA_RESP_ERR_NO_ERROR &&
           Clock::now() < query_deadline) {
      rd_kafka_poll(probe.get(), 200);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(absl::StrCat(
          "end offset of ", o.topic, "[", p, "]: ", rd_kafka_err2str(err)));
    }
    end[p] = high;
    done[p] = high <= low;
    rd_kafka_topic_partition_list_add(assignment.get(), o.topic.c_str(), p)
        ->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  probe.reset();
  if (const rd_kafka_resp_err_t err =
          rd_kafka_assign(rk.get(), assignment.get())) {
    return absl::InternalError(absl::StrCat("assign: ", rd_kafka_err2str(err)));
  }

  using WindowKey = std::pair<std::uint64_t, std::int64_t>;
  std::vector<WindowKey> keys;
  Q1OutputWindow w;
  std::vector<std::int64_t> reached(end.size(), 0);
  const auto deadline = Clock::now() + o.timeout;
  auto remaining = [&] { return std::count(done.begin(), done.end(), false); };
  while (remaining() > 0) {
    if (Clock::now() > deadline) {
      std::string state;
      for (std::size_t p = 0; p < end.size(); ++p) {
        if (!done[p])
          absl::StrAppend(&state, " [", p, "] at ", reached[p], " of ", end[p]);
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "reading ", o.topic,
          " under read_committed did not reach the end "
          "offsets found at start within ",
          o.timeout.count(),
          " ms (an open transaction holds the last stable offset?):", state));
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (m == nullptr) continue;
    const std::size_t p = static_cast<std::size_t>(m->partition);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (p < end.size()) {
        reached[p] = std::max(reached[p], m->offset);
        if (m->offset >= end[p]) done[p] = true;
      }
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const std::string error = rd_kafka_message_errstr(m);
      const bool fatal = m->err == RD_KAFKA_RESP_ERR__FATAL ||
                         m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                         m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
      rd_kafka_message_destroy(m);
      if (fatal)
        return absl::UnavailableError(
            absl::StrCat("reading ", o.topic, ": ", error));
      continue;  // transient (broker down for a moment): librdkafka retries
    }
    if (p < end.size() && m->offset < end[p]) {
      ++check.records;
      std::string_view line;
      if (m->payload != nullptr)
        line = std::string_view(static_cast<const char*>(m->payload), m->len);
      if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
      if (m->payload != nullptr && parse_q1_output_line(line, &w)) {
        check.totals.add_window(w.meter_id, w.start, w.count, w.sum_wh, w.min_v,
                                w.max_v);
        keys.emplace_back(w.meter_id, w.start);
      } else {
        ++check.undecodable;
      }
    }
    if (p < end.size()) {
      reached[p] = std::max(reached[p], m->offset + 1);
      if (m->offset + 1 >= end[p]) done[p] = true;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  std::sort(keys.begin(), keys.end());
  for (std::size_t i = 1; i < keys.size(); ++i) {
    if (keys[i] == keys[i - 1]) ++check.repeated;
  }
  return check;
}

nlohmann::ordered_json kafka_verify_json(const KafkaOutputCheck& check) {
  nlohmann::ordered_json j;
  j["windows"] = check.totals.windows;
  j["total_count"] = check.totals.total_count;
  j["sum_wh"] = check.totals.sum_wh;
  j["digest"] = check.totals.digest;
  j["repeated"] = check.repeated;
  j["undecodable"] = check.undecodable;
  j["records"] = check.records;
  j["partitions"] = check.partitions;
  return j;
}

}  // namespace meterstream::bench
