// The Kafka source's consumer: one librdkafka consumer per source, with a
// queue per partition so that each split reader polls its own partition on its
// own worker thread. Each reader adds its partition to the consumer's manual
// assignment at its first read and removes it when the partition ends.
#include "meterstream/connectors/kafka/kafka_source.hpp"

#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "fmt/format.h"

#include "connectors/kafka/kafka_position.hpp"
#include "connectors/kafka/rdkafka_util.hpp"
#include "meterstream/connectors/detail/split_position.hpp"
#include "meterstream/connectors/generator/meter_reading_codec.hpp"

namespace meterstream {

StatusOr<MeterReading> decode_kafka_meter_reading(const KafkaRecordView& record) {
  MeterReading r;
  if (!decode_meter_reading(record.value, &r)) {
    return absl::InvalidArgumentError(fmt::format("a MeterReading is {} bytes, got {}",
                                                  kMeterReadingSize, record.value.size()));
  }
  return r;
}

namespace detail {

namespace {

// The properties the source sets itself: overriding them would break its
// positions, end detection or commits.
const std::set<std::string>& reserved_properties() {
  static const std::set<std::string> names = {
      "bootstrap.servers", "metadata.broker.list", "group.id", "isolation.level",
      "enable.auto.commit", "enable.auto.offset.store", "enable.partition.eof",
      "auto.offset.reset"};
  return names;
}

std::string split_name(const std::string& topic, std::int32_t partition) {
  return fmt::format("{}-{}", topic, partition);
}

Status validate(const KafkaSourceOptions& o, const std::string& what) {
  if (o.brokers.empty()) {
    return absl::InvalidArgumentError(what + ": KafkaSourceOptions::brokers is empty");
  }
  if (o.topics.empty() == o.partitions.empty()) {
    return absl::InvalidArgumentError(
        what + ": set exactly one of KafkaSourceOptions::topics and ::partitions");
  }
  std::set<std::string> topics;
  for (const std::string& t : o.topics) {
    if (t.empty()) return absl::InvalidArgumentError(what + ": a topic name is empty");
    if (!topics.insert(t).second) {
      return absl::InvalidArgumentError(fmt::format("{}: topic '{}' is listed twice", what, t));
    }
  }
  std::set<std::pair<std::string, std::int32_t>> parts;
  for (const KafkaTopicPartition& tp : o.partitions) {
    if (tp.topic.empty()) return absl::InvalidArgumentError(what + ": a topic name is empty");
    if (tp.partition < 0) {
      return absl::InvalidArgumentError(
          fmt::format("{}: partition {} of topic '{}' is negative", what, tp.partition, tp.topic));
    }
    if (!parts.insert({tp.topic, tp.partition}).second) {
      return absl::InvalidArgumentError(
          fmt::format("{}: partition {} is listed twice", what, split_name(tp.topic, tp.partition)));
    }
  }
  if (o.start.kind() == KafkaStartOffset::Kind::kCommitted && o.group_id.empty()) {
    return absl::InvalidArgumentError(
        what + ": KafkaStartOffset::committed() needs KafkaSourceOptions::group_id");
  }
  if (o.connect_timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        fmt::format("{}: connect_timeout must be > 0, got {} ms", what, o.connect_timeout.count()));
  }
  for (const auto& [name, value] : o.properties) {
    if (reserved_properties().count(name) != 0) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: property '{}' is set by the source (use KafkaSourceOptions instead)", what, name));
    }
  }
  return Status();
}

int timeout_ms(const KafkaSourceOptions& o) {
  return static_cast<int>(std::min<std::int64_t>(o.connect_timeout.count(),
                                                 std::numeric_limits<int>::max()));
}

class Consumer;

// One partition: its queue (not forwarded to the consumer queue), the next
// offset and, when bounded, the end offset.
struct PartitionState {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t next = 0;
  std::int64_t end = -1;  // bounded: the end offset; -1 unbounded
  QueuePtr queue;
  // The offset reached when the split ended (for commits of ended splits).
  std::atomic<std::int64_t> final_next{-1};
};

class Reader final : public KafkaPartitionReader {
 public:
  Reader(std::shared_ptr<Consumer> consumer, PartitionState* p)
      : consumer_(std::move(consumer)), p_(p) {}

  StatusOr<Result> read(std::size_t max, Visit visit, void* context) override;
  std::string name() const override { return split_name(p_->topic, p_->partition); }
  std::string position() const override;
  Status seek(std::string_view position) override;

 private:
  Result end_split();
  Status message_error(const rd_kafka_message_t* m) const;

  std::shared_ptr<Consumer> consumer_;
  PartitionState* p_;
  bool ended_ = false;
  bool assigned_ = false;
  std::vector<rd_kafka_message_t*> batch_;
};

class Consumer final : public KafkaConsumerCore,
                       public std::enable_shared_from_this<Consumer> {
 public:
  Consumer(KafkaSourceOptions options, std::string what)
      : options_(std::move(options)), what_(std::move(what)) {}

  ~Consumer() override {
    parts_.clear();  // the queues go before the consumer
    if (commit_queue_) {
      // Lets the last commits (the final checkpoint's) reach the group.
      const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
      for (;;) {
        {
          std::lock_guard<std::mutex> lock(commit_mu_);
          if (pending_commits_ == 0) break;
        }
        if (std::chrono::steady_clock::now() >= deadline) break;
        drain_commits(100);
      }
      commit_queue_.reset();
    }
    if (rk_ != nullptr) rd_kafka_destroy_flags(rk_, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }

  Status open();

  std::vector<std::unique_ptr<KafkaPartitionReader>> take_readers() override {
    std::vector<std::unique_ptr<KafkaPartitionReader>> out;
    for (auto& p : parts_) out.push_back(std::make_unique<Reader>(shared_from_this(), p.get()));
    return out;
  }

  Status commit(const std::vector<CheckpointCommit::Split>& splits, bool wait) override;

  // Adds the partition to the assignment at its next offset: at its reader's
  // first read, after every seek() of a restore. Partitions that a restored
  // checkpoint says ended are never read, so never fetched.
  Status assign(const PartitionState& p) { return change_assignment(p, true); }
  // Removes an ended partition from the assignment: no more fetching.
  Status unassign(const PartitionState& p) { return change_assignment(p, false); }

  // Serves the consumer queue (errors that concern no single partition);
  // returns a fatal error, if any. Cheap when another thread is at it.
  Status serve_consumer_queue();

  const KafkaSourceOptions& options() const { return options_; }
  const std::string& what() const { return what_; }
  const std::string& group() const { return options_.group_id; }

 private:
  Status change_assignment(const PartitionState& p, bool add);
  Status resolve_partitions(const rd_kafka_metadata_t& md);
  Status resolve_offsets();
  StatusOr<PartitionListPtr> list_offsets(std::int64_t timestamp_or_logical);
  void drain_commits(int timeout);

  KafkaSourceOptions options_;
  std::string what_;
  rd_kafka_t* rk_ = nullptr;
  std::vector<std::unique_ptr<PartitionState>> parts_;
  std::mutex serve_mu_;
  QueuePtr commit_queue_;
  std::mutex commit_mu_;
  int pending_commits_ = 0;
  std::string commit_errors_;
  std::atomic<std::int64_t> commit_failures_{0};
};

Status Consumer::open() {
  MS_RETURN_IF_ERROR(validate(options_, what_));
  ConfPtr conf(rd_kafka_conf_new());
  // Without a group of the user's, an own one: librdkafka's assign() needs
  // one; it is never committed to.
  static std::atomic<int> instances{0};
  const std::string group =
      options_.group_id.empty()
          ? fmt::format("meterstream-source-{}-{}", ::getpid(), instances.fetch_add(1))
          : options_.group_id;
  const std::pair<const char*, std::string> own[] = {
      {"bootstrap.servers", options_.brokers},
      {"group.id", group},
      {"isolation.level", options_.read_committed ? "read_committed" : "read_uncommitted"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      // End detection in bounded mode: transaction markers occupy the last
      // offsets, so the end is where the fetch found nothing more.
      {"enable.partition.eof", "true"},
      // An offset outside the partition (deleted by retention) is an error,
      // never a silent jump.
      {"auto.offset.reset", "error"},
      {"allow.auto.create.topics", "false"},
  };
  for (const auto& [name, value] : own) {
    MS_RETURN_IF_ERROR(set_property(conf.get(), name, value, what_));
  }
  for (const auto& [name, value] : options_.properties) {
    MS_RETURN_IF_ERROR(set_property(conf.get(), name, value, what_));
  }
  char errstr[512] = {0};
  rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof errstr);
  if (rk_ == nullptr) {
    return absl::InvalidArgumentError(fmt::format("{}: librdkafka rejects the configuration: {}",
                                                  what_, errstr));
  }
  conf.release();  // owned by rk_

  const rd_kafka_metadata_t* md = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk_, 1, nullptr, &md, timeout_ms(options_));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        fmt::format("{}: the Kafka brokers '{}' did not answer within {} ms: {}", what_,
                    options_.brokers, options_.connect_timeout.count(), err_text(err)));
  }
  MetadataPtr owned(md);
  MS_RETURN_IF_ERROR(resolve_partitions(*md));
  MS_RETURN_IF_ERROR(resolve_offsets());
  // The partition queues stop forwarding to the consumer queue before the
  // assignment starts any fetch (librdkafka keeps an application-set
  // forwarding as it is).
  for (auto& p : parts_) {
    p->queue.reset(rd_kafka_queue_get_partition(rk_, p->topic.c_str(), p->partition));
    if (!p->queue) {
      return absl::InternalError(fmt::format("{}: no queue for partition {}", what_,
                                             split_name(p->topic, p->partition)));
    }
    rd_kafka_queue_forward(p->queue.get(), nullptr);
  }
  commit_queue_.reset(rd_kafka_queue_new(rk_));
  return Status();
}

Status Consumer::resolve_partitions(const rd_kafka_metadata_t& md) {
  auto find_topic = [&](const std::string& name) -> const rd_kafka_metadata_topic_t* {
    for (int i = 0; i < md.topic_cnt; ++i) {
      if (name == md.topics[i].topic) return &md.topics[i];
    }
    return nullptr;
  };
  auto check_topic = [&](const std::string& name) -> StatusOr<const rd_kafka_metadata_topic_t*> {
    const rd_kafka_metadata_topic_t* t = find_topic(name);
    if (t == nullptr || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      return absl::NotFoundError(fmt::format("{}: topic '{}' does not exist on '{}'", what_, name,
                                             options_.brokers));
    }
    if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(
          fmt::format("{}: topic '{}': {}", what_, name, err_text(t->err)));
    }
    return t;
  };
  auto add = [&](const std::string& topic, std::int32_t partition) {
    auto p = std::make_unique<PartitionState>();
    p->topic = topic;
    p->partition = partition;
    parts_.push_back(std::move(p));
  };
  if (!options_.topics.empty()) {
    for (const std::string& name : options_.topics) {
      MS_ASSIGN_OR_RETURN(const rd_kafka_metadata_topic_t* t, check_topic(name));
      std::vector<std::int32_t> ids;
      for (int i = 0; i < t->partition_cnt; ++i) ids.push_back(t->partitions[i].id);
      std::sort(ids.begin(), ids.end());
      for (std::int32_t id : ids) add(name, id);
    }
  } else {
    for (const KafkaTopicPartition& tp : options_.partitions) {
      MS_ASSIGN_OR_RETURN(const rd_kafka_metadata_topic_t* t, check_topic(tp.topic));
      bool found = false;
      for (int i = 0; i < t->partition_cnt; ++i) found |= t->partitions[i].id == tp.partition;
      if (!found) {
        return absl::NotFoundError(
            fmt::format("{}: partition {} does not exist (topic '{}' has {} partitions)", what_,
                        split_name(tp.topic, tp.partition), tp.topic, t->partition_cnt));
      }
      add(tp.topic, tp.partition);
    }
  }
  return Status();
}

// ListOffsets for every partition: a timestamp, or RD_KAFKA_OFFSET_BEGINNING
// / RD_KAFKA_OFFSET_END (under read_committed the end is the last stable
// offset).
StatusOr<PartitionListPtr> Consumer::list_offsets(std::int64_t timestamp_or_logical) {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(parts_.size())));
  for (const auto& p : parts_) {
    rd_kafka_topic_partition_list_add(list.get(), p->topic.c_str(), p->partition)->offset =
        timestamp_or_logical;
  }
  const rd_kafka_resp_err_t err =
      rd_kafka_offsets_for_times(rk_, list.get(), timeout_ms(options_));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(fmt::format("{}: cannot look up offsets on '{}' within {} ms: {}",
                                              what_, options_.brokers,
                                              options_.connect_timeout.count(), err_text(err)));
  }
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(fmt::format("{}: cannot look up the offsets of {}: {}", what_,
                                                split_name(tp.topic, tp.partition),
                                                err_text(tp.err)));
    }
  }
  return list;
}

Status Consumer::resolve_offsets() {
  const KafkaStartOffset& start = options_.start;
  const bool need_begin =
      start.kind() == KafkaStartOffset::Kind::kEarliest ||
      (start.kind() == KafkaStartOffset::Kind::kCommitted &&
       start.fallback() == KafkaStartOffset::Kind::kEarliest);
  PartitionListPtr begin, end;
  if (need_begin) {
    MS_ASSIGN_OR_RETURN(begin, list_offsets(RD_KAFKA_OFFSET_BEGINNING));
  }
  MS_ASSIGN_OR_RETURN(end, list_offsets(RD_KAFKA_OFFSET_END));
  PartitionListPtr by_time;
  if (start.kind() == KafkaStartOffset::Kind::kTimestamp) {
    MS_ASSIGN_OR_RETURN(by_time, list_offsets(start.timestamp_ms()));
  }
  PartitionListPtr committed;
  if (start.kind() == KafkaStartOffset::Kind::kCommitted) {
    committed.reset(rd_kafka_topic_partition_list_new(static_cast<int>(parts_.size())));
    for (const auto& p : parts_) {
      rd_kafka_topic_partition_list_add(committed.get(), p->topic.c_str(), p->partition);
    }
    const rd_kafka_resp_err_t err =
        rd_kafka_committed(rk_, committed.get(), timeout_ms(options_));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(
          fmt::format("{}: cannot read the offsets committed to group '{}' within {} ms: {}",
                      what_, options_.group_id, options_.connect_timeout.count(), err_text(err)));
    }
  }
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    PartitionState& p = *parts_[i];
    const int idx = static_cast<int>(i);
    const std::int64_t latest = end->elems[idx].offset;
    switch (start.kind()) {
      case KafkaStartOffset::Kind::kEarliest:
        p.next = begin->elems[idx].offset;
        break;
      case KafkaStartOffset::Kind::kLatest:
        p.next = latest;
        break;
      case KafkaStartOffset::Kind::kTimestamp:
        // No record at or after the timestamp: the end.
        p.next = by_time->elems[idx].offset >= 0 ? by_time->elems[idx].offset : latest;
        break;
      case KafkaStartOffset::Kind::kCommitted: {
        const rd_kafka_topic_partition_t& c = committed->elems[idx];
        if (c.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          return absl::UnavailableError(
              fmt::format("{}: cannot read the offset of {} committed to group '{}': {}", what_,
                          split_name(p.topic, p.partition), options_.group_id, err_text(c.err)));
        }
        if (c.offset >= 0) {
          p.next = c.offset;
        } else {
          p.next = start.fallback() == KafkaStartOffset::Kind::kLatest ? latest
                                                                      : begin->elems[idx].offset;
        }
        break;
      }
    }
    if (options_.bounded) p.end = latest;
  }
  return Status();
}

Status Consumer::change_assignment(const PartitionState& p, bool add) {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition)->offset = p.next;
  rd_kafka_error_t* error = add ? rd_kafka_incremental_assign(rk_, list.get())
                                : rd_kafka_incremental_unassign(rk_, list.get());
  if (error != nullptr) {
    const std::string text = rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
    return absl::InternalError(fmt::format("{}: cannot {} partition {}: {}", what_,
                                           add ? "assign" : "unassign",
                                           split_name(p.topic, p.partition), text));
  }
  return Status();
}

Status Consumer::serve_consumer_queue() {
  std::unique_lock<std::mutex> lock(serve_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return Status();
  while (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 0)) {
    const rd_kafka_resp_err_t err = m->err;
    const bool record = err == RD_KAFKA_RESP_ERR_NO_ERROR;
    std::string text = record ? "" : rd_kafka_message_errstr(m);
    rd_kafka_message_destroy(m);
    if (record) {
      // Every partition has its own queue, so no record may arrive here.
      return absl::InternalError(what_ + ": a record reached the consumer queue");
    }
    char fatal[512] = {0};
    if (err == RD_KAFKA_RESP_ERR__FATAL &&
        rd_kafka_fatal_error(rk_, fatal, sizeof fatal) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(fmt::format("{}: fatal consumer error: {}", what_, fatal));
    }
    // Other errors (a broker down, a transport error) are transient:
    // librdkafka retries, and the partitions wait.
  }
  return Status();
}

void Consumer::drain_commits(int timeout) {
  while (rd_kafka_event_t* raw = rd_kafka_queue_poll(commit_queue_.get(), timeout)) {
    EventPtr ev(raw);
    timeout = 0;
    if (rd_kafka_event_type(ev.get()) != RD_KAFKA_EVENT_OFFSET_COMMIT) continue;
    std::lock_guard<std::mutex> lock(commit_mu_);
    --pending_commits_;
    std::string errors;
    if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      errors = rd_kafka_event_error_string(ev.get());
    } else if (const rd_kafka_topic_partition_list_t* l =
                   rd_kafka_event_topic_partition_list(ev.get())) {
      for (int i = 0; i < l->cnt; ++i) {
        if (l->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
        errors += fmt::format("{}{}: {}", errors.empty() ? "" : "; ",
                              split_name(l->elems[i].topic, l->elems[i].partition),
                              err_text(l->elems[i].err));
      }
    }
    if (!errors.empty()) {
      commit_failures_.fetch_add(1);
      commit_errors_ += (commit_errors_.empty() ? "" : "; ") + errors;
    }
  }
}

Status Consumer::commit(const std::vector<CheckpointCommit::Split>& splits, bool wait) {
  drain_commits(0);
  std::string earlier;
  {
    std::lock_guard<std::mutex> lock(commit_mu_);
    earlier.swap(commit_errors_);
  }
  if (!options_.group_id.empty() && options_.commit_offsets) {
    PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(splits.size())));
    for (const CheckpointCommit::Split& s : splits) {
      if (s.split < 0 || static_cast<std::size_t>(s.split) >= parts_.size()) continue;
      const PartitionState& p = *parts_[static_cast<std::size_t>(s.split)];
      std::int64_t next = -1;
      if (s.ended || s.position.empty()) {
        next = p.final_next.load();
      } else {
        std::optional<KafkaPosition> pos = decode_kafka_position(s.position);
        if (pos) next = pos->next_offset;
      }
      if (next < 0) continue;
      rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition)->offset = next;
    }
    if (list->cnt > 0) {
      const rd_kafka_resp_err_t err =
          rd_kafka_commit_queue(rk_, list.get(), commit_queue_.get(), nullptr, nullptr);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        commit_failures_.fetch_add(1);
        earlier += fmt::format("{}cannot commit: {}", earlier.empty() ? "" : "; ", err_text(err));
      } else {
        std::lock_guard<std::mutex> lock(commit_mu_);
        ++pending_commits_;
      }
    }
  }
  if (wait) {
    // The last checkpoint of a bounded job: its offsets are in the group
    // when the job's run() returns.
    const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(commit_mu_);
        if (pending_commits_ == 0) break;
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      drain_commits(50);
    }
    std::lock_guard<std::mutex> lock(commit_mu_);
    if (!commit_errors_.empty()) {
      earlier += (earlier.empty() ? "" : "; ") + commit_errors_;
      commit_errors_.clear();
    }
  }
  if (!earlier.empty()) {
    return absl::UnavailableError(fmt::format(
        "{}: committing offsets to group '{}' failed (offsets in the group only show lag; the "
        "checkpoint holds the positions): {}",
        what_, options_.group_id, earlier));
  }
  return Status();
}

KafkaPartitionReader::Result Reader::end_split() {
  ended_ = true;
  p_->final_next.store(p_->next);
  // Best effort: an ended partition that stays assigned only costs fetches.
  if (assigned_) (void)consumer_->unassign(*p_);
  return Result::kEnd;
}

std::string Reader::position() const {
  KafkaPosition pos;
  pos.group = consumer_->group();
  pos.topic = p_->topic;
  pos.partition = p_->partition;
  pos.next_offset = p_->next;
  pos.end_offset = p_->end;
  return encode_kafka_position(pos);
}

Status Reader::seek(std::string_view position) {
  std::optional<KafkaPosition> pos = decode_kafka_position(position);
  if (!pos) return bad_position(name(), position, "not a Kafka position");
  if (pos->topic != p_->topic || pos->partition != p_->partition) {
    return bad_position(name(), position,
                        fmt::format("it is a position of partition {}",
                                    split_name(pos->topic, pos->partition)));
  }
  if (pos->next_offset < 0) return bad_position(name(), position, "negative offset");
  p_->next = pos->next_offset;
  // Bounded: the checkpoint's end offsets hold (Flink keeps the stopping
  // offsets in the split state), so a restored job reads what the first one
  // would have.
  if (consumer_->options().bounded && consumer_->options().bounded_end_at_each_start) {
    // The end found at this start (open()) holds; a checkpoint of an
    // unbounded run has none. Never before the restored position.
    p_->end = std::max(p_->end, p_->next);
  } else if (consumer_->options().bounded) {
    if (pos->end_offset < 0) {
      return bad_position(name(), position,
                          "it has no end offset, and the source is bounded (was the job "
                          "checkpointed unbounded?)");
    }
    p_->end = pos->end_offset;
  }
  return Status();
}

Status Reader::message_error(const rd_kafka_message_t* m) const {
  const std::string where =
      fmt::format("{}, partition {} at offset {}", consumer_->what(), name(), m->offset);
  switch (m->err) {
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
      return absl::DataLossError(fmt::format(
          "{}: the offset is no longer (or not yet) in the partition, whose records were "
          "deleted or truncated: {}",
          where, rd_kafka_message_errstr(m)));
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      return absl::NotFoundError(fmt::format("{}: {}", where, rd_kafka_message_errstr(m)));
    default:
      return absl::UnavailableError(
          fmt::format("{}: {} ({})", where, rd_kafka_message_errstr(m), rd_kafka_err2name(m->err)));
  }
}

StatusOr<KafkaPartitionReader::Result> Reader::read(std::size_t max, Visit visit, void* context) {
  if (ended_) return Result::kEnd;
  if (p_->end >= 0 && p_->next >= p_->end) return end_split();
  if (!assigned_) {
    MS_RETURN_IF_ERROR(consumer_->assign(*p_));
    assigned_ = true;
  }
  MS_RETURN_IF_ERROR(consumer_->serve_consumer_queue());
  batch_.resize(std::max<std::size_t>(1, std::min<std::size_t>(max, 4096)));
  const ssize_t n = rd_kafka_consume_batch_queue(p_->queue.get(), 0, batch_.data(), batch_.size());
  if (n < 0) {
    return absl::UnavailableError(fmt::format("{}, partition {}: {}", consumer_->what(), name(),
                                              err_text(rd_kafka_last_error())));
  }
  Status error;
  std::size_t records = 0;
  for (ssize_t i = 0; i < n; ++i) {
    rd_kafka_message_t* m = batch_[static_cast<std::size_t>(i)];
    if (!error.ok() || ended_) {
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // The fetch reached the end: offsets before it that delivered nothing
      // were transaction markers or aborted records.
      p_->next = std::max(p_->next, m->offset);
      if (p_->end >= 0 && p_->next >= p_->end) (void)end_split();
    } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = message_error(m);
    } else if (m->offset >= p_->next) {
      if (p_->end >= 0 && m->offset >= p_->end) {
        (void)end_split();  // past the bounded end: not part of the input
      } else {
        KafkaRecordView r;
        r.topic = p_->topic;
        r.partition = p_->partition;
        r.offset = m->offset;
        if (m->key != nullptr) r.key = std::string_view(static_cast<const char*>(m->key), m->key_len);
        if (m->payload != nullptr) {
          r.value = std::string_view(static_cast<const char*>(m->payload), m->len);
        }
        rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        const std::int64_t ts = rd_kafka_message_timestamp(m, &type);
        if (type != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0) r.timestamp_ms = ts;
        visit(context, r);
        p_->next = m->offset + 1;
        ++records;
        if (p_->end >= 0 && p_->next >= p_->end) (void)end_split();
      }
    }
    rd_kafka_message_destroy(m);
  }
  MS_RETURN_IF_ERROR(error);
  if (ended_) return Result::kEnd;
  return n > 0 ? Result::kMore : Result::kNoDataNow;
}

}  // namespace

StatusOr<std::shared_ptr<KafkaConsumerCore>> KafkaConsumerCore::open(
    const KafkaSourceOptions& options, const std::string& source) {
  auto consumer = std::make_shared<Consumer>(options, "kafka source '" + source + "'");
  MS_RETURN_IF_ERROR(consumer->open());
  return std::shared_ptr<KafkaConsumerCore>(std::move(consumer));
}

std::string describe_undecodable(const KafkaRecordView& record, std::string_view reason) {
  return fmt::format("kafka {}/{}@{}: {}", record.topic, record.partition, record.offset, reason);
}

std::string kafka_source_name(const KafkaSourceOptions& options) {
  std::string out = "kafka:";
  if (!options.topics.empty()) {
    for (std::size_t i = 0; i < options.topics.size(); ++i) {
      out += (i > 0 ? "," : "") + options.topics[i];
    }
  } else {
    for (std::size_t i = 0; i < options.partitions.size(); ++i) {
      out += (i > 0 ? "," : "") + split_name(options.partitions[i].topic,
                                             options.partitions[i].partition);
    }
  }
  return out;
}

}  // namespace detail
}  // namespace meterstream
