// The Redis sink's connections, pipelines and scripts
// (include/meterstream/connectors/redis/redis_sink.hpp; docs/redis.md).
#include "meterstream/connectors/redis/redis_sink.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "fmt/format.h"
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include "meterstream/metrics/metrics.hpp"

namespace meterstream {
namespace detail {

std::string current_exception_text() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "a non-standard exception";
  }
}

namespace {

using Clock = std::chrono::steady_clock;

// KEYS[1] the key, KEYS[2] where its version is kept; ARGV[1] the field ("":
// a string key), ARGV[2] the value, ARGV[3] the version. Applied only when
// the version is larger than the stored one: 1 applied, 0 not (stale or a
// repeat). One script, so the compare and the writes are atomic.
constexpr const char* kUpsertScript = R"lua(
local v = tonumber(ARGV[3])
local cur
if ARGV[1] == '' then cur = redis.call('GET', KEYS[2]) else cur = redis.call('HGET', KEYS[2], ARGV[1]) end
if cur then
  local c = tonumber(cur)
  if c == nil then return redis.error_reply('version of ' .. KEYS[1] .. ' is not a number: ' .. cur) end
  if c >= v then return 0 end
end
if ARGV[1] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
return 1
)lua";

// KEYS[1] the alert id, KEYS[2] (optional) the stream; ARGV[1] the value,
// ARGV[2] the ttl in ms (0: none), ARGV[3...] the stream entry's fields and
// values. The entry is appended only when the id was new: 1 new, 0 repeat.
constexpr const char* kAlertScript = R"lua(
local ok
if tonumber(ARGV[2]) > 0 then
  ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
else
  ok = redis.call('SET', KEYS[1], ARGV[1], 'NX')
end
if not ok then return 0 end
if #KEYS > 1 then
  local entry = {}
  for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
  redis.call('XADD', KEYS[2], '*', unpack(entry))
end
return 1
)lua";

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

timeval to_timeval(std::chrono::milliseconds d) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(d.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
  return tv;
}

// hiredis 0.14 writes with write(2): a server that closed the connection
// would raise SIGPIPE, whose default action ends the process. While one of
// these lives, SIGPIPE is blocked on this thread, and one raised meanwhile
// is consumed before the mask is restored (the thread-directed signal of a
// write on a broken socket), so the write fails with EPIPE instead.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~SigpipeGuard() {
    if (!blocked_) return;
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
  bool blocked_ = false;
};

std::string reply_text(const redisReply* r) {
  return r->str != nullptr ? std::string(r->str, r->len) : std::string();
}

// Error replies after which the same write succeeds on a new connection:
// the server restarting (LOADING), a busy script, a script cache that was
// flushed (NOSCRIPT: a new connection loads the scripts again), a server
// out of memory or of client slots for now.
bool transient_reply(std::string_view error) {
  for (std::string_view prefix : {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "NOSCRIPT",
                                  "OOM", "ERR max number of clients"}) {
    if (error.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

// A command that is not sent again: its reply decides. `transport` says a
// failure was the connection's (retriable by reconnecting) rather than the
// server's answer.
struct CommandResult {
  Status status;
  Reply reply;
  bool transport = false;
};

CommandResult run_command(redisContext* c,
                          const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  CommandResult result;
  SigpipeGuard guard;
  void* raw = redisCommandArgv(c, static_cast<int>(args.size()), argv.data(),
                               lens.data());
  if (raw == nullptr) {
    result.transport = true;
    result.status = absl::UnavailableError(
        c->errstr[0] != '\0' ? c->errstr : "connection lost");
    return result;
  }
  result.reply.reset(static_cast<redisReply*>(raw));
  if (result.reply->type == REDIS_REPLY_ERROR) {
    const std::string text = reply_text(result.reply.get());
    result.transport = transient_reply(text);
    result.status = absl::UnknownError(text);
  }
  return result;
}

}  // namespace

class RedisSinkImpl final : public RedisSinkCore,
                            public std::enable_shared_from_this<RedisSinkImpl> {
 public:
  explicit RedisSinkImpl(RedisSinkOptions options)
      : options_(std::move(options)) {
    address_ = options_.host.find(':') != std::string::npos
                   ? "[" + options_.host + "]:" + std::to_string(options_.port)
                   : options_.host + ":" + std::to_string(options_.port);
    name_ = "redis:" + address_ +
            (options_.database != 0 ? "/" + std::to_string(options_.database)
                                    : std::string());
  }

  std::string name() const override { return name_; }
  const std::string& address() const { return address_; }
  const RedisSinkOptions& options() const { return options_; }

  Status open(const SinkContext& context) override {
    MS_RETURN_IF_ERROR(validate());
    metrics_ = context.metrics;
    // Reaches the server now, so that an address that does not answer or
    // refused credentials fail the start rather than the first record.
    MS_ASSIGN_OR_RETURN(Context c,
                        connect_until(Clock::now() + options_.connect_timeout));
    (void)c;
    return Status();
  }

  StatusOr<std::unique_ptr<RedisSinkWriterCore>> create_writer(
      int worker) override;

  // Connects, authenticates, selects the database and loads the scripts;
  // one attempt. kUnavailable for what a retry may cure.
  StatusOr<Context> connect_once() {
    SigpipeGuard guard;
    Context c(redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                      to_timeval(options_.connect_timeout)));
    if (c == nullptr)
      return absl::ResourceExhaustedError(name_ +
                                          ": cannot allocate a context");
    if (c->err != 0) {
      return absl::UnavailableError(fmt::format("{}: cannot connect to {}: {}",
                                                name_, address_, c->errstr));
    }
    if (redisSetTimeout(c.get(), to_timeval(options_.command_timeout)) !=
        REDIS_OK) {
      return absl::UnavailableError(fmt::format(
          "{}: cannot set the timeout on {}: {}", name_, address_, c->errstr));
    }
    redisEnableKeepAlive(c.get());
    if (!options_.password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!options_.user.empty()) auth.push_back(options_.user);
      auth.push_back(options_.password);
      CommandResult r = run_command(c.get(), auth);
      if (!r.status.ok()) {
        // Redis's messages (WRONGPASS ...) do not repeat the password.
        const std::string msg =
            fmt::format("{}: AUTH{} refused by {}: {}", name_,
                        options_.user.empty() ? "" : " as " + options_.user,
                        address_, std::string(r.status.message()));
        return r.transport ? absl::UnavailableError(msg)
                           : absl::PermissionDeniedError(msg);
      }
    }
    if (options_.database != 0) {
      CommandResult r =
          run_command(c.get(), {"SELECT", std::to_string(options_.database)});
      if (!r.status.ok()) {
        const std::string msg =
            fmt::format("{}: SELECT {} on {}: {}", name_, options_.database,
                        address_, std::string(r.status.message()));
        if (r.status.message().rfind("NOAUTH", 0) == 0)
          return absl::PermissionDeniedError(msg);
        return r.transport ? absl::UnavailableError(msg)
                           : absl::InvalidArgumentError(msg);
      }
    }
    for (auto [script, sha] : {std::pair{kUpsertScript, &upsert_sha_},
                               std::pair{kAlertScript, &alert_sha_}}) {
      CommandResult r = run_command(c.get(), {"SCRIPT", "LOAD", script});
      if (!r.status.ok() || r.reply->type != REDIS_REPLY_STRING) {
        const std::string msg =
            fmt::format("{}: SCRIPT LOAD on {}: {}", name_, address_,
                        r.status.ok() ? std::string("unexpected reply")
                                      : std::string(r.status.message()));
        if (r.status.message().rfind("NOAUTH", 0) == 0)
          return absl::PermissionDeniedError(msg);
        return r.transport ? absl::UnavailableError(msg)
                           : absl::FailedPreconditionError(msg);
      }
      // Written once per connection with the same value (the script's SHA-1):
      // every writer reads it only after its own connect.
      std::lock_guard<std::mutex> lock(mu_);
      *sha = reply_text(r.reply.get());
    }
    return c;
  }

  // connect_once() until it succeeds, fails for good, or `deadline` passes
  // (then its last kUnavailable, with how long it tried).
  StatusOr<Context> connect_until(Clock::time_point deadline) {
    auto backoff = options_.reconnect_backoff_initial;
    const auto start = Clock::now();
    for (;;) {
      StatusOr<Context> c = connect_once();
      if (c.ok() || c.status().code() != absl::StatusCode::kUnavailable)
        return c;
      const auto now = Clock::now();
      if (now + backoff > deadline) {
        const auto tried =
            std::chrono::duration_cast<std::chrono::milliseconds>(now - start)
                .count();
        return absl::UnavailableError(
            fmt::format("{} (no answer for {} ms)",
                        std::string(c.status().message()), tried));
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, options_.reconnect_backoff_max);
    }
  }

  std::string upsert_sha() const {
    std::lock_guard<std::mutex> lock(mu_);
    return upsert_sha_;
  }
  std::string alert_sha() const {
    std::lock_guard<std::mutex> lock(mu_);
    return alert_sha_;
  }

  // Each writer registers counters of its own (a Counter has one writing
  // thread); the registry sums them. Null without metrics.
  MetricRegistry* metrics_ = nullptr;

 private:
  Status validate() const {
    auto bad = [this](const std::string& what) {
      return absl::InvalidArgumentError(name_ + ": RedisSinkOptions::" + what);
    };
    if (options_.tls || !options_.tls_ca_file.empty() ||
        !options_.tls_cert_file.empty() || !options_.tls_key_file.empty() ||
        !options_.tls_server_name.empty()) {
      return absl::UnimplementedError(fmt::format(
          "{}: TLS was asked for (RedisSinkOptions::tls or tls_*), but this "
          "build uses "
          "hiredis {}.{}.{}, which has no TLS support (hiredis 1.0 with "
          "hiredis_ssl adds it); "
          "connect through a TLS tunnel (e.g. stunnel) on loopback instead",
          name_, HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH));
    }
    if (options_.host.empty()) return bad("host is empty");
    if (options_.port < 1 || options_.port > 65535) {
      return bad("port must be in 1..65535, got " +
                 std::to_string(options_.port));
    }
    if (options_.database < 0) {
      return bad("database must be >= 0, got " +
                 std::to_string(options_.database));
    }
    if (!options_.user.empty() && options_.password.empty()) {
      return bad("user '" + options_.user + "' needs a password");
    }
    if (options_.max_in_flight < 1)
      return bad("max_in_flight must be at least 1");
    if (options_.connect_timeout.count() <= 0)
      return bad("connect_timeout must be > 0");
    if (options_.command_timeout.count() <= 0)
      return bad("command_timeout must be > 0");
    if (options_.reconnect_backoff_initial.count() <= 0 ||
        options_.reconnect_backoff_max < options_.reconnect_backoff_initial) {
      return bad(
          "reconnect_backoff_initial must be > 0 and <= reconnect_backoff_max");
    }
    if (options_.max_outage.count() < 0) return bad("max_outage must be >= 0");
    if (options_.version_suffix.empty()) {
      return bad(
          "version_suffix is empty (the version would overwrite the value)");
    }
    return Status();
  }

  RedisSinkOptions options_;
  std::string address_;
  std::string name_;
  mutable std::mutex mu_;
  std::string upsert_sha_;
  std::string alert_sha_;
};

namespace {

// One worker's pipeline: every write is appended to the connection and kept
// in `pending_` until its reply came, so that after a lost connection every
// unconfirmed write is sent again, in order, on the new one (the scripts are
// idempotent, so a write that was applied before the loss is harmless).
class RedisWriter final : public RedisSinkWriterCore {
 public:
  RedisWriter(std::shared_ptr<RedisSinkImpl> sink, Context c, int worker)
      : sink_(std::move(sink)), c_(std::move(c)), worker_(worker) {
    upsert_sha_ = sink_->upsert_sha();
    alert_sha_ = sink_->alert_sha();
    if (MetricRegistry* m = sink_->metrics_; m != nullptr) {
      writes_ = m->counter("redis_sink_writes");
      stale_ = m->counter("redis_sink_stale_upserts");
      duplicates_ = m->counter("redis_sink_duplicate_alerts");
      reconnects_ = m->counter("redis_sink_reconnects");
    }
  }

  ~RedisWriter() override = default;

  Status upsert(const RedisUpsert& u) override {
    if (u.key.empty()) return invalid("an upsert with an empty key");
    if (u.version < 0 || u.version >= (std::int64_t{1} << 53)) {
      return invalid(fmt::format("upsert of '{}': version {} outside 0..2^53-1",
                                 u.key, u.version));
    }
    Pending p;
    p.kind = Kind::kUpsert;
    p.key = u.key;
    p.args = {"EVALSHA",
              upsert_sha_,
              "2",
              u.key,
              u.key + sink_->options().version_suffix,
              u.field,
              u.value,
              std::to_string(u.version)};
    return submit(std::move(p));
  }

  Status alert(const RedisAlert& a) override {
    if (a.key.empty()) return invalid("an alert with an empty key");
    if (a.ttl.count() < 0)
      return invalid("alert '" + a.key + "': negative ttl");
    Pending p;
    p.kind = Kind::kAlert;
    p.key = a.key;
    p.args = {"EVALSHA", alert_sha_, a.stream.empty() ? "1" : "2", a.key};
    if (!a.stream.empty()) p.args.push_back(a.stream);
    p.args.push_back(a.value);
    p.args.push_back(std::to_string(a.ttl.count()));
    if (!a.stream.empty()) {
      if (a.fields.empty()) {
        p.args.insert(p.args.end(), {"id", a.key, "value", a.value});
      }
      for (const auto& [f, v] : a.fields) {
        p.args.push_back(f);
        p.args.push_back(v);
      }
    }
    return submit(std::move(p));
  }

  Status flush() override {
    MS_RETURN_IF_ERROR(failed_);
    for (;;) {
      if (c_ == nullptr) MS_RETURN_IF_ERROR(reconnect("not connected"));
      int done = 0;
      bool ok = true;
      {
        SigpipeGuard guard;
        while (!done) {
          if (redisBufferWrite(c_.get(), &done) != REDIS_OK) {
            ok = false;
            break;
          }
        }
      }
      if (ok) return Status();
      MS_RETURN_IF_ERROR(reconnect(c_->errstr));
    }
  }

  Status confirm_all() override {
    MS_RETURN_IF_ERROR(failed_);
    while (!pending_.empty()) MS_RETURN_IF_ERROR(read_one());
    return Status();
  }

  Status close() override {
    Status s = confirm_all();
    c_.reset();
    return s;
  }

 private:
  enum class Kind { kUpsert, kAlert };
  struct Pending {
    Kind kind = Kind::kUpsert;
    std::string key;
    std::vector<std::string> args;
  };

  Status invalid(const std::string& what) {
    return absl::InvalidArgumentError(sink_->name() +
                                      ": the formatter returned " + what);
  }

  Status append(const Pending& p) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(p.args.size());
    lens.reserve(p.args.size());
    for (const std::string& a : p.args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c_.get(), static_cast<int>(argv.size()),
                               argv.data(), lens.data()) != REDIS_OK) {
      return absl::ResourceExhaustedError(
          sink_->name() + ": cannot buffer a command for '" + p.key + "'");
    }
    return Status();
  }

  Status submit(Pending p) {
    MS_RETURN_IF_ERROR(failed_);
    if (c_ == nullptr) MS_RETURN_IF_ERROR(reconnect("not connected"));
    if (Status s = append(p); !s.ok()) return fail(s);
    pending_.push_back(std::move(p));
    while (pending_.size() > sink_->options().max_in_flight)
      MS_RETURN_IF_ERROR(read_one());
    return Status();
  }

  // Reads the reply of the oldest unconfirmed write (sending what is
  // buffered first), reconnecting and sending again when the connection is
  // lost.
  Status read_one() {
    for (;;) {
      if (c_ == nullptr) MS_RETURN_IF_ERROR(reconnect("not connected"));
      void* raw = nullptr;
      int rc = 0;
      {
        SigpipeGuard guard;
        rc = redisGetReply(c_.get(), &raw);
      }
      if (rc != REDIS_OK || raw == nullptr) {
        MS_RETURN_IF_ERROR(
            reconnect(c_->errstr[0] != '\0' ? c_->errstr : "connection lost"));
        continue;
      }
      Reply reply(static_cast<redisReply*>(raw));
      const Pending& p = pending_.front();
      if (reply->type == REDIS_REPLY_ERROR) {
        const std::string text = reply_text(reply.get());
        if (transient_reply(text)) {
          MS_RETURN_IF_ERROR(reconnect(text));
          continue;
        }
        return fail(absl::FailedPreconditionError(fmt::format(
            "{}: Redis refused the {} of '{}': {}", sink_->name(),
            p.kind == Kind::kUpsert ? "upsert" : "alert", p.key, text)));
      }
      outage_start_.reset();
      if (writes_ != nullptr) writes_->add();
      if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        Counter* c = p.kind == Kind::kUpsert ? stale_ : duplicates_;
        if (c != nullptr) c->add();
      }
      pending_.pop_front();
      return Status();
    }
  }

  // Drops the connection and opens a new one, with backoff, then sends every
  // unconfirmed write again. After max_outage without success: kUnavailable.
  Status reconnect(const std::string& why) {
    c_.reset();
    const auto& o = sink_->options();
    if (!outage_start_) {
      outage_start_ = Clock::now();
      first_error_ = why;
      backoff_ = o.reconnect_backoff_initial;
    }
    for (;;) {
      std::this_thread::sleep_for(backoff_);
      backoff_ = std::min(backoff_ * 2, o.reconnect_backoff_max);
      if (reconnects_ != nullptr) reconnects_->add();
      StatusOr<Context> c = sink_->connect_once();
      if (c.ok()) {
        c_ = *std::move(c);
        upsert_sha_ = sink_->upsert_sha();
        alert_sha_ = sink_->alert_sha();
        for (Pending& p : pending_) {
          p.args[1] = p.kind == Kind::kUpsert ? upsert_sha_ : alert_sha_;
          if (Status s = append(p); !s.ok()) return fail(s);
        }
        return Status();
      }
      if (c.status().code() != absl::StatusCode::kUnavailable) {
        // The server answers but refuses us (credentials changed while
        // the job ran): no retry cures that.
        return fail(Status(
            c.status().code(),
            fmt::format("{}: writer {} reconnecting to {} after \"{}\": {}",
                        sink_->name(), worker_, sink_->address(), first_error_,
                        std::string(c.status().message()))));
      }
      const auto down = Clock::now() - *outage_start_;
      if (down >= o.max_outage) {
        return fail(absl::UnavailableError(
            fmt::format("{}: writer {} lost its connection to {} ({}) and "
                        "could not reconnect within "
                        "max_outage ({} ms), {} writes unconfirmed: {}",
                        sink_->name(), worker_, sink_->address(), first_error_,
                        o.max_outage.count(), pending_.size(),
                        std::string(c.status().message()))));
      }
    }
  }

  // Remembers the first fatal error: every later call returns it.
  Status fail(Status s) {
    if (failed_.ok()) failed_ = s;
    c_.reset();
    return failed_;
  }

  std::shared_ptr<RedisSinkImpl> sink_;
  Context c_;
  int worker_;
  std::string upsert_sha_;
  std::string alert_sha_;
  std::deque<Pending> pending_;
  Status failed_;
  std::optional<Clock::time_point> outage_start_;
  std::string first_error_;
  std::chrono::milliseconds backoff_{0};
  Counter* writes_ = nullptr;
  Counter* stale_ = nullptr;
  Counter* duplicates_ = nullptr;
  Counter* reconnects_ = nullptr;
};

}  // namespace

StatusOr<std::unique_ptr<RedisSinkWriterCore>> RedisSinkImpl::create_writer(
    int worker) {
  MS_ASSIGN_OR_RETURN(Context c,
                      connect_until(Clock::now() + options_.connect_timeout));
  return std::unique_ptr<RedisSinkWriterCore>(
      std::make_unique<RedisWriter>(shared_from_this(), std::move(c), worker));
}

std::shared_ptr<RedisSinkCore> RedisSinkCore::create(RedisSinkOptions options) {
  return std::make_shared<RedisSinkImpl>(std::move(options));
}

}  // namespace detail
}  // namespace meterstream
