#include "meterstream/connectors/kafka/kafka_mock_cluster.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <mutex>

#include "fmt/format.h"

#include "connectors/kafka/rdkafka_util.hpp"

namespace meterstream {

namespace {

// One producer whose configuration ("test.mock.num.brokers") makes librdkafka
// start the mock cluster inside it; the producer talks to that cluster.
class MockCluster final : public KafkaMockCluster {
 public:
  explicit MockCluster(rd_kafka_t* rk) : rk_(rk) {}
  ~MockCluster() override { rd_kafka_destroy(rk_); }

  std::string bootstrap_servers() const override {
    return rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(rk_));
  }

  Status create_topic(const std::string& topic, int partitions) override {
    if (partitions < 1) {
      return absl::InvalidArgumentError(
          fmt::format("mock cluster: topic '{}' needs >= 1 partitions, got {}", topic, partitions));
    }
    std::lock_guard<std::mutex> lock(mu_);
    // The mock answers a metadata request for an unknown topic by creating it
    // (auto-creation), so look it up in a full listing.
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t merr = rd_kafka_metadata(rk_, 1, nullptr, &md, 5000);
    if (merr != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError("mock cluster: metadata: " + detail::err_text(merr));
    }
    detail::MetadataPtr owned(md);
    for (int i = 0; i < md->topic_cnt; ++i) {
      if (topic == md->topics[i].topic) {
        return absl::AlreadyExistsError(fmt::format("mock cluster: topic '{}' exists", topic));
      }
    }
    const rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
        rd_kafka_handle_mock_cluster(rk_), topic.c_str(), partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(
          fmt::format("mock cluster: cannot create topic '{}': {}", topic, detail::err_text(err)));
    }
    return Status();
  }

  Status produce(const std::string& topic, const std::vector<KafkaMessage>& messages) override {
    std::lock_guard<std::mutex> lock(mu_);
    failed_.store(RD_KAFKA_RESP_ERR_NO_ERROR);
    for (const KafkaMessage& m : messages) {
      for (;;) {
        const rd_kafka_resp_err_t err = rd_kafka_producev(
            rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(m.partition),
            RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
            RD_KAFKA_V_KEY(m.key.empty() ? nullptr : m.key.data(), m.key.size()),
            RD_KAFKA_V_TIMESTAMP(m.timestamp_ms == kMinTimestamp ? 0 : m.timestamp_ms),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(this), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          rd_kafka_poll(rk_, 10);  // serves delivery reports, which frees the queue
          continue;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          return absl::UnavailableError(fmt::format("mock cluster: cannot produce to '{}': {}",
                                                    topic, detail::err_text(err)));
        }
        break;
      }
      rd_kafka_poll(rk_, 0);
    }
    const rd_kafka_resp_err_t ferr = rd_kafka_flush(rk_, 60000);
    if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(fmt::format("mock cluster: producing to '{}' did not finish: {}",
                                                topic, detail::err_text(ferr)));
    }
    if (const auto failed = failed_.load(); failed != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(fmt::format("mock cluster: a message to '{}' failed: {}",
                                                topic, detail::err_text(failed)));
    }
    return Status();
  }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && m->_private != nullptr) {
      auto expected = RD_KAFKA_RESP_ERR_NO_ERROR;
      static_cast<MockCluster*>(m->_private)->failed_.compare_exchange_strong(expected, m->err);
    }
  }

 private:
  rd_kafka_t* rk_;
  std::mutex mu_;
  std::atomic<rd_kafka_resp_err_t> failed_{RD_KAFKA_RESP_ERR_NO_ERROR};
};

}  // namespace

StatusOr<std::unique_ptr<KafkaMockCluster>> KafkaMockCluster::start(int brokers) {
  if (brokers < 1 || brokers > 16) {
    return absl::InvalidArgumentError(
        fmt::format("KafkaMockCluster::start(): brokers must be in 1..16, got {}", brokers));
  }
  detail::ConfPtr conf(rd_kafka_conf_new());
  const std::string what = "KafkaMockCluster::start()";
  MS_RETURN_IF_ERROR(
      detail::set_property(conf.get(), "test.mock.num.brokers", std::to_string(brokers), what));
  MS_RETURN_IF_ERROR(detail::set_property(conf.get(), "linger.ms", "5", what));
  MS_RETURN_IF_ERROR(detail::set_property(conf.get(), "queue.buffering.max.messages", "200000", what));
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &MockCluster::on_delivery);
  char errstr[512] = {0};
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr);
  if (rk == nullptr) {
    return absl::InternalError(fmt::format("{}: {}", what, errstr));
  }
  conf.release();  // owned by rk now
  return std::unique_ptr<KafkaMockCluster>(std::make_unique<MockCluster>(rk));
}

}  // namespace meterstream
