// A moto_server (the S3 mock) started by a test on a free loopback port, for
// the tests that need a server of their own: one with IAM auth enforced, one
// that is stopped while a job uses it. Tests that only need some S3 use the
// shared one at MS_S3_ENDPOINT.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

namespace meterstream::test {

inline sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

// A port that was free a moment ago (nothing listens on it afterwards).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = loopback(0);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline bool port_answers(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = loopback(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// A moto_server child process on a free loopback port, stopped on
// destruction. Its output goes to <build>/moto-<what>-<port>.log.
class MotoServer {
 public:
  explicit MotoServer(const std::string& what = "test") : port_(free_port()) {
    using namespace std::chrono_literals;
    log_ = (std::filesystem::path(MS_BINARY_DIR) /
            ("moto-" + what + "-" + std::to_string(port_) + ".log"))
               .string();
    const std::string port = std::to_string(port_);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execlp("moto_server", "moto_server", "-H", "127.0.0.1", "-p", port.c_str(),
               static_cast<char*>(nullptr));
      ::execlp("python3", "python3", "-m", "moto.server", "-H", "127.0.0.1", "-p",
               port.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!port_answers(port_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        std::ifstream in(log_);
        FAIL("moto_server exited at start (install it with scripts/deps.sh --test); log: " +
             std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
      }
      if (std::chrono::steady_clock::now() > deadline) FAIL("moto_server did not start in 60 s");
      std::this_thread::sleep_for(100ms);
    }
  }
  ~MotoServer() { stop(); }
  MotoServer(const MotoServer&) = delete;
  MotoServer& operator=(const MotoServer&) = delete;

  // Stops the server (SIGTERM) and waits for it; its port stops answering.
  void stop() { stop_with(SIGTERM); }
  // Kills the server (SIGKILL) at once, as a crash would.
  void kill() { stop_with(SIGKILL); }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void stop_with(int signal) {
    if (pid_ > 0) {
      ::kill(pid_, signal);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  int port_;
  pid_t pid_ = -1;
  std::string log_;
};

}  // namespace meterstream::test
