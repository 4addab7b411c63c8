// Fault injection for crash tests. Not API.
//
// failpoint("<point>") marks a place where a crash test may kill the process:
// with MS_CHECKPOINT_KILL_AT="<point>:<n>" in the environment, the n-th call
// (counted over the process, default 1) with that point sends SIGKILL to the
// process itself. Points so far: "snapshot", "upload", "metadata", "commit",
// "committed", "retention" (src/checkpoint/coordinator.cpp, complete.cpp) and
// "kafka-commit" (inside the Kafka sink's transaction commit).
//
// Only builds configured with the CMake option MS_FAULT_INJECTION=ON (the
// dev, asan, tsan and tidy presets) contain this; elsewhere (the default, the
// release preset, installed libraries) failpoint() does nothing and the
// variable is never read, so no environment can make a production process
// kill itself.
//
// Thread-safety: failpoint() may be called from any thread.
#pragma once

namespace meterstream::detail {

// Whether this build of the library was configured with MS_FAULT_INJECTION=ON.
bool fault_injection_enabled();

// Kills the process when MS_CHECKPOINT_KILL_AT names `point` and this is its
// n-th call (fault injection builds only; a no-op elsewhere).
void failpoint(const char* point);

}  // namespace meterstream::detail
