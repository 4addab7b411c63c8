// Status and StatusOr: the error type of every meterstream API.
//
// They are aliases of absl::Status / absl::StatusOr<T>. No meterstream API throws
// across its boundary; user callbacks may throw, and the runtime turns what they
// throw into a Status that Job::run() returns (kInternal with the message).
//
// Thread-safety: value types; a const Status may be read from any thread.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meterstream {

using Status = absl::Status;
template <typename T>
using StatusOr = absl::StatusOr<T>;
// The codes of a Status (kUnavailable, kAborted, ...).
using StatusCode = absl::StatusCode;

}  // namespace meterstream

#define MS_STATUS_CONCAT_INNER_(a, b) a##b
#define MS_STATUS_CONCAT_(a, b) MS_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function when `expr` (a Status) is not ok.
//
// Example:
//   MS_RETURN_IF_ERROR(job.run());
#define MS_RETURN_IF_ERROR(expr)                                   \
  do {                                                             \
    ::meterstream::Status ms_status_ = (expr);                     \
    if (!ms_status_.ok()) return ms_status_;                       \
  } while (false)

// Evaluates `expr` (a StatusOr<T>); returns its status when not ok, otherwise
// moves its value into `lhs` (which may be a declaration).
//
// Example:
//   MS_ASSIGN_OR_RETURN(ms::Job job, pipeline.build());
// `lhs` may be a declaration, so it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define MS_ASSIGN_OR_RETURN(lhs, expr) \
  MS_ASSIGN_OR_RETURN_IMPL_(MS_STATUS_CONCAT_(ms_statusor_, __LINE__), lhs, expr)

#define MS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).status();  \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
