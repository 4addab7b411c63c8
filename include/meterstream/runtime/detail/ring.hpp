// A bounded single-producer/single-consumer ring of channel messages: the wire
// of an exchange between two workers. Not API.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "meterstream/core/time.hpp"

namespace meterstream::detail {

struct ChannelMessage {
  enum class Kind : std::uint8_t { kBatch, kWatermark, kStatus, kEnd, kBarrier };
  Kind kind = Kind::kBatch;
  std::int64_t value = 0;  // watermark, or 1/0 for idle/active
  void* batch = nullptr;   // a RecordBatch<T>* owned by the message (kBatch)
};

class SpscRing {
 public:
  explicit SpscRing(std::size_t capacity) {
    std::size_t cap = 2;
    while (cap < capacity) cap <<= 1;
    mask_ = cap - 1;
    slots_ = std::make_unique<ChannelMessage[]>(cap);
  }

  // Producer side. False when full.
  bool try_push(const ChannelMessage& m) {
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) return false;
    }
    slots_[tail & mask_] = m;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Consumer side. False when empty.
  bool try_pop(ChannelMessage* m) {
    const std::size_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return false;
    }
    *m = slots_[head & mask_];
    head_.store(head + 1, std::memory_order_release);
    return true;
  }


 private:
  std::size_t mask_ = 0;
  std::unique_ptr<ChannelMessage[]> slots_;
  alignas(64) std::atomic<std::size_t> head_{0};  // consumer writes
  std::size_t tail_cache_ = 0;                    // consumer's view of tail
  alignas(64) std::atomic<std::size_t> tail_{0};  // producer writes
  std::size_t head_cache_ = 0;                    // producer's view of head
};

}  // namespace meterstream::detail
