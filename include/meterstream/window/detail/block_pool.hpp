// A recycling allocator for the window operator's hash tables. Not API.
//
// A window's table is freed when the window fires and a new one of about the
// same size is allocated for the next window. Such large blocks come straight
// from mmap, so every window would page-fault and zero its memory again
// (measured: 11% of Q1's time in the kernel's clear_page). The pool keeps a few
// freed blocks per size and hands them out again.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <new>
#include <vector>

namespace meterstream::detail {

// Freed blocks by size; owned by one operator instance (single thread).
class BlockPool {
 public:
  BlockPool() = default;
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;
  ~BlockPool() {
    for (auto& [bytes, blocks] : free_) {
      for (void* p : blocks) ::operator delete(p);
    }
  }

  void* allocate(std::size_t bytes) {
    auto it = free_.find(bytes);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      return p;
    }
    return ::operator new(bytes);
  }

  void deallocate(void* p, std::size_t bytes) {
    auto& blocks = free_[bytes];
    if (blocks.size() < kMaxPerSize) {
      blocks.push_back(p);
    } else {
      ::operator delete(p);
    }
  }

 private:
  static constexpr std::size_t kMaxPerSize = 4;
  std::map<std::size_t, std::vector<void*>> free_;
};

// std allocator over a shared BlockPool.
template <typename T>
class PoolAllocator {
 public:
  using value_type = T;

  explicit PoolAllocator(std::shared_ptr<BlockPool> pool) : pool_(std::move(pool)) {}
  template <typename U>
  PoolAllocator(const PoolAllocator<U>& other) : pool_(other.pool()) {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) { return static_cast<T*>(pool_->allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) { pool_->deallocate(p, n * sizeof(T)); }

  const std::shared_ptr<BlockPool>& pool() const { return pool_; }
  template <typename U>
  bool operator==(const PoolAllocator<U>& o) const { return pool_ == o.pool(); }
  template <typename U>
  bool operator!=(const PoolAllocator<U>& o) const { return pool_ != o.pool(); }

 private:
  std::shared_ptr<BlockPool> pool_;
};

}  // namespace meterstream::detail
