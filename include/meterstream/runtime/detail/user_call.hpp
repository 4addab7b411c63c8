// Runs user code and turns what it throws into the job's error. Not API.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "meterstream/runtime/detail/operator_context.hpp"
#include "meterstream/state/state.hpp"

namespace meterstream::detail {

// Calls f(); an exception from user code becomes a StatusError (kInternal)
// naming `where` (the operator), so Job::run() reports which operator failed.
template <typename F>
decltype(auto) call_user(const std::string& where, F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const JobCancelled&) {
    throw;
  } catch (const StatusError&) {
    throw;
  } catch (const StateError& e) {
    // Keeps the state layer's code (kDataLoss for a value that does not decode).
    throw StatusError{Status(e.status().code(), where + ": " + std::string(e.status().message()))};
  } catch (const std::exception& e) {
    throw StatusError{absl::InternalError(where + ": user code threw: " + e.what())};
  } catch (...) {
    throw StatusError{absl::InternalError(where + ": user code threw a non-standard exception")};
  }
}

}  // namespace meterstream::detail
