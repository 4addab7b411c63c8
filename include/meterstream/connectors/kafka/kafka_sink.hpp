// The Kafka sink: records of a stream as messages of one Kafka topic, with
// no guarantee, at least once, or exactly once (docs/kafka.md, "Sink").
//
// kafka_sink<T>(options, serializer) serializes every record with
// serializer(const T&), which returns either the message value
// (std::string) or a KafkaRecord (key, value, headers), and produces it to
// options.topic. The partition is options.partitioner(key, partitions) when
// set, otherwise librdkafka's default partitioner (by key hash; keyless
// messages spread).
//
// Delivery (KafkaSinkOptions::delivery):
//   - kNone: fire and forget; failed deliveries are counted
//     (kafka_sink_produce_errors) and the end of input waits for the queue.
//   - kAtLeastOnce: every checkpoint barrier waits until the worker's
//     messages are acknowledged; a failed delivery fails the job, which a
//     restart resumes from its last checkpoint (messages since then may be
//     written twice).
//   - kExactlyOnce: two-phase commit with Kafka transactions, and the Kafka
//     transaction is the checkpoint's commit point. The output of checkpoint
//     epoch N (written between barriers N-1 and N) is ONE transaction per
//     process, on producer slot k % 2 of a pool of two transactional
//     producers ("<prefix>-0-0", "<prefix>-0-1"), k counting the checkpoints
//     of the run; while checkpoint N uploads, epoch N+1 already produces
//     into the other slot. When checkpoint N's metadata is written, the
//     checkpoint thread sends, inside that transaction, the Kafka sources'
//     positions of checkpoint N (to their consumer groups) and a marker
//     offset on partition 0 of the output topic under commit_group, with
//     metadata "chk=<N>", then commits it. On start, the sink fences both
//     transactional ids (aborting what a crashed run left open, so
//     read_committed readers are never held back), reads the marker, and the
//     job restores exactly that checkpoint. Readers must use
//     isolation.level=read_committed. Requires checkpointing
//     (JobOptions::checkpoint.interval > 0) and a transaction_timeout larger
//     than the checkpoint interval plus max(interval, 5 s).
//     Two live jobs with one transactional_id_prefix would fence each other:
//     a job holds a lease, membership of the consumer group
//     "<prefix>.lease", and a job that finds another live member there
//     fails at start (kFailedPrecondition naming the member). A killed job's
//     member lingers for lease_session_timeout; a restart waits that long
//     (plus a few seconds) for it to expire.
//
// Errors: options are checked, and librdkafka's configuration applied, when
// the job starts (Job::start(): kInvalidArgument naming the option or the
// property and librdkafka's message); brokers that do not answer within
// connect_timeout: kUnavailable; a missing topic: kNotFound naming it. A
// message larger than the producer's limit fails the job with the topic and
// the size (raise message.max.bytes in `properties`, and the topic's
// max.message.bytes, then restart: with exactly_once nothing is lost). A
// fatal producer error or a failed transaction commit fails the job with the
// topic and librdkafka's error; restarting the job (same storage, same
// options, RestoreFrom::latest()) resumes from the last committed checkpoint
// without loss; with JobOptions::restart the job does so by itself.
//
// Metrics (Job::metrics()): kafka_sink_produce_errors,
// kafka_sink_transactions_committed, kafka_sink_transactions_aborted.
//
// Thread-safety: as Sink; every worker's writer produces into the same
// librdkafka producer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/connectors/kafka/kafka_record.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream {

// What the sink guarantees about its output (see the file comment).
enum class KafkaDelivery { kNone, kAtLeastOnce, kExactlyOnce };

struct KafkaSinkOptions {
  // Bootstrap servers, "host:port[,host:port...]". Required.
  // Default: "".
  std::string brokers;

  // The output topic; it must exist (it is not created). Required.
  // Default: "".
  std::string topic;

  // Default: kAtLeastOnce.
  KafkaDelivery delivery = KafkaDelivery::kAtLeastOnce;

  // Required with kExactlyOnce: the start of the transactional ids
  // ("<prefix>-<instance>-<slot>"), unique per job. 1 to 200 characters
  // among [A-Za-z0-9._-].
  // Default: "".
  std::string transactional_id_prefix;

  // The producers' transaction.timeout.ms (kExactlyOnce). Must be at least
  // the checkpoint interval plus max(interval, 5 s), and at most the
  // broker's transaction.max.timeout.ms (15 min by default).
  // Default: 60 s.
  std::chrono::milliseconds transaction_timeout{60000};

  // The consumer group whose offset of partition 0 of `topic` marks the
  // last committed checkpoint (kExactlyOnce).
  // Default: "" (the transactional_id_prefix).
  std::string commit_group;

  // librdkafka producer properties by name ("linger.ms", "compression.type",
  // "message.max.bytes", ...), applied after the sink's own
  // (bootstrap.servers, transactional.id, transaction.timeout.ms).
  // Default: none.
  std::map<std::string, std::string> properties;

  // Chooses the partition of a message from its key and the topic's
  // partition count; must return a value in [0, partitions). Called on the
  // worker threads.
  // Default: empty (librdkafka's default partitioner).
  std::function<int(std::string_view key, int partitions)> partitioner;

  // How long the start waits for the brokers (metadata, transactional ids).
  // Default: 30 s.
  std::chrono::milliseconds connect_timeout{30000};

  // kExactlyOnce: hold the lease group "<prefix>.lease" (see the file
  // comment). Turning it off leaves two jobs with one prefix fencing each
  // other.
  // Default: true.
  bool lease = true;

  // The lease consumer's session.timeout.ms: how long a killed job's lease
  // outlives it (between the broker's group.min.session.timeout.ms, 6 s by
  // default, and its max).
  // Default: 6 s.
  std::chrono::milliseconds lease_session_timeout{6000};
};

namespace detail {

// One worker's producing end. Compiled in src/.
class KafkaSinkWriterCore {
 public:
  virtual ~KafkaSinkWriterCore() = default;
  // Produces one message (the bytes are copied). Fails with the first
  // delivery error of the sink, naming the topic.
  virtual Status produce(const KafkaRecord& record) = 0;
  virtual Status produce_value(std::string_view value) = 0;
  virtual StatusOr<std::string> prepare_commit(std::int64_t epoch) = 0;
  virtual Status close() = 0;
};

// The type-independent part of kafka_sink(): producers, transactions,
// lease. Compiled in src/.
class KafkaSinkCore : public SinkBase {
 public:
  static std::shared_ptr<KafkaSinkCore> create(KafkaSinkOptions options);
  virtual StatusOr<std::unique_ptr<KafkaSinkWriterCore>> create_writer(
      int worker) = 0;
};

template <typename T, typename Serializer>
class KafkaSink final : public Sink<T> {
 public:
  KafkaSink(KafkaSinkOptions options, Serializer serializer)
      : core_(KafkaSinkCore::create(std::move(options))),
        serializer_(std::move(serializer)) {}

  std::string name() const override { return core_->name(); }
  Status open(const SinkContext& context) override {
    return core_->open(context);
  }
  bool commit_point() const override { return core_->commit_point(); }
  StatusOr<std::int64_t> committed_checkpoint() override {
    return core_->committed_checkpoint();
  }
  Status persist(const std::vector<std::string>& prepared) override {
    return core_->persist(prepared);
  }
  Status commit(const CheckpointCommit& checkpoint,
                const std::vector<std::string>& prepared) override {
    return core_->commit(checkpoint, prepared);
  }
  Status recover(std::int64_t restored_checkpoint,
                 const std::vector<std::string>& keep) override {
    return core_->recover(restored_checkpoint, keep);
  }
  void close() override { core_->close(); }

  StatusOr<std::unique_ptr<SinkWriter<T>>> create_writer(int worker,
                                                         int) override {
    MS_ASSIGN_OR_RETURN(auto core, core_->create_writer(worker));
    return std::unique_ptr<SinkWriter<T>>(
        std::make_unique<Writer>(std::move(core), serializer_));
  }

 private:
  class Writer final : public SinkWriter<T> {
   public:
    Writer(std::unique_ptr<KafkaSinkWriterCore> core, Serializer serializer)
        : core_(std::move(core)), serializer_(std::move(serializer)) {}
    Status write(const RecordBatch<T>& batch) override {
      for (const T& v : batch.values) {
        using R = std::invoke_result_t<Serializer&, const T&>;
        if constexpr (std::is_convertible_v<R, std::string_view>) {
          const auto& value = serializer_(v);
          MS_RETURN_IF_ERROR(core_->produce_value(std::string_view(value)));
        } else {
          static_assert(std::is_convertible_v<R, const KafkaRecord&>,
                        "kafka_sink(): the serializer must return std::string "
                        "or KafkaRecord");
          MS_RETURN_IF_ERROR(core_->produce(serializer_(v)));
        }
      }
      return Status();
    }
    StatusOr<std::string> prepare_commit(std::int64_t epoch) override {
      return core_->prepare_commit(epoch);
    }
    Status close() override { return core_->close(); }

   private:
    std::unique_ptr<KafkaSinkWriterCore> core_;
    Serializer serializer_;
  };

  std::shared_ptr<KafkaSinkCore> core_;
  Serializer serializer_;
};

}  // namespace detail

// A sink producing serializer(const T&) (std::string: the value; or a
// KafkaRecord) to options.topic (see the file comment).
//
// Example:
//   ms::KafkaSinkOptions out;
//   out.brokers = "127.0.0.1:9092";
//   out.topic = "usage";
//   out.delivery = ms::KafkaDelivery::kExactlyOnce;
//   out.transactional_id_prefix = "usage-job";
//   windows.sink(ms::kafka_sink<Usage>(out, [](const Usage& u) {
//     return fmt::format("{},{}", u.meter_id, u.wh);
//   }));
template <typename T, typename Serializer>
std::shared_ptr<Sink<T>> kafka_sink(KafkaSinkOptions options,
                                    Serializer serializer) {
  return std::make_shared<detail::KafkaSink<T, Serializer>>(
      std::move(options), std::move(serializer));
}

}  // namespace meterstream
