#include "q1.hpp"

#include "absl/strings/str_cat.h"
#include "output_check.hpp"

namespace meterstream {

Status Q1Params::validate() const {
  if (window_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("window_ms must be > 0, got ", window_ms));
  }
  if (bound_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bound_ms must be >= 0, got ", bound_ms));
  }
  if (wm_every < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("wm_every must be >= 1, got ", wm_every));
  }
  return absl::OkStatus();
}

std::string q1_result_line(const Q1Result& r) {
  return bench::q1_output_line(
      bench::Q1OutputWindow{r.key, r.start, r.value.count, r.value.sum_wh,
                            r.value.min_v, r.value.max_v});
}

}  // namespace meterstream
