// Redis for the e2e tests: the shared server that scripts/test.sh starts
// (MS_REDIS_HOST, MS_REDIS_PORT), servers a test starts, kills and restarts
// itself, and a hiredis connection of the test's own, to read what the
// Redis sink wrote independently of the sink.
//
// The helpers fail the current test (Catch2 REQUIRE/FAIL) on any error.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace meterstream::test {

struct RedisAddress {
  std::string host;
  int port = 0;
};

// The shared server's address; fails the test, saying how to start one,
// when MS_REDIS_HOST / MS_REDIS_PORT are not set.
inline RedisAddress shared_redis() {
  const char* host = std::getenv("MS_REDIS_HOST");
  const char* port = std::getenv("MS_REDIS_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    FAIL(
        "MS_REDIS_HOST / MS_REDIS_PORT are not set. Run the tests with "
        "scripts/test.sh, or "
        "start a server: `redis-server --port 6390 --save '' --appendonly no "
        "--daemonize yes` "
        "and `export MS_REDIS_HOST=127.0.0.1 MS_REDIS_PORT=6390`");
  }
  return RedisAddress{host, std::atoi(port)};
}

// "ms-<what>-<pid>-<random>-<n>:": a key prefix no other test of this run, nor
// of an earlier run on the same server, uses.
inline std::string unique_redis_prefix(const std::string& what) {
  static std::atomic<int> n{0};
  static const std::uint32_t run = std::random_device{}();
  return "ms-" + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(run) + "-" + std::to_string(n++) + ":";
}

// A loopback TCP port that was free a moment ago.
inline int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct RedisReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

// A plain hiredis connection (no pipelining, no retries).
class RedisClient {
 public:
  explicit RedisClient(const RedisAddress& a,
                       const std::string& password = "") {
    timeval tv{5, 0};
    c_ = redisConnectWithTimeout(a.host.c_str(), a.port, tv);
    REQUIRE(c_ != nullptr);
    INFO("connecting to " << a.host << ":" << a.port << ": " << c_->errstr);
    REQUIRE(c_->err == 0);
    redisSetTimeout(c_, tv);
    if (!password.empty()) REQUIRE(str({"AUTH", password}) == "OK");
  }
  ~RedisClient() { redisFree(c_); }
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Runs a command; fails the test on a lost connection (not on an error
  // reply).
  RedisReplyPtr command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& s : args) {
      argv.push_back(s.data());
      lens.push_back(s.size());
    }
    void* r = redisCommandArgv(c_, static_cast<int>(args.size()), argv.data(),
                               lens.data());
    INFO("redis command " << args.front() << ": " << c_->errstr);
    REQUIRE(r != nullptr);
    return RedisReplyPtr(static_cast<redisReply*>(r));
  }
  // A status, string or error reply as text; nil as "(nil)"; an integer in
  // decimal.
  std::string str(const std::vector<std::string>& args) {
    RedisReplyPtr r = command(args);
    if (r->type == REDIS_REPLY_NIL) return "(nil)";
    if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
    return std::string(r->str, r->len);
  }
  long long integer(const std::vector<std::string>& args) {
    RedisReplyPtr r = command(args);
    INFO(
        "reply type " << r->type
                      << (r->str ? std::string(": ") + r->str : std::string()));
    REQUIRE(r->type == REDIS_REPLY_INTEGER);
    return r->integer;
  }

  // Every key starting with `prefix`, the prefix cut off, with its content as
  // text: a string's value; a hash's fields "f=v" sorted, one a line; a
  // stream's entries (their ids left out: a replay would give new ones)
  // as "f=v,f=v", sorted, one a line. Two runs' dumps compare whole.
  std::map<std::string, std::string> dump(const std::string& prefix) {
    std::map<std::string, std::string> out;
    std::string cursor = "0";
    do {
      RedisReplyPtr r =
          command({"SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"});
      REQUIRE(r->type == REDIS_REPLY_ARRAY);
      REQUIRE(r->elements == 2);
      cursor.assign(r->element[0]->str, r->element[0]->len);
      for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
        const redisReply* k = r->element[1]->element[i];
        const std::string key(k->str, k->len);
        out[key.substr(prefix.size())] = content(key);
      }
    } while (cursor != "0");
    return out;
  }

 private:
  static std::string text(const redisReply* r) {
    return std::string(r->str, r->len);
  }

  std::string content(const std::string& key) {
    const std::string type = str({"TYPE", key});
    std::vector<std::string> lines;
    if (type == "string") return "string " + str({"GET", key});
    if (type == "hash") {
      RedisReplyPtr r = command({"HGETALL", key});
      for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
        lines.push_back(text(r->element[i]) + "=" + text(r->element[i + 1]));
      }
    } else if (type == "stream") {
      RedisReplyPtr r = command({"XRANGE", key, "-", "+"});
      for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* fields = r->element[i]->element[1];
        std::string line;
        for (std::size_t j = 0; j + 1 < fields->elements; j += 2) {
          if (!line.empty()) line += ",";
          line += text(fields->element[j]) + "=" + text(fields->element[j + 1]);
        }
        lines.push_back(line);
      }
    } else {
      FAIL("unexpected type " << type << " of " << key);
    }
    std::sort(lines.begin(), lines.end());
    std::string s = type;
    for (const auto& l : lines) s += "\n" + l;
    return s;
  }

  redisContext* c_ = nullptr;
};

// A redis-server of the test's own on a free loopback port, in `dir`, with
// every write fsynced to its append-only file before Redis confirms it
// (--appendfsync always), so that a confirmed write survives kill(). Stopped
// by the destructor.
class OwnRedisServer {
 public:
  explicit OwnRedisServer(std::string dir, std::vector<std::string> extra = {})
      : dir_(std::move(dir)),
        extra_(std::move(extra)),
        port_(free_loopback_port()) {
    start();
  }
  ~OwnRedisServer() { kill(); }
  OwnRedisServer(const OwnRedisServer&) = delete;
  OwnRedisServer& operator=(const OwnRedisServer&) = delete;

  RedisAddress address() const { return RedisAddress{"127.0.0.1", port_}; }

  // Starts the server (again, on the same port and files) and waits until it
  // answers.
  void start() {
    REQUIRE(pid_ <= 0);
    std::vector<std::string> args = {"redis-server",
                                     "--bind",
                                     "127.0.0.1",
                                     "--port",
                                     std::to_string(port_),
                                     "--dir",
                                     dir_,
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "yes",
                                     "--appendfsync",
                                     "always",
                                     "--daemonize",
                                     "no",
                                     "--logfile",
                                     dir_ + "/redis.log"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      timeval tv{1, 0};
      redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
      bool up = false;
      if (c != nullptr && c->err == 0) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
        // PONG, or NOAUTH from a server with a password: either way it answers.
        up = r != nullptr &&
             (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR) &&
             std::string(r->str, r->len).rfind("LOADING", 0) != 0;
        if (r != nullptr) freeReplyObject(r);
      }
      if (c != nullptr) redisFree(c);
      if (up) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("redis-server exited at start (is it installed? see "
             << dir_ << "/redis.log)");
      }
      if (std::chrono::steady_clock::now() > deadline)
        FAIL("redis-server did not answer in 30 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // SIGKILL, and waits for the process to be gone.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  std::string dir_;
  std::vector<std::string> extra_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace meterstream::test
