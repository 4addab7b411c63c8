#include "meterstream/connectors/generator/smart_meter_source.hpp"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meterstream/connectors/detail/split_position.hpp"

namespace meterstream {

namespace {

class SmartMeterSplit final : public SplitReader<MeterReading> {
 public:
  explicit SmartMeterSplit(const SmartMeterWorkload& w) : generator_(w) {}

  StatusOr<Poll> poll(std::vector<MeterReading>& out, std::size_t max,
                      std::vector<std::string>&) override {
    const std::size_t at = out.size();
    out.resize(at + max);
    const std::size_t n = generator_.next_batch(out.data() + at, max);
    out.resize(at + n);
    return generator_.done() ? Poll::kEnd : Poll::kMore;
  }
  std::string name() const override { return "smart-meter-generator"; }

  // The generator's own position (it carries the pending duplicates and a
  // fingerprint of the workload, so a position of another workload is
  // rejected).
  StatusOr<std::string> position() const override { return generator_.save_position(); }
  Status seek(std::string_view position) override {
    Status s = generator_.restore_position(position);
    if (!s.ok()) {
      return detail::bad_position(name(), position, std::string(s.message()));
    }
    return s;
  }

 private:
  SmartMeterGenerator generator_;
};

class SmartMeterSource final : public Source<MeterReading> {
 public:
  explicit SmartMeterSource(SmartMeterWorkload w) : workload_(std::move(w)) {}
  std::string name() const override { return "smart-meter"; }
  StatusOr<std::vector<std::unique_ptr<SplitReader<MeterReading>>>> create_splits() override {
    MS_RETURN_IF_ERROR(workload_.validate());
    std::vector<std::unique_ptr<SplitReader<MeterReading>>> out;
    out.push_back(std::make_unique<SmartMeterSplit>(workload_));
    return out;
  }

 private:
  SmartMeterWorkload workload_;
};

}  // namespace

std::shared_ptr<Source<MeterReading>> smart_meter_source(const SmartMeterWorkload& workload) {
  return std::make_shared<SmartMeterSource>(workload);
}

}  // namespace meterstream
