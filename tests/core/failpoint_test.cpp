// Fault injection (src/core/failpoint.hpp) exists only in builds configured
// with MS_FAULT_INJECTION=ON: elsewhere MS_CHECKPOINT_KILL_AT is ignored.
#include "src/core/failpoint.hpp"

#include <cstdlib>

#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

namespace {

// Runs this test executable again, with MS_CHECKPOINT_KILL_AT=`spec`, on the
// hidden case below; returns its wait status.
int run_child(const char* spec) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setenv("MS_CHECKPOINT_KILL_AT", spec, 1);
    char exe[] = "/proc/self/exe";
    char name[] = "failpoint child: passes test-point twice";
    char quiet[] = "--out=/dev/null";
    char* argv[] = {exe, name, quiet, nullptr};
    ::execv(exe, argv);
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return status;
}

}  // namespace

TEST_CASE("failpoint child: passes test-point twice", "[.]") {
  meterstream::detail::failpoint("test-point");
  meterstream::detail::failpoint("test-point");
}

TEST_CASE(
    "fault injection is compiled in exactly when MS_FAULT_INJECTION is ON",
    "[core]") {
  CHECK(meterstream::detail::fault_injection_enabled() ==
        bool(MS_FAULT_INJECTION_CONFIGURED));
}

TEST_CASE("MS_CHECKPOINT_KILL_AT kills only in a fault injection build",
          "[core]") {
  // Another point, or a count not reached: never a kill.
  int status = run_child("other-point:1");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  status = run_child("test-point:3");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  status = run_child("test-point:2");
  if (meterstream::detail::fault_injection_enabled()) {
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
  } else {
    // A build that ships: the variable is ignored.
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
}
