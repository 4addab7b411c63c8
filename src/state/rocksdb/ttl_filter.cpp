#include "state/rocksdb/ttl_filter.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "state/rocksdb/keys.hpp"

namespace meterstream::detail {
namespace {

// Drops the values whose expiry has passed. Event time is fixed when the
// filter is made (at the start of a compaction); processing time is read per
// value. RocksDB turns a dropped value into a tombstone, so no older version
// of the key reappears.
class TtlCompactionFilter final : public rocksdb::CompactionFilter {
 public:
  TtlCompactionFilter(TimeDomain domain, Timestamp event_time)
      : domain_(domain), event_time_(event_time) {}

  bool Filter(int /*level*/, const rocksdb::Slice& /*key*/,
              const rocksdb::Slice& existing_value, std::string* /*new_value*/,
              bool* /*value_changed*/) const override {
    Timestamp expiry = 0;
    // A value too short to hold an expiry is corrupt: keep it, so that the
    // read reports it rather than the data silently vanishing.
    if (!get_expiry(to_view(existing_value), &expiry)) return false;
    const Timestamp now =
        domain_ == TimeDomain::kEventTime ? event_time_ : processing_time_now();
    return is_expired(expiry, now);
  }

  const char* Name() const override {
    return domain_ == TimeDomain::kEventTime ? "meterstream.TtlEventTime"
                                             : "meterstream.TtlProcessingTime";
  }

 private:
  const TimeDomain domain_;
  const Timestamp event_time_;
};

}  // namespace

void OperatorClocks::add(std::shared_ptr<const TtlClock> clock) {
  std::lock_guard<std::mutex> lock(mu_);
  clocks_.push_back(std::move(clock));
}

void OperatorClocks::remove(const TtlClock* clock) {
  std::lock_guard<std::mutex> lock(mu_);
  clocks_.erase(std::remove_if(clocks_.begin(), clocks_.end(),
                               [&](const auto& c) { return c.get() == clock; }),
                clocks_.end());
}

Timestamp OperatorClocks::earliest_event_time() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (clocks_.empty()) return kMinTimestamp;
  Timestamp earliest = kMaxTimestamp;
  for (const auto& clock : clocks_) {
    earliest = std::min(earliest, clock->now(TimeDomain::kEventTime));
  }
  return earliest;
}

bool TtlFilterFactory::ShouldFilterTableFileCreation(
    rocksdb::TableFileCreationReason reason) const {
  return reason == rocksdb::TableFileCreationReason::kCompaction ||
         reason == rocksdb::TableFileCreationReason::kFlush;
}

std::unique_ptr<rocksdb::CompactionFilter> TtlFilterFactory::CreateCompactionFilter(
    const rocksdb::CompactionFilter::Context& /*context*/) {
  return std::make_unique<TtlCompactionFilter>(domain_, clocks_->earliest_event_time());
}

const char* TtlFilterFactory::Name() const {
  return domain_ == TimeDomain::kEventTime ? "meterstream.TtlEventTimeFactory"
                                           : "meterstream.TtlProcessingTimeFactory";
}

}  // namespace meterstream::detail
