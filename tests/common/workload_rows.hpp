// The expected results of ../shared/bench/WORKLOAD.md ("Expected results for
// Q1" and for Q2), shared by the tests of the baseline, the DSL and dedup.
// They are the spec: copy changes from WORKLOAD.md, never from a program's
// output.
#pragma once

#include <cstdint>

#include "bench/q1_baseline.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"

namespace meterstream::test {

struct WorkloadRow {
  std::uint64_t seed, meters, events;
  std::uint32_t late_ppm;
  std::int64_t wm_every;
  Q1Totals expected;

  SmartMeterWorkload workload() const {
    SmartMeterWorkload w;
    w.seed = seed;
    w.meters = meters;
    w.events = events;
    w.late_ppm = late_ppm;
    return w;
  }
  Q1Params params(bool dedup = false) const {
    Q1Params q;
    q.wm_every = wm_every;
    q.dedup = dedup;
    return q;
  }
};

inline Q1Totals totals(std::uint64_t windows, std::uint64_t late, std::uint64_t duplicates,
                       std::uint64_t count, std::uint64_t sum_wh, std::uint64_t digest) {
  Q1Totals t;
  t.windows = windows;
  t.late_dropped = late;
  t.duplicates_dropped = duplicates;
  t.total_count = count;
  t.sum_wh = sum_wh;
  t.digest = digest;
  return t;
}

// Q1, in the table's order.
inline const WorkloadRow kQ1Rows[] = {
    {1, 1000, 200000, 10000, 1000,
     totals(46059, 912, 0, 199088, 112028929, 16496968906046104147ULL)},
    {42, 100000, 2000000, 10000, 1000,
     totals(604479, 9120, 0, 1990880, 1118252279, 3609725919852728751ULL)},
    {42, 100000, 2000000, 0, 1000,
     totals(600000, 0, 0, 2000000, 1123412428, 14838514780458627050ULL)},
    {3, 50000, 1000000, 10000, 1,
     totals(302146, 4440, 0, 995560, 559033665, 14456169730091649688ULL)},
};

// Q2 (dedup, then Q1), in the table's order.
inline const WorkloadRow kQ2Rows[] = {
    {1, 1000, 200000, 10000, 1000,
     totals(46059, 906, 1003, 198091, 111458548, 6734673003677224942ULL)},
    {42, 100000, 2000000, 10000, 1000,
     totals(604479, 9072, 9909, 1981019, 1112747159, 2343734365286260326ULL)},
};

}  // namespace meterstream::test
