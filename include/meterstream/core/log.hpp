// Log messages of a job: failures it survives and progress (a checkpoint that
// failed and will be retried, a restore that skipped a checkpoint, a
// restart). Errors that end a job are not logged: Job::run() returns them.
//
// A job hands every message to JobOptions::log; the library never writes to
// stderr on its own (except the fault injection of test builds, just before
// the SIGKILL it was asked for; librdkafka's own log goes to its default).
//
// Thread-safety: a LogFunction is called from the job's threads (workers, the
// checkpoint coordinator, the thread in Job::wait()), possibly concurrently:
// it must be thread-safe. It must not throw (an exception is dropped).
#pragma once

#include <functional>
#include <string_view>

namespace meterstream {

enum class LogLevel {
  kInfo,     // progress: what a restore chose, a restart
  kWarning,  // a failure the job survives: a failed checkpoint, retention
  kError,    // a failure that needs attention, although the job goes on
};

// "info", "warning", "error".
const char* to_string(LogLevel level);

// Receives one message: a sentence without a trailing newline, naming what
// failed and with which input.
using LogFunction = std::function<void(LogLevel level, std::string_view message)>;

// Writes "meterstream: <message>\n" to stderr in one write. The default of
// JobOptions::log.
void log_to_stderr(LogLevel level, std::string_view message);

namespace detail {
// Calls `log` (when set), dropping what it throws: a log hook must not take
// a job, a restart or a library thread down. Not API.
void call_log(const LogFunction& log, LogLevel level, std::string_view message);
}  // namespace detail

}  // namespace meterstream
