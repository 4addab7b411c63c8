// The Kafka sink's type-independent part: producers, transactions, lease
// (include/meterstream/connectors/kafka/kafka_sink.hpp; docs/kafka.md, "Sink").
#include "meterstream/connectors/kafka/kafka_sink.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "connectors/kafka/kafka_position.hpp"
#include "core/failpoint.hpp"
#include "fmt/format.h"
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include "meterstream/metrics/metrics.hpp"

namespace meterstream::detail {

namespace {

using Clock = std::chrono::steady_clock;

struct ErrorDeleter {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};
using ErrorPtr = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using ListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

bool valid_id_chars(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

// Per writer: messages handed to librdkafka and not yet acknowledged.
struct InFlight {
  std::atomic<std::int64_t> n{0};
};

class KafkaSinkImpl;

// One librdkafka producer (a slot of the pool, or the only one).
struct Producer {
  KafkaSinkImpl* sink = nullptr;
  int slot = 0;
  std::string transactional_id;
  HandlePtr rk;
  rd_kafka_topic_t* topic = nullptr;
  bool in_transaction = false;
  bool inited = false;
  // The open transaction's messages: handed to librdkafka, acknowledged by
  // the broker, failed (delivery reports). Reset when it begins; checked
  // before it commits (commit_transaction()).
  std::atomic<std::int64_t> txn_sent{0};
  std::atomic<std::int64_t> txn_acked{0};
  std::atomic<std::int64_t> txn_failed{0};
  ~Producer() {
    if (topic != nullptr) rd_kafka_topic_destroy(topic);
  }
};

class KafkaSinkImpl final : public KafkaSinkCore {
 public:
  explicit KafkaSinkImpl(KafkaSinkOptions options)
      : options_(std::move(options)) {
    if (options_.commit_group.empty())
      options_.commit_group = options_.transactional_id_prefix;
  }
  ~KafkaSinkImpl() override { close(); }

  std::string name() const override { return "kafka:" + options_.topic; }

  bool commit_point() const override {
    return options_.delivery == KafkaDelivery::kExactlyOnce;
  }

  Status open(const SinkContext& context) override {
    close();
    closed_ = false;
    {
      // A job restarted after a failure opens the sink again: the error of
      // the failed run is not this run's.
      std::lock_guard<std::mutex> lock(error_mu_);
      error_ = Status();
    }
    MS_RETURN_IF_ERROR(validate(context));
    if (context.metrics != nullptr) {
      committed_counter_ =
          context.metrics->counter("kafka_sink_transactions_committed");
      aborted_counter_ =
          context.metrics->counter("kafka_sink_transactions_aborted");
      errors_counter_ = context.metrics->counter("kafka_sink_produce_errors");
    }
    const int slots = exactly_once() ? 2 : 1;
    for (int s = 0; s < slots; ++s) {
      auto p = std::make_unique<Producer>();
      p->sink = this;
      p->slot = s;
      if (exactly_once()) {
        p->transactional_id =
            fmt::format("{}-0-{}", options_.transactional_id_prefix, s);
      }
      MS_RETURN_IF_ERROR(make_producer(*p));
      producers_.push_back(std::move(p));
    }
    MS_RETURN_IF_ERROR(check_topic(*producers_[0]));
    stop_poller_ = false;
    poller_ = std::thread([this] { poll_loop(); });
    started_ = false;
    commits_ = 0;
    if (!exactly_once()) started_ = true;
    return Status();
  }

  StatusOr<std::int64_t> committed_checkpoint() override {
    if (!exactly_once()) return std::int64_t{0};
    MS_RETURN_IF_ERROR(start_transactions());
    return read_marker();
  }

  Status recover(std::int64_t /*restored_checkpoint*/,
                 const std::vector<std::string>& /*keep*/) override {
    if (!exactly_once()) return Status();
    MS_RETURN_IF_ERROR(start_transactions());
    // Both slots begin: begin_transaction() is local until the first message
    // or offset, so an unused slot costs the broker nothing.
    for (auto& p : producers_) MS_RETURN_IF_ERROR(begin(*p));
    commits_ = 0;
    return Status();
  }

  Status commit(const CheckpointCommit& checkpoint,
                const std::vector<std::string>& /*prepared*/) override {
    if (!exactly_once()) return Status();
    if (producers_.empty() || !started_) {
      return absl::FailedPreconditionError(
          fmt::format("Kafka sink '{}': commit of checkpoint {} before the "
                      "sink was recovered",
                      options_.topic, checkpoint.id));
    }
    // The k-th checkpoint of the run holds what the writers produced after
    // their k-th barrier... before their (k+1)-th: slot k % 2 (writers
    // count barriers the same way).
    Producer& p = *producers_[static_cast<std::size_t>(commits_ % 2)];
    Status s = commit_transaction(p, checkpoint);
    if (!s.ok()) return s;
    ++commits_;
    if (committed_counter_ != nullptr) committed_counter_->add();
    if (!checkpoint.final) MS_RETURN_IF_ERROR(begin(p));
    return Status();
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    stop_poller_ = true;
    if (poller_.joinable()) poller_.join();
    for (auto& p : producers_) {
      if (p->rk && !exactly_once()) {
        // none / at_least_once: deliver what is queued (bounded).
        rd_kafka_flush(p->rk.get(),
                       static_cast<int>(options_.connect_timeout.count()));
      }
    }
    producers_.clear();
    lease_poll_.store(nullptr);
    if (lease_) {
      rd_kafka_consumer_close(lease_.get());
      lease_.reset();
    }
    started_ = false;
  }

  StatusOr<std::unique_ptr<KafkaSinkWriterCore>> create_writer(
      int worker) override;

  // ---- used by writers and callbacks ---------------------------------------

  bool exactly_once() const {
    return options_.delivery == KafkaDelivery::kExactlyOnce;
  }
  const KafkaSinkOptions& options() const { return options_; }
  Producer& producer(int slot) {
    return *producers_[static_cast<std::size_t>(slot)];
  }
  int partitions() const { return partitions_; }

  void record_error(Status s) {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (errors_counter_ != nullptr) errors_counter_->add();
    if (error_.ok()) error_ = std::move(s);
  }
  Status error() {
    std::lock_guard<std::mutex> lock(error_mu_);
    return error_;
  }

  static void on_delivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m,
                          void* opaque) {
    auto* p = static_cast<Producer*>(opaque);
    auto* inflight = static_cast<InFlight*>(m->_private);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      p->txn_acked.fetch_add(1, std::memory_order_acq_rel);
    } else {
      p->txn_failed.fetch_add(1, std::memory_order_acq_rel);
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
        p->sink->options_.delivery != KafkaDelivery::kNone) {
      p->sink->record_error(delivery_error(p->sink->options_.topic,
                                           m->partition, m->len, m->err));
    } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::lock_guard<std::mutex> lock(p->sink->error_mu_);
      if (p->sink->errors_counter_ != nullptr) p->sink->errors_counter_->add();
    }
    if (inflight != nullptr)
      inflight->n.fetch_sub(1, std::memory_order_acq_rel);
  }

  static void on_error(rd_kafka_t* rk, int err, const char* reason,
                       void* opaque) {
    auto* p = static_cast<Producer*>(opaque);
    if (err != RD_KAFKA_RESP_ERR__FATAL)
      return;  // librdkafka retries the others
    char buf[512];
    const rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    p->sink->record_error(absl::InternalError(
        fmt::format("Kafka sink topic '{}': fatal producer error ({}): {}",
                    p->sink->options_.topic, rd_kafka_err2name(orig),
                    buf[0] != '\0' ? buf : reason)));
  }

  static Status delivery_error(const std::string& topic, std::int32_t partition,
                               std::size_t len, rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
      return absl::InvalidArgumentError(
          fmt::format("Kafka sink topic '{}': a message of {} bytes is larger "
                      "than the limit (the producer's "
                      "message.max.bytes, or the topic's max.message.bytes): "
                      "raise it and restart the job",
                      topic, len));
    }
    return absl::UnavailableError(fmt::format(
        "Kafka sink topic '{}': delivery to partition {} failed ({}): {}",
        topic, partition, rd_kafka_err2name(err), rd_kafka_err2str(err)));
  }

 private:
  Status validate(const SinkContext& context) {
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(
          fmt::format("Kafka sink '{}': {}", options_.topic, what));
    };
    if (options_.brokers.empty())
      return bad("KafkaSinkOptions.brokers is empty");
    if (options_.topic.empty()) {
      return absl::InvalidArgumentError(
          "Kafka sink: KafkaSinkOptions.topic is empty");
    }
    if (options_.connect_timeout.count() <= 0) {
      return bad("KafkaSinkOptions.connect_timeout must be > 0");
    }
    if (!exactly_once()) return Status();
    const std::string& prefix = options_.transactional_id_prefix;
    if (prefix.empty()) {
      return bad(
          "delivery exactly_once needs "
          "KafkaSinkOptions.transactional_id_prefix (unique "
          "per job: two jobs with one prefix fence each other)");
    }
    if (prefix.size() > 200 || !valid_id_chars(prefix)) {
      return bad(fmt::format(
          "transactional_id_prefix '{}' must be 1 to 200 characters among "
          "[A-Za-z0-9._-]",
          prefix));
    }
    if (!valid_id_chars(options_.commit_group)) {
      return bad(fmt::format("commit_group '{}' must use only [A-Za-z0-9._-]",
                             options_.commit_group));
    }
    const auto interval = context.checkpoint_interval;
    if (interval.count() <= 0) {
      return bad(
          "delivery exactly_once needs checkpointing "
          "(JobOptions.checkpoint.interval > 0): "
          "its transactions commit with checkpoints");
    }
    const auto needed = interval + std::max<std::chrono::milliseconds>(
                                       interval, std::chrono::seconds(5));
    if (options_.transaction_timeout < needed) {
      return bad(
          fmt::format("transaction_timeout {} ms is too short for the "
                      "checkpoint interval {} ms: a "
                      "transaction stays open for an interval plus its "
                      "checkpoint, so it must be at least "
                      "interval + max(interval, 5 s) = {} ms",
                      options_.transaction_timeout.count(), interval.count(),
                      needed.count()));
    }
    if (options_.lease && options_.lease_session_timeout.count() <= 0) {
      return bad("lease_session_timeout must be > 0");
    }
    return Status();
  }

  Status set(rd_kafka_conf_t* conf, const std::string& key,
             const std::string& value) {
    char errstr[512];
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(
          fmt::format("Kafka sink '{}': property '{}' = '{}': {}",
                      options_.topic, key, value, errstr));
    }
    return Status();
  }

  Status make_producer(Producer& p) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    struct ConfGuard {
      rd_kafka_conf_t* c;
      ~ConfGuard() {
        if (c != nullptr) rd_kafka_conf_destroy(c);
      }
    } guard{conf};
    MS_RETURN_IF_ERROR(set(conf, "bootstrap.servers", options_.brokers));
    MS_RETURN_IF_ERROR(
        set(conf, "client.id", "meterstream-sink-" + options_.topic));
    if (exactly_once()) {
      MS_RETURN_IF_ERROR(set(conf, "transactional.id", p.transactional_id));
      MS_RETURN_IF_ERROR(
          set(conf, "transaction.timeout.ms",
              std::to_string(options_.transaction_timeout.count())));
    }
    // Tolerate a broker restart of a few minutes, as long as a transaction
    // may stay open (librdkafka caps it by transaction.timeout.ms anyway).
    for (const auto& [k, v] : options_.properties) {
      if (exactly_once() &&
          (k == "transactional.id" || k == "enable.idempotence")) {
        return absl::InvalidArgumentError(
            fmt::format("Kafka sink '{}': property '{}' is set by the sink "
                        "with delivery exactly_once",
                        options_.topic, k));
      }
      MS_RETURN_IF_ERROR(set(conf, k, v));
    }
    rd_kafka_conf_set_dr_msg_cb(conf, &KafkaSinkImpl::on_delivery);
    rd_kafka_conf_set_error_cb(conf, &KafkaSinkImpl::on_error);
    rd_kafka_conf_set_opaque(conf, &p);
    char errstr[512];
    rd_kafka_t* rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == nullptr) {
      return absl::InvalidArgumentError(
          fmt::format("Kafka sink '{}': cannot create the producer: {}",
                      options_.topic, errstr));
    }
    guard.c = nullptr;  // rd_kafka_new() took it
    p.rk.reset(rk);
    p.topic = rd_kafka_topic_new(rk, options_.topic.c_str(), nullptr);
    if (p.topic == nullptr) {
      return absl::InvalidArgumentError(
          fmt::format("Kafka sink '{}': {}", options_.topic,
                      rd_kafka_err2str(rd_kafka_last_error())));
    }
    return Status();
  }

  // The topic exists; its partition count (for a user partitioner).
  Status check_topic(Producer& p) {
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t err =
        rd_kafka_metadata(p.rk.get(), 0, p.topic, &md,
                          static_cast<int>(options_.connect_timeout.count()));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(fmt::format(
          "Kafka sink '{}': the brokers '{}' did not answer within {} ms "
          "(KafkaSinkOptions.connect_timeout): {}",
          options_.topic, options_.brokers, options_.connect_timeout.count(),
          rd_kafka_err2str(err)));
    }
    Status s;
    if (md->topic_cnt != 1 ||
        md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      s = absl::NotFoundError(
          fmt::format("Kafka sink: topic '{}' does not exist at '{}' (the sink "
                      "does not create topics)",
                      options_.topic, options_.brokers));
    } else if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      s = absl::UnavailableError(
          fmt::format("Kafka sink: topic '{}' at '{}': {}", options_.topic,
                      options_.brokers, rd_kafka_err2str(md->topics[0].err)));
    } else if (md->topics[0].partition_cnt <= 0) {
      s = absl::NotFoundError(fmt::format(
          "Kafka sink: topic '{}' has no partitions", options_.topic));
    } else {
      partitions_ = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return s;
  }

  void poll_loop() {
    while (!stop_poller_) {
      for (auto& p : producers_) rd_kafka_poll(p->rk.get(), 10);
      if (rd_kafka_t* lease = lease_poll_.load()) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(lease, 10);
        if (m != nullptr) rd_kafka_message_destroy(m);
      }
    }
  }

  Status txn_error(const char* what, const Producer& p,
                   const rd_kafka_error_t* e) const {
    const auto code = rd_kafka_error_is_fatal(e) ? absl::StatusCode::kInternal
                      : rd_kafka_error_is_retriable(e)
                          ? absl::StatusCode::kUnavailable
                          : absl::StatusCode::kAborted;
    return Status(
        code,
        fmt::format("Kafka sink topic '{}': {} (transactional.id '{}') failed: "
                    "{}: {}",
                    options_.topic, what, p.transactional_id,
                    rd_kafka_error_name(e), rd_kafka_error_string(e)));
  }

  // Lease, then init_transactions on every slot: fences an earlier run's
  // producers and aborts (or completes) what they left open, so that the
  // marker read afterwards is stable.
  Status start_transactions() {
    if (started_) return Status();
    if (producers_.empty()) {
      return absl::FailedPreconditionError(
          fmt::format("Kafka sink '{}': used before open()", options_.topic));
    }
    if (options_.lease) MS_RETURN_IF_ERROR(acquire_lease());
    for (auto& p : producers_) {
      if (p->inited) continue;
      const auto deadline = Clock::now() + options_.connect_timeout;
      for (;;) {
        ErrorPtr e(rd_kafka_init_transactions(
            p->rk.get(), static_cast<int>(options_.connect_timeout.count())));
        if (!e) break;
        if (rd_kafka_error_is_retriable(e.get()) && Clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        return txn_error("init_transactions", *p, e.get());
      }
      p->inited = true;
    }
    started_ = true;
    return Status();
  }

  Status begin(Producer& p) {
    if (p.in_transaction) return Status();
    ErrorPtr e(rd_kafka_begin_transaction(p.rk.get()));
    if (e) return txn_error("begin_transaction", p, e.get());
    p.in_transaction = true;
    p.txn_sent = 0;
    p.txn_acked = 0;
    p.txn_failed = 0;
    return Status();
  }

  Status abort(Producer& p) {
    ErrorPtr e(rd_kafka_abort_transaction(p.rk.get(), -1));
    p.in_transaction = false;
    if (aborted_counter_ != nullptr) aborted_counter_->add();
    if (e) return txn_error("abort_transaction", p, e.get());
    return Status();
  }

  static char* dup(const std::string& s) {
    char* out = static_cast<char*>(std::malloc(s.size() + 1));
    std::memcpy(out, s.c_str(), s.size() + 1);
    return out;
  }

  Status send_offsets(Producer& p, const std::string& group,
                      rd_kafka_topic_partition_list_t* list) {
    rd_kafka_consumer_group_metadata_t* cg =
        rd_kafka_consumer_group_metadata_new(group.c_str());
    const auto deadline = Clock::now() + options_.connect_timeout;
    for (;;) {
      ErrorPtr e(rd_kafka_send_offsets_to_transaction(
          p.rk.get(), list, cg,
          static_cast<int>(options_.connect_timeout.count())));
      if (!e) break;
      if (rd_kafka_error_is_retriable(e.get()) && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      rd_kafka_consumer_group_metadata_destroy(cg);
      return txn_error(
          fmt::format("send_offsets_to_transaction (group '{}')", group)
              .c_str(),
          p, e.get());
    }
    rd_kafka_consumer_group_metadata_destroy(cg);
    return Status();
  }

  Status commit_transaction(Producer& p, const CheckpointCommit& checkpoint) {
    const std::string metadata = fmt::format("chk={}", checkpoint.id);
    // Kafka sources' positions, per consumer group, and the marker.
    std::map<std::string, ListPtr> by_group;
    auto list_of =
        [&](const std::string& group) -> rd_kafka_topic_partition_list_t* {
      ListPtr& l = by_group[group];
      if (!l) l.reset(rd_kafka_topic_partition_list_new(8));
      return l.get();
    };
    for (const CheckpointCommit::Split& split : checkpoint.splits) {
      std::optional<KafkaPosition> pos = decode_kafka_position(split.position);
      if (!pos || pos->group.empty() || pos->next_offset < 0) continue;
      rd_kafka_topic_partition_t* t = rd_kafka_topic_partition_list_add(
          list_of(pos->group), pos->topic.c_str(), pos->partition);
      t->offset = pos->next_offset;
      t->metadata = dup(metadata);
      t->metadata_size = metadata.size();
    }
    {
      rd_kafka_topic_partition_list_t* l = list_of(options_.commit_group);
      rd_kafka_topic_partition_t* t =
          rd_kafka_topic_partition_list_find(l, options_.topic.c_str(), 0);
      if (t == nullptr) {
        t = rd_kafka_topic_partition_list_add(l, options_.topic.c_str(), 0);
        t->offset = 0;
      } else {
        std::free(t->metadata);
      }
      t->metadata = dup(metadata);
      t->metadata_size = metadata.size();
    }
    // Every message of the transaction acknowledged, none failed, before
    // anything is committed: librdkafka aborts a transaction with failed
    // deliveries too, but the job must never be told that output it lost is
    // committed, whatever the client library does after a broker restart.
    Status s = check_delivered(p, checkpoint.id);
    for (auto& [group, list] : by_group) {
      if (!s.ok()) break;
      s = send_offsets(p, group, list.get());
    }
    if (s.ok()) {
      // Test hook (core/failpoint.hpp): offsets sent, commit not returned yet.
      failpoint("kafka-commit");
      for (;;) {
        ErrorPtr e(rd_kafka_commit_transaction(p.rk.get(), -1));
        if (!e) break;
        if (rd_kafka_error_is_retriable(e.get()) &&
            !rd_kafka_error_txn_requires_abort(e.get())) {
          continue;  // resumable: the commit goes on in the background
        }
        s = txn_error(fmt::format("committing the transaction of checkpoint {}",
                                  checkpoint.id)
                          .c_str(),
                      p, e.get());
        break;
      }
    }
    if (!s.ok()) {
      // A delivery error says more than "the transaction must be aborted".
      Status delivery = error();
      if (!delivery.ok()) {
        s = Status(delivery.code(),
                   fmt::format("{} (checkpoint {} not committed)",
                               std::string(delivery.message()), checkpoint.id));
      }
      if (!rd_kafka_fatal_error(p.rk.get(), nullptr, 0)) (void)abort(p);
      p.in_transaction = false;
      return s;
    }
    p.in_transaction = false;
    return Status();
  }

  // Waits (at most the transaction timeout, which bounds librdkafka's message
  // timeout) for the delivery reports of the open transaction of `p`; an
  // error unless every message it was handed was acknowledged by the broker.
  Status check_delivered(Producer& p, std::int64_t checkpoint_id) {
    const rd_kafka_resp_err_t flushed = rd_kafka_flush(
        p.rk.get(), static_cast<int>(options_.transaction_timeout.count()));
    const std::int64_t sent = p.txn_sent.load(std::memory_order_acquire);
    const std::int64_t acked = p.txn_acked.load(std::memory_order_acquire);
    const std::int64_t failed = p.txn_failed.load(std::memory_order_acquire);
    if (flushed == RD_KAFKA_RESP_ERR_NO_ERROR && failed == 0 && acked == sent)
      return Status();
    std::string why =
        error().ok() ? std::string() : ": " + std::string(error().message());
    return absl::UnavailableError(fmt::format(
        "Kafka sink topic '{}': the transaction of checkpoint {} "
        "(transactional.id '{}') is not committed: of its {} messages {} were "
        "acknowledged by the broker and {} failed{}{}",
        options_.topic, checkpoint_id, p.transactional_id, sent, acked, failed,
        flushed == RD_KAFKA_RESP_ERR_NO_ERROR
            ? std::string()
            : fmt::format(", {} still unacknowledged after {} ms ({})",
                          rd_kafka_outq_len(p.rk.get()),
                          options_.transaction_timeout.count(),
                          rd_kafka_err2name(flushed)),
        why));
  }

  // The checkpoint id in the marker offset's metadata; 0 when none.
  StatusOr<std::int64_t> read_marker() {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char errstr[512];
    auto set_c = [&](const char* k, const std::string& v) {
      return rd_kafka_conf_set(conf, k, v.c_str(), errstr, sizeof(errstr)) ==
             RD_KAFKA_CONF_OK;
    };
    if (!set_c("bootstrap.servers", options_.brokers) ||
        !set_c("group.id", options_.commit_group) ||
        !set_c("enable.auto.commit", "false") ||
        !set_c("isolation.level", "read_committed")) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(
          fmt::format("Kafka sink '{}': {}", options_.topic, errstr));
    }
    HandlePtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
    if (!rk) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(
          fmt::format("Kafka sink '{}': {}", options_.topic, errstr));
    }
    ListPtr list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), options_.topic.c_str(), 0);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    const auto deadline = Clock::now() + options_.connect_timeout;
    for (;;) {
      err = rd_kafka_committed(
          rk.get(), list.get(),
          static_cast<int>(options_.connect_timeout.count()));
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) err = list->elems[0].err;
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(fmt::format(
          "Kafka sink '{}': reading the committed offset of group '{}' (the "
          "last committed "
          "checkpoint): {}",
          options_.topic, options_.commit_group, rd_kafka_err2str(err)));
    }
    const rd_kafka_topic_partition_t& t = list->elems[0];
    if (t.offset < 0) return std::int64_t{0};
    const std::string md(static_cast<const char*>(t.metadata), t.metadata_size);
    std::int64_t id = -1;
    if (md.rfind("chk=", 0) == 0 && md.size() > 4 &&
        std::all_of(md.begin() + 4, md.end(),
                    [](char c) { return c >= '0' && c <= '9'; })) {
      id = std::strtoll(md.c_str() + 4, nullptr, 10);
    }
    if (id < 0) {
      return absl::DataLossError(fmt::format(
          "Kafka sink '{}': group '{}' has an offset on {}[0] whose metadata "
          "'{}' is not "
          "'chk=<id>': another application uses this group "
          "(KafkaSinkOptions.commit_group)",
          options_.topic, options_.commit_group, options_.topic, md));
    }
    return id;
  }

  // ---- lease ----------------------------------------------------------------

  struct GroupInfo {
    std::string state;
    std::vector<std::string> members;  // "client_id@host"
  };

  StatusOr<GroupInfo> describe(rd_kafka_t* rk, const std::string& group) {
    const struct rd_kafka_group_list* list = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_list_groups(
        rk, group.c_str(), &list,
        static_cast<int>(options_.connect_timeout.count()));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(
          fmt::format("Kafka sink '{}': describing group '{}': {}",
                      options_.topic, group, rd_kafka_err2str(err)));
    }
    GroupInfo info;
    for (int i = 0; i < list->group_cnt; ++i) {
      const rd_kafka_group_info& g = list->groups[i];
      if (group != g.group) continue;
      info.state = g.state != nullptr ? g.state : "";
      for (int m = 0; m < g.member_cnt; ++m) {
        info.members.push_back(fmt::format("{}@{}", g.members[m].client_id,
                                           g.members[m].client_host));
      }
    }
    rd_kafka_group_list_destroy(list);
    return info;
  }

  static void on_lease_rebalance(
      rd_kafka_t* rk, rd_kafka_resp_err_t err,
      rd_kafka_topic_partition_list_t* /*partitions*/, void* opaque) {
    auto* self = static_cast<KafkaSinkImpl*>(opaque);
    // The lease is the membership alone: consume nothing.
    rd_kafka_assign(rk, nullptr);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) self->lease_joined_ = true;
  }

  Status acquire_lease() {
    if (lease_) return Status();
    const std::string group = options_.transactional_id_prefix + ".lease";
    char host[256] = "?";
    ::gethostname(host, sizeof(host) - 1);
    const std::string client =
        fmt::format("meterstream-lease-{}-{}", host, ::getpid());
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char errstr[512];
    auto set_c = [&](const char* k, const std::string& v) {
      return rd_kafka_conf_set(conf, k, v.c_str(), errstr, sizeof(errstr)) ==
             RD_KAFKA_CONF_OK;
    };
    if (!set_c("bootstrap.servers", options_.brokers) ||
        !set_c("group.id", group) || !set_c("client.id", client) ||
        !set_c("enable.auto.commit", "false") ||
        // librdkafka 2.0.2 looks the group coordinator up when the consumer
        // is created, before any connection is up, and tries again when its
        // main thread next wakes: up to 1 s later when nothing else wakes
        // it. A statistics timer of 100 ms wakes it that often, so the
        // lease no longer costs a second at every start (the statistics,
        // a few hundred bytes, are dropped: there is no stats callback).
        !set_c("statistics.interval.ms", "100") ||
        !set_c("session.timeout.ms",
               std::to_string(options_.lease_session_timeout.count())) ||
        !set_c("heartbeat.interval.ms",
               std::to_string(std::max<std::int64_t>(
                   100, options_.lease_session_timeout.count() / 4)))) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(fmt::format(
          "Kafka sink '{}': lease consumer: {}", options_.topic, errstr));
    }
    rd_kafka_conf_set_rebalance_cb(conf, &KafkaSinkImpl::on_lease_rebalance);
    rd_kafka_conf_set_opaque(conf, this);
    HandlePtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
    if (!rk) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(fmt::format(
          "Kafka sink '{}': lease consumer: {}", options_.topic, errstr));
    }
    rd_kafka_poll_set_consumer(rk.get());
    // Wait for an earlier holder to go: a killed job's member expires after
    // its session timeout.
    const auto wait = options_.lease_session_timeout + std::chrono::seconds(5);
    const auto deadline = Clock::now() + wait;
    for (;;) {
      MS_ASSIGN_OR_RETURN(GroupInfo info, describe(rk.get(), group));
      if (info.members.empty()) break;
      if (Clock::now() >= deadline) {
        return absl::FailedPreconditionError(fmt::format(
            "Kafka sink '{}': another job with transactional_id_prefix '{}' is "
            "running (its "
            "lease, consumer group '{}', has the live member(s) {} after {} "
            "ms); two jobs with "
            "one prefix would fence each other",
            options_.topic, options_.transactional_id_prefix, group,
            fmt::join(info.members, ", "),
            std::chrono::duration_cast<std::chrono::milliseconds>(wait)
                .count()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    ListPtr topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), options_.topic.c_str(),
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk.get(), topics.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(
          fmt::format("Kafka sink '{}': joining the lease group '{}': {}",
                      options_.topic, group, rd_kafka_err2str(err)));
    }
    lease_joined_ = false;
    const auto join_deadline = Clock::now() + options_.connect_timeout;
    while (!lease_joined_ && Clock::now() < join_deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
      if (m != nullptr) rd_kafka_message_destroy(m);
    }
    if (!lease_joined_) {
      rd_kafka_consumer_close(rk.get());
      return absl::UnavailableError(fmt::format(
          "Kafka sink '{}': could not join the lease group '{}' within {} ms",
          options_.topic, group, options_.connect_timeout.count()));
    }
    // Two jobs that started together both joined: both refuse rather than
    // one fencing the other.
    MS_ASSIGN_OR_RETURN(GroupInfo info, describe(rk.get(), group));
    if (info.members.size() > 1) {
      rd_kafka_consumer_close(rk.get());
      return absl::FailedPreconditionError(
          fmt::format("Kafka sink '{}': another job with "
                      "transactional_id_prefix '{}' started at the same "
                      "time (lease group '{}' has members {}); two jobs with "
                      "one prefix would fence each "
                      "other",
                      options_.topic, options_.transactional_id_prefix, group,
                      fmt::join(info.members, ", ")));
    }
    // The poller thread keeps the membership alive.
    lease_ = std::move(rk);
    lease_poll_.store(lease_.get());
    return Status();
  }

  friend class KafkaWriterImpl;

  KafkaSinkOptions options_;
  std::vector<std::unique_ptr<Producer>> producers_;
  HandlePtr lease_;
  std::atomic<rd_kafka_t*> lease_poll_{nullptr};
  std::atomic<bool> lease_joined_{false};
  std::thread poller_;
  std::atomic<bool> stop_poller_{false};
  bool started_ = false;
  bool closed_ = true;
  std::int64_t commits_ = 0;
  int partitions_ = 0;
  std::mutex error_mu_;
  Status error_;
  Counter* committed_counter_ = nullptr;
  Counter* aborted_counter_ = nullptr;
  Counter* errors_counter_ = nullptr;
};

class KafkaWriterImpl final : public KafkaSinkWriterCore {
 public:
  KafkaWriterImpl(KafkaSinkImpl& sink, int worker)
      : sink_(sink), worker_(worker) {}

  Status produce(const KafkaRecord& r) override {
    return send(r.has_key ? &r.key : nullptr, r.value, &r.headers);
  }
  Status produce_value(std::string_view value) override {
    return send(nullptr, value, nullptr);
  }

  StatusOr<std::string> prepare_commit(std::int64_t /*epoch*/) override {
    MS_RETURN_IF_ERROR(sink_.error());
    switch (sink_.options().delivery) {
      case KafkaDelivery::kExactlyOnce:
        // What this worker wrote is in slot barriers_ % 2's transaction,
        // which the checkpoint commits (commit_transaction flushes it); from
        // now on it writes the next checkpoint's output to the other slot.
        ++barriers_;
        return std::string();
      case KafkaDelivery::kAtLeastOnce:
        MS_RETURN_IF_ERROR(wait_delivered());
        return std::string();
      case KafkaDelivery::kNone:
        return std::string();
    }
    return std::string();
  }

  Status close() override {
    if (sink_.options().delivery == KafkaDelivery::kAtLeastOnce)
      return wait_delivered();
    if (sink_.options().delivery == KafkaDelivery::kNone) {
      // Bounded: fire and forget, but the end of input gives the queue a
      // chance.
      const auto deadline = Clock::now() + sink_.options().connect_timeout;
      while (inflight_.n.load() > 0 && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    return Status();
  }

  // No wait for delivery reports here: the job closes the sink (destroying
  // its producers, whose reports point at inflight_) before its writers.

 private:
  Status wait_delivered() {
    while (inflight_.n.load(std::memory_order_acquire) > 0) {
      MS_RETURN_IF_ERROR(sink_.error());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return sink_.error();
  }

  Status send(const std::string* key, std::string_view value,
              const std::vector<KafkaHeader>* headers) {
    const int slot = sink_.exactly_once() ? static_cast<int>(barriers_ % 2) : 0;
    Producer& p = sink_.producer(slot);
    std::int32_t partition = RD_KAFKA_PARTITION_UA;
    const auto& partitioner = sink_.options().partitioner;
    if (partitioner) {
      const int n = sink_.partitions();
      const int chosen = partitioner(
          key != nullptr ? std::string_view(*key) : std::string_view(), n);
      if (chosen < 0 || chosen >= n) {
        return absl::InvalidArgumentError(
            fmt::format("Kafka sink topic '{}': the partitioner returned {}, "
                        "not in [0, {})",
                        sink_.options().topic, chosen, n));
      }
      partition = chosen;
    }
    for (;;) {
      rd_kafka_headers_t* hdrs = nullptr;
      if (headers != nullptr && !headers->empty()) {
        hdrs = rd_kafka_headers_new(headers->size());
        for (const KafkaHeader& h : *headers) {
          rd_kafka_header_add(
              hdrs, h.name.data(), static_cast<ssize_t>(h.name.size()),
              h.value.data(), static_cast<ssize_t>(h.value.size()));
        }
      }
      const void* key_data = key != nullptr ? key->data() : nullptr;
      const std::size_t key_size = key != nullptr ? key->size() : 0;
      inflight_.n.fetch_add(1, std::memory_order_acq_rel);
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          p.rk.get(), RD_KAFKA_V_RKT(p.topic), RD_KAFKA_V_PARTITION(partition),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
          RD_KAFKA_V_KEY(key_data, key_size), RD_KAFKA_V_HEADERS(hdrs),
          RD_KAFKA_V_OPAQUE(&inflight_), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        p.txn_sent.fetch_add(1, std::memory_order_acq_rel);
        break;
      }
      inflight_.n.fetch_sub(1, std::memory_order_acq_rel);
      if (hdrs != nullptr) rd_kafka_headers_destroy(hdrs);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        // Backpressure: the poller thread serves delivery reports meanwhile.
        MS_RETURN_IF_ERROR(sink_.error());
        rd_kafka_poll(p.rk.get(), 5);
        continue;
      }
      Status s = err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
                     ? KafkaSinkImpl::delivery_error(
                           sink_.options().topic, partition, value.size(), err)
                     : absl::UnavailableError(
                           fmt::format("Kafka sink topic '{}': producing a "
                                       "message of {} bytes failed: {}",
                                       sink_.options().topic, value.size(),
                                       rd_kafka_err2str(err)));
      sink_.record_error(s);
      return s;
    }
    return Status();
  }

  KafkaSinkImpl& sink_;
  int worker_;
  std::int64_t barriers_ = 0;
  InFlight inflight_;
};

StatusOr<std::unique_ptr<KafkaSinkWriterCore>> KafkaSinkImpl::create_writer(
    int worker) {
  if (producers_.empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "Kafka sink '{}': create_writer() before open()", options_.topic));
  }
  if (exactly_once() && !started_) {
    return absl::FailedPreconditionError(
        fmt::format("Kafka sink '{}': delivery exactly_once, but the job did "
                    "not recover the sink (is "
                    "checkpointing on?)",
                    options_.topic));
  }
  return std::unique_ptr<KafkaSinkWriterCore>(
      std::make_unique<KafkaWriterImpl>(*this, worker));
}

}  // namespace

std::shared_ptr<KafkaSinkCore> KafkaSinkCore::create(KafkaSinkOptions options) {
  return std::make_shared<KafkaSinkImpl>(std::move(options));
}

}  // namespace meterstream::detail
