// The Redis sink: records of a stream as idempotent writes to one Redis
// server (docs/redis.md).
//
// redis_sink<T>(options, formatter) turns every record into a write with
// formatter(const T&), which returns one of:
//   - RedisUpsert: a versioned upsert, for hot aggregates (a window's
//     result, updated by late records). A server-side script stores the
//     value only when its version is larger than the one stored with it,
//     so a result written twice leaves the same state and an older update
//     never overwrites a newer one, in whatever order the writes arrive and
//     across restarts from a checkpoint.
//   - RedisAlert: an alert under an idempotent id: the key `key` is set
//     only when it does not exist (SET NX), and only then is the alert
//     appended to `stream` (XADD, in the same script): a replay after a
//     crash writes no second alert.
//
// Delivery: writes are pipelined, at most RedisSinkOptions::max_in_flight
// unconfirmed per writer (one connection per worker). At each checkpoint
// barrier, and at the end of input, the writer waits until Redis confirmed
// every write before it, so a checkpoint completes only after all writes
// it covers are in Redis. After a restore the job replays the records
// since the checkpoint and writes them again: at-least-once writes made
// idempotent, which gives effectively exactly-once state in Redis.
//
// Failures: a lost connection (Redis restarting) is reopened with
// exponential backoff, and every unconfirmed write is sent again; after
// `max_outage` without a working connection the job fails with
// kUnavailable naming the sink and the address (JobOptions::restart then
// restarts it). A Redis error reply (a key of another type, a failed
// script) fails the job with Redis's message and the key. An exception
// thrown by the formatter fails the job with kInternal naming the sink;
// nothing is thrown out of the sink.
//
// Errors at start (Job::start(), through SinkBase::open()): bad options
// (kInvalidArgument naming the option), TLS options (kUnimplemented: the
// hiredis this library is built with, Debian 12's 0.14, has no TLS), an
// address that does not answer within connect_timeout (kUnavailable),
// refused credentials (kPermissionDenied) or database (kInvalidArgument).
// Errors never contain the password.
//
// Metrics (Job::metrics()): redis_sink_writes (confirmed writes),
// redis_sink_stale_upserts (upserts not applied: the stored version was
// the same or newer), redis_sink_duplicate_alerts (alerts whose id
// existed), redis_sink_reconnects.
//
// Thread-safety: as Sink; each worker's writer has its own connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/runtime/operator.hpp"

namespace meterstream {

struct RedisSinkOptions {
  // The server's host name or IPv4/IPv6 address.
  // Default: "127.0.0.1".
  std::string host = "127.0.0.1";

  // Default: 6379.
  int port = 6379;

  // AUTH: with `password` alone, AUTH <password>; with both, the ACL user's
  // AUTH <user> <password> (Redis 6 and later).
  // Default: "" (no AUTH).
  std::string user;
  // Default: "".
  std::string password;

  // SELECT <database> after connecting, 0 to 15 on a default server.
  // Default: 0.
  int database = 0;

  // TLS. Refused by open() with kUnimplemented in this build: Debian 12's
  // hiredis (0.14) has no TLS support. Set `tls` or any of the files to
  // ask for it; they are passed through once hiredis with TLS is used.
  // Default: false, "".
  bool tls = false;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;

  // How long open() tries to reach the server (connect, AUTH, SELECT, the
  // scripts loaded) before the start fails with kUnavailable; also the
  // timeout of one connection attempt.
  // Default: 5 s.
  std::chrono::milliseconds connect_timeout{5000};

  // How long a writer waits for a reply before it treats the connection as
  // lost (and reconnects).
  // Default: 10 s.
  std::chrono::milliseconds command_timeout{10000};

  // Unconfirmed writes per writer; the worker waits for replies beyond it.
  // At least 1.
  // Default: 1000.
  std::size_t max_in_flight = 1000;

  // The backoff between reconnection attempts: starts at the first value,
  // doubles after each failed attempt, up to the second.
  // Default: 50 ms, 2 s.
  std::chrono::milliseconds reconnect_backoff_initial{50};
  std::chrono::milliseconds reconnect_backoff_max{2000};

  // How long a writer tries to reconnect before the job fails with
  // kUnavailable.
  // Default: 60 s.
  std::chrono::milliseconds max_outage{60000};

  // Where an upsert keeps its version: a hash field's version is field
  // `field` of hash `key + version_suffix`; a string key's, the string key
  // `key + version_suffix`.
  // Default: ":version".
  std::string version_suffix = ":version";
};

// A versioned upsert (see the file comment). With `field` empty, `key` is a
// string key set to `value`; otherwise `key` is a hash whose field `field`
// is set to `value`. `version` orders the updates of one key (and field):
// the write is applied only when it is larger than the stored version, e.g.
// the number of records in a window result, or an update counter. Versions
// are compared as Lua numbers: 0 <= version < 2^53.
struct RedisUpsert {
  std::string key;
  std::string field;
  std::string value;
  std::int64_t version = 0;
};

// An alert under the idempotent id `key` (see the file comment): SET key
// value NX (with a time to live when `ttl` > 0), and when the key was new,
// XADD stream * field value ... of `fields` (when `stream` is not empty).
// The id must be deterministic (e.g. "alert:<meter>:<seq>"), so that a
// replay finds it. With a `ttl`, a replay later than the ttl alerts again.
struct RedisAlert {
  std::string key;
  std::string value = "1";
  std::string stream;
  std::vector<std::pair<std::string, std::string>> fields;
  std::chrono::milliseconds ttl{0};
};

namespace detail {

// One worker's connection and pipeline. Compiled in src/.
class RedisSinkWriterCore {
 public:
  virtual ~RedisSinkWriterCore() = default;
  virtual Status upsert(const RedisUpsert& u) = 0;
  virtual Status alert(const RedisAlert& a) = 0;
  // Sends what is buffered, without waiting for replies.
  virtual Status flush() = 0;
  // Waits until every write so far is confirmed.
  virtual Status confirm_all() = 0;
  virtual Status close() = 0;
};

// The type-independent part of redis_sink(). Compiled in src/.
class RedisSinkCore : public SinkBase {
 public:
  static std::shared_ptr<RedisSinkCore> create(RedisSinkOptions options);
  virtual StatusOr<std::unique_ptr<RedisSinkWriterCore>> create_writer(
      int worker) = 0;
};

// "what(): " of the current exception, for a formatter that threw.
std::string current_exception_text();

template <typename T, typename Formatter>
class RedisSink final : public Sink<T> {
 public:
  RedisSink(RedisSinkOptions options, Formatter formatter)
      : core_(RedisSinkCore::create(std::move(options))),
        formatter_(std::move(formatter)) {}

  std::string name() const override { return core_->name(); }
  Status open(const SinkContext& context) override {
    return core_->open(context);
  }
  void close() override { core_->close(); }

  StatusOr<std::unique_ptr<SinkWriter<T>>> create_writer(int worker,
                                                         int) override {
    MS_ASSIGN_OR_RETURN(auto core, core_->create_writer(worker));
    return std::unique_ptr<SinkWriter<T>>(
        std::make_unique<Writer>(std::move(core), formatter_, core_->name()));
  }

 private:
  using Result = std::decay_t<std::invoke_result_t<Formatter&, const T&>>;
  static_assert(
      std::is_same_v<Result, RedisUpsert> || std::is_same_v<Result, RedisAlert>,
      "redis_sink(): the formatter must return RedisUpsert or RedisAlert");

  class Writer final : public SinkWriter<T> {
   public:
    Writer(std::unique_ptr<RedisSinkWriterCore> core, Formatter formatter,
           std::string name)
        : core_(std::move(core)),
          formatter_(std::move(formatter)),
          name_(std::move(name)) {}

    Status write(const RecordBatch<T>& batch) override {
      for (const T& v : batch.values) {
        Result w;
        try {
          w = formatter_(v);
        } catch (...) {
          return absl::InternalError(
              name_ + ": the formatter threw: " + current_exception_text());
        }
        if constexpr (std::is_same_v<Result, RedisUpsert>) {
          MS_RETURN_IF_ERROR(core_->upsert(w));
        } else {
          MS_RETURN_IF_ERROR(core_->alert(w));
        }
      }
      return core_->flush();
    }
    // Nothing is staged: the barrier waits for Redis to confirm every write.
    StatusOr<std::string> prepare_commit(std::int64_t) override {
      MS_RETURN_IF_ERROR(core_->confirm_all());
      return std::string();
    }
    Status close() override { return core_->close(); }

   private:
    std::unique_ptr<RedisSinkWriterCore> core_;
    Formatter formatter_;
    std::string name_;
  };

  std::shared_ptr<RedisSinkCore> core_;
  Formatter formatter_;
};

}  // namespace detail

// A sink writing formatter(const T&) (a RedisUpsert or a RedisAlert) to the
// Redis server of `options` (see the file comment).
//
// Example:
//   ms::RedisSinkOptions redis;
//   redis.host = "127.0.0.1";
//   redis.port = 6379;
//   windows.sink(ms::redis_sink<Usage>(redis, [](const Usage& u) {
//     return ms::RedisUpsert{"usage:" + std::to_string(u.meter_id),
//                            std::to_string(u.start), std::to_string(u.wh),
//                            static_cast<std::int64_t>(u.count)};
//   }));
template <typename T, typename Formatter>
std::shared_ptr<Sink<T>> redis_sink(RedisSinkOptions options,
                                    Formatter formatter) {
  return std::make_shared<detail::RedisSink<T, Formatter>>(
      std::move(options), std::move(formatter));
}

}  // namespace meterstream
