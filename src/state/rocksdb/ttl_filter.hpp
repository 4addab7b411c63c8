// Internal to the RocksDB state backend: the compaction filter that drops
// expired TTL values, and the clocks it measures them on.
//
// Event time belongs to each store (the operator instance that advances it
// with its watermarks), never to the backend: one operator's final
// kMaxTimestamp watermark expires nothing of another's. The stores of one
// operator share its column families (each owns a disjoint key group range),
// so the filter of a column family measures expiry on the earliest event
// time of the operator's open stores: a value expired on it is expired on the
// clock of whichever store owns it, so the filter never drops a value that a
// read would still return. It takes that time once per compaction or flush.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "meterstream/core/time.hpp"
#include "rocksdb/compaction_filter.h"
#include "state/ttl_format.hpp"

namespace meterstream::detail {

// The clocks of the open stores of one operator. Thread-safe.
class OperatorClocks {
 public:
  void add(std::shared_ptr<const TtlClock> clock);
  void remove(const TtlClock* clock);
  // The earliest event time of the open stores; kMinTimestamp when none is
  // open or one has seen no watermark yet (then nothing expires).
  Timestamp earliest_event_time() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const TtlClock>> clocks_;
};

// Makes the TTL filter of one column family of a TTL state, for compactions
// and flushes (so that expired values in memtables never reach a file).
class TtlFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  TtlFilterFactory(TimeDomain domain, std::shared_ptr<const OperatorClocks> clocks)
      : domain_(domain), clocks_(std::move(clocks)) {}

  bool ShouldFilterTableFileCreation(rocksdb::TableFileCreationReason reason) const override;
  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& context) override;
  const char* Name() const override;

 private:
  const TimeDomain domain_;
  const std::shared_ptr<const OperatorClocks> clocks_;
};

}  // namespace meterstream::detail
