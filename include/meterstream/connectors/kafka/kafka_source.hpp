// The Kafka source: records of Kafka topics as a stream, one split per
// partition.
//
// kafka_source<T>(options, deserializer) reads the partitions of
// `options.topics` (all of them) or the explicit `options.partitions`; each
// partition is a split, so its records keep their order and the source's
// watermark is the minimum over its active partitions (an idle partition stops
// holding it back with WatermarkStrategy::with_idleness()). One librdkafka
// consumer serves the whole source, with a queue per partition that the split
// reader of that partition polls on its worker thread. Partitions are assigned
// by the job (manual assignment, no consumer-group rebalancing).
//
// Positions. A split's checkpoint position is the next offset to read in its
// partition (and, in bounded mode, the end offset fixed at the first start);
// a restored job resumes exactly there. When a checkpoint commits and no
// transactional sink committed the offsets already, the source commits its
// partitions' next offsets to `options.group_id`, so that consumer lag is
// visible (asynchronously; errors are logged and counted in
// "source_commit_errors", never fatal).
//
// Bounded mode (Flink's setBounded): the end offset of each partition is the
// latest offset found when the job first starts (the last stable offset under
// read_committed); a partition ends when its next offset reaches it, even when
// the last offsets hold transaction markers rather than records; the input
// ends when every partition has. A restored job keeps the end offsets of the
// checkpoint, or with bounded_end_at_each_start finds them anew.
//
// Bad input. A record that the deserializer rejects goes to the source's
// undecodable() side output as "kafka <topic>/<partition>@<offset>: <reason>"
// (counted in "source_undecodable", never dropped silently; route it to any
// sink, a Kafka dead-letter topic included). At job start: brokers that do not
// answer within `connect_timeout` are kUnavailable; a missing topic or
// partition is kNotFound naming it; a property librdkafka rejects is
// kInvalidArgument naming it with librdkafka's message.
//
// Thread-safety: as Source. The deserializer is copied into every split and
// called on the worker thread of that split.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/connectors/kafka/kafka_record.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream {

// One partition of a topic.
struct KafkaTopicPartition {
  std::string topic;
  std::int32_t partition = 0;
};

// Where a partition is read from when the job starts without a checkpoint
// (a restored job resumes at the checkpoint's offsets).
class KafkaStartOffset {
 public:
  enum class Kind { kEarliest, kLatest, kCommitted, kTimestamp };

  // The first offset still in the partition.
  static KafkaStartOffset earliest() { return KafkaStartOffset(Kind::kEarliest); }
  // The end of the partition when the job starts: only records written later.
  static KafkaStartOffset latest() { return KafkaStartOffset(Kind::kLatest); }
  // The offset committed to the consumer group (KafkaSourceOptions::group_id),
  // and `fallback` (earliest() or latest()) for a partition without one.
  static KafkaStartOffset committed(KafkaStartOffset fallback = earliest()) {
    KafkaStartOffset s(Kind::kCommitted);
    s.fallback_ = fallback.kind_ == Kind::kLatest ? Kind::kLatest : Kind::kEarliest;
    return s;
  }
  // The first record whose timestamp is >= `since_epoch`; the end of the
  // partition when there is none.
  template <typename Rep, typename Period>
  static KafkaStartOffset timestamp(std::chrono::duration<Rep, Period> since_epoch) {
    KafkaStartOffset s(Kind::kTimestamp);
    s.timestamp_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count();
    return s;
  }

  Kind kind() const { return kind_; }
  Kind fallback() const { return fallback_; }           // for kCommitted
  std::int64_t timestamp_ms() const { return timestamp_ms_; }  // for kTimestamp

 private:
  explicit KafkaStartOffset(Kind kind) : kind_(kind) {}
  Kind kind_;
  Kind fallback_ = Kind::kEarliest;
  std::int64_t timestamp_ms_ = 0;
};

struct KafkaSourceOptions {
  // bootstrap.servers: "host:port[,host:port...]". Required.
  std::string brokers;

  // Every partition of these topics, in this order (a topic's partitions in
  // ascending order). Exactly one of `topics` and `partitions` is non-empty.
  // Default: none
  std::vector<std::string> topics;
  // Or exactly these partitions, in this order. Default: none
  std::vector<KafkaTopicPartition> partitions;

  // The consumer group whose committed offsets KafkaStartOffset::committed()
  // reads and to which offsets are committed after each checkpoint. Required
  // for committed(). Empty: no group (offsets are never committed).
  // Default: ""
  std::string group_id;

  // Where to start without a checkpoint. Default: KafkaStartOffset::earliest()
  KafkaStartOffset start = KafkaStartOffset::earliest();

  // Read up to the end offsets found when the job first starts, then end the
  // input. Default: false (read forever)
  bool bounded = false;

  // Bounded mode, restored job: read up to the end offsets found at this
  // start (and read on in partitions that had ended when the checkpoint was
  // taken), instead of the checkpoint's end offsets. A job that was down
  // while records piled up (killed, or stopped unbounded) then catches up
  // with them and ends; its checkpoint may come from an unbounded run. A
  // job restored from its final checkpoint (it had ended) still ends at
  // once: a new range of an ended job is a new job (new checkpoint storage,
  // KafkaStartOffset::committed()). Records appended to a partition that
  // had ended are judged late against the watermark the job had reached.
  // Default: false (Flink's setBounded: the end offsets of the first start)
  bool bounded_end_at_each_start = false;

  // isolation.level read_committed: records of aborted or open transactions
  // are never read. Default: true
  bool read_committed = true;

  // Commit offsets to `group_id` after each committed checkpoint (only when
  // no transactional sink committed them). Default: true
  bool commit_offsets = true;

  // How long the start waits for the brokers to answer (metadata and offset
  // look-ups each get this long). Default: 10 s
  std::chrono::milliseconds connect_timeout{10000};

  // Any librdkafka consumer property by name ("fetch.max.bytes", "client.id",
  // "security.protocol", ...), applied after the source's own settings.
  // bootstrap.servers, group.id, isolation.level, enable.auto.commit,
  // enable.auto.offset.store, enable.partition.eof and auto.offset.reset are
  // the source's and may not be set here (kInvalidArgument). Default: none
  std::map<std::string, std::string> properties;
};

// A record as the deserializer sees it. The views are valid during the call
// only.
struct KafkaRecordView {
  std::string_view topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string_view key;    // empty when the record has no key
  std::string_view value;  // empty for a null value
  // The record's timestamp (create or log-append time) in ms since the
  // epoch; kMinTimestamp when the record has none.
  Timestamp timestamp_ms = kMinTimestamp;
};


// Built-in deserializers. A deserializer is any callable
// (const KafkaRecordView&) -> StatusOr<T>; a non-OK status makes the record
// undecodable, its message being the reason. (JSON: kafka_json<T>() in
// connectors/kafka/kafka_json.hpp.)

// Every record, bytes and metadata: never undecodable.
inline auto kafka_raw() {
  return [](const KafkaRecordView& r) -> StatusOr<KafkaRecord> {
    KafkaRecord out;
    out.topic = std::string(r.topic);
    out.partition = r.partition;
    out.offset = r.offset;
    out.key = std::string(r.key);
    out.has_key = !r.key.empty();
    out.value = std::string(r.value);
    out.timestamp_ms = r.timestamp_ms;
    return out;
  };
}

// The workload's MeterReading from its 26-byte value
// (connectors/generator/meter_reading_codec.hpp); other sizes are undecodable.
StatusOr<MeterReading> decode_kafka_meter_reading(const KafkaRecordView& record);
inline auto kafka_meter_reading() {
  return [](const KafkaRecordView& r) { return decode_kafka_meter_reading(r); };
}

namespace detail {

// The compiled part of the Kafka source (src/connectors/kafka/): the consumer
// and one reader per partition. Not API.
class KafkaPartitionReader {
 public:
  enum class Result { kMore, kNoDataNow, kEnd };
  using Visit = void (*)(void* context, const KafkaRecordView& record);
  virtual ~KafkaPartitionReader() = default;
  // Reads up to `max` records of the partition, calling visit(context, r) for
  // each in offset order; errors name the partition.
  virtual StatusOr<Result> read(std::size_t max, Visit visit, void* context) = 0;
  virtual std::string name() const = 0;
  virtual std::string position() const = 0;
  virtual Status seek(std::string_view position) = 0;
};

class KafkaConsumerCore {
 public:
  // Connects, checks the topics and partitions, resolves the start (and, in
  // bounded mode, end) offsets. `source` names the source in errors.
  static StatusOr<std::shared_ptr<KafkaConsumerCore>> open(const KafkaSourceOptions& options,
                                                          const std::string& source);
  virtual ~KafkaConsumerCore() = default;
  // The readers of the partitions, in split order; called once.
  virtual std::vector<std::unique_ptr<KafkaPartitionReader>> take_readers() = 0;
  // Commits the next offsets in `splits` (positions from
  // KafkaPartitionReader::position()) to the group, asynchronously; returns
  // the errors of earlier commits that completed since the last call. With
  // `wait` (the job's final checkpoint), waits up to the connect timeout for
  // the commit to complete.
  virtual Status commit(const std::vector<CheckpointCommit::Split>& splits, bool wait) = 0;
};

// "kafka <topic>/<partition>@<offset>: <reason>".
std::string describe_undecodable(const KafkaRecordView& record, std::string_view reason);
std::string kafka_source_name(const KafkaSourceOptions& options);

template <typename T, typename Deserializer>
class KafkaSource final : public Source<T> {
 public:
  KafkaSource(KafkaSourceOptions options, Deserializer deserializer)
      : options_(std::move(options)), deserializer_(std::move(deserializer)) {}

  std::string name() const override { return kafka_source_name(options_); }

  StatusOr<std::vector<std::unique_ptr<SplitReader<T>>>> create_splits() override {
    MS_ASSIGN_OR_RETURN(core_, KafkaConsumerCore::open(options_, name()));
    std::vector<std::unique_ptr<SplitReader<T>>> out;
    for (auto& reader : core_->take_readers()) {
      out.push_back(std::make_unique<Split>(core_, std::move(reader), deserializer_,
                                            options_.bounded &&
                                                options_.bounded_end_at_each_start));
    }
    return out;
  }

  Status checkpoint_committed(const CheckpointCommit& checkpoint) override {
    if (!core_ || checkpoint.transactional) return Status();
    return core_->commit(checkpoint.splits, checkpoint.final);
  }

 private:
  class Split final : public SplitReader<T> {
   public:
    Split(std::shared_ptr<KafkaConsumerCore> core, std::unique_ptr<KafkaPartitionReader> reader,
          Deserializer deserializer, bool resumes_after_end)
        : core_(std::move(core)), reader_(std::move(reader)),
          deserializer_(std::move(deserializer)), resumes_after_end_(resumes_after_end) {}

    StatusOr<typename SplitReader<T>::Poll> poll(std::vector<T>& out, std::size_t max,
                                                 std::vector<std::string>& undecodable) override {
      out_ = &out;
      undecodable_ = &undecodable;
      MS_ASSIGN_OR_RETURN(KafkaPartitionReader::Result r, reader_->read(max, &Split::visit, this));
      switch (r) {
        case KafkaPartitionReader::Result::kMore:
          return SplitReader<T>::Poll::kMore;
        case KafkaPartitionReader::Result::kNoDataNow:
          return SplitReader<T>::Poll::kNoDataNow;
        case KafkaPartitionReader::Result::kEnd:
          break;
      }
      return SplitReader<T>::Poll::kEnd;
    }
    std::string name() const override { return reader_->name(); }
    StatusOr<std::string> position() const override { return reader_->position(); }
    Status seek(std::string_view position) override { return reader_->seek(position); }
    bool resumes_after_end() const override { return resumes_after_end_; }

   private:
    static void visit(void* context, const KafkaRecordView& record) {
      auto* self = static_cast<Split*>(context);
      // A deserializer that throws rejects the record: it is undecodable,
      // with the exception's message, rather than a failed job.
      try {
        StatusOr<T> v = self->deserializer_(record);
        if (v.ok()) {
          self->out_->push_back(*std::move(v));
        } else {
          self->undecodable_->push_back(
              describe_undecodable(record, std::string(v.status().message())));
        }
      } catch (const std::exception& e) {
        self->undecodable_->push_back(
            describe_undecodable(record, std::string("the deserializer threw: ") + e.what()));
      } catch (...) {
        self->undecodable_->push_back(describe_undecodable(record, "the deserializer threw"));
      }
    }

    std::shared_ptr<KafkaConsumerCore> core_;
    std::unique_ptr<KafkaPartitionReader> reader_;
    Deserializer deserializer_;
    std::vector<T>* out_ = nullptr;
    std::vector<std::string>* undecodable_ = nullptr;
    bool resumes_after_end_ = false;
  };

  KafkaSourceOptions options_;
  Deserializer deserializer_;
  std::shared_ptr<KafkaConsumerCore> core_;
};

struct DeduceRecordType {};

}  // namespace detail

// A source of the records of Kafka partitions, decoded by
// deserializer(const KafkaRecordView&) -> StatusOr<T> (see the file comment).
// T is deduced from the deserializer when not given. Options are checked when
// the job starts (Job::start()).
//
// Example:
//   ms::KafkaSourceOptions in;
//   in.brokers = "127.0.0.1:9092";
//   in.topics = {"readings"};
//   in.group_id = "usage-job";
//   in.bounded = true;
//   auto readings = p.source(ms::kafka_source<ms::MeterReading>(in, ms::kafka_meter_reading()));
//   readings.undecodable().sink(ms::file_sink("dead-letters.txt"));
//   readings.with_watermarks(ms::bounded_out_of_orderness(5min).with_idleness(1min),
//                            &ms::MeterReading::ts_ms)
//       ...
template <typename T = detail::DeduceRecordType, typename Deserializer>
auto kafka_source(KafkaSourceOptions options, Deserializer deserializer) {
  using Deduced = typename std::decay_t<
      std::invoke_result_t<Deserializer&, const KafkaRecordView&>>::value_type;
  using R = std::conditional_t<std::is_same_v<T, detail::DeduceRecordType>, Deduced, T>;
  static_assert(std::is_convertible_v<std::invoke_result_t<Deserializer&, const KafkaRecordView&>,
                                      StatusOr<R>>,
                "kafka_source(): the deserializer must return StatusOr<T>");
  return std::shared_ptr<Source<R>>(std::make_shared<detail::KafkaSource<R, Deserializer>>(
      std::move(options), std::move(deserializer)));
}

}  // namespace meterstream
