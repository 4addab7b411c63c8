// In-memory sources and sinks: vectors, generator functions, callbacks.
//
// The sources can be checkpointed: a split's position is the index of its
// next record, as decimal text ("1234"), which seek() checks against the
// split's range.
//
// Thread-safety: sources are read by the worker that owns their split. Sinks
// are written from every worker: collect_into() serialises appends with a
// mutex; callback_sink() calls its function concurrently from the workers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/connectors/detail/split_position.hpp"
#include "meterstream/runtime/operator.hpp"

namespace meterstream {

namespace detail {

template <typename T>
class VectorSplit final : public SplitReader<T> {
 public:
  VectorSplit(std::shared_ptr<const std::vector<T>> data, std::size_t begin, std::size_t end,
              int index)
      : data_(std::move(data)), begin_(begin), pos_(begin), end_(end), index_(index) {}
  StatusOr<typename SplitReader<T>::Poll> poll(std::vector<T>& out, std::size_t max,
                                               std::vector<std::string>&) override {
    const std::size_t n = std::min(max, end_ - pos_);
    out.insert(out.end(), data_->begin() + static_cast<std::ptrdiff_t>(pos_),
               data_->begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return pos_ == end_ ? SplitReader<T>::Poll::kEnd : SplitReader<T>::Poll::kMore;
  }
  std::string name() const override { return "vector[" + std::to_string(index_) + "]"; }

  // The index in the whole vector (not in the split), so that a position of
  // another split of the same vector is rejected rather than misread.
  StatusOr<std::string> position() const override { return encode_record_index(pos_); }
  Status seek(std::string_view position) override {
    MS_ASSIGN_OR_RETURN(const std::uint64_t pos,
                        decode_record_index(name(), position, begin_, end_));
    pos_ = static_cast<std::size_t>(pos);
    return Status();
  }

 private:
  std::shared_ptr<const std::vector<T>> data_;
  std::size_t begin_;
  std::size_t pos_;
  std::size_t end_;
  int index_;
};

template <typename T>
class VectorSource final : public Source<T> {
 public:
  VectorSource(std::shared_ptr<const std::vector<T>> data, int splits)
      : data_(std::move(data)), splits_(splits) {}
  std::string name() const override { return "vector"; }
  StatusOr<std::vector<std::unique_ptr<SplitReader<T>>>> create_splits() override {
    if (splits_ < 1) {
      return absl::InvalidArgumentError("from_vector(): splits must be >= 1, got " +
                                        std::to_string(splits_));
    }
    std::vector<std::unique_ptr<SplitReader<T>>> out;
    const std::size_t n = data_->size();
    const auto k = static_cast<std::size_t>(splits_);
    for (std::size_t i = 0; i < k; ++i) {
      out.push_back(std::make_unique<VectorSplit<T>>(data_, n * i / k, n * (i + 1) / k,
                                                     static_cast<int>(i)));
    }
    return out;
  }

 private:
  std::shared_ptr<const std::vector<T>> data_;
  int splits_;
};

template <typename T, typename F>
class GeneratorSource final : public Source<T> {
 public:
  explicit GeneratorSource(F f) : f_(std::move(f)) {}
  std::string name() const override { return "generator"; }
  StatusOr<std::vector<std::unique_ptr<SplitReader<T>>>> create_splits() override {
    std::vector<std::unique_ptr<SplitReader<T>>> out;
    out.push_back(std::make_unique<Split>(f_));
    return out;
  }

 private:
  class Split final : public SplitReader<T> {
   public:
    explicit Split(F f) : f_(std::move(f)) {}
    StatusOr<typename SplitReader<T>::Poll> poll(std::vector<T>& out, std::size_t max,
                                                 std::vector<std::string>&) override {
      for (std::size_t i = 0; i < max; ++i) {
        std::optional<T> v = f_(index_);
        if (!v) return SplitReader<T>::Poll::kEnd;
        ++index_;
        out.push_back(std::move(*v));
      }
      return SplitReader<T>::Poll::kMore;
    }
    std::string name() const override { return "generator"; }

    // The index of the next f() call. The generator's end is only known by
    // calling f, so seek(i) checks that f(i - 1) has a value: a position
    // beyond the end (of a shorter generator) is rejected.
    StatusOr<std::string> position() const override { return encode_record_index(index_); }
    Status seek(std::string_view position) override {
      MS_ASSIGN_OR_RETURN(
          const std::uint64_t index,
          decode_record_index(name(), position, 0, std::numeric_limits<std::uint64_t>::max()));
      if (index > 0 && !f_(index - 1)) {
        return bad_position(name(), position, "record index beyond the end of the generator");
      }
      index_ = index;
      return Status();
    }

   private:
    F f_;
    std::uint64_t index_ = 0;
  };
  F f_;
};

template <typename T, typename F>
class CallbackSink final : public Sink<T> {
 public:
  explicit CallbackSink(F f) : f_(std::move(f)) {}
  std::string name() const override { return "callback"; }
  StatusOr<std::unique_ptr<SinkWriter<T>>> create_writer(int, int) override {
    return std::unique_ptr<SinkWriter<T>>(std::make_unique<Writer>(f_));
  }

 private:
  class Writer final : public SinkWriter<T> {
   public:
    explicit Writer(F f) : f_(std::move(f)) {}
    Status write(const RecordBatch<T>& batch) override {
      for (const T& v : batch.values) f_(v);
      return Status();
    }
    Status close() override { return Status(); }

   private:
    F f_;
  };
  F f_;
};

template <typename T>
class CollectSink final : public Sink<T> {
 public:
  explicit CollectSink(std::vector<T>* out) : out_(out) {}
  std::string name() const override { return "collect"; }
  StatusOr<std::unique_ptr<SinkWriter<T>>> create_writer(int, int) override {
    return std::unique_ptr<SinkWriter<T>>(std::make_unique<Writer>(this));
  }

 private:
  class Writer final : public SinkWriter<T> {
   public:
    explicit Writer(CollectSink* sink) : sink_(sink) {}
    Status write(const RecordBatch<T>& batch) override {
      std::lock_guard<std::mutex> lock(sink_->mu_);
      sink_->out_->insert(sink_->out_->end(), batch.values.begin(), batch.values.end());
      return Status();
    }
    Status close() override { return Status(); }

   private:
    CollectSink* sink_;
  };
  std::mutex mu_;
  std::vector<T>* out_;
};

}  // namespace detail

// Reads `values` in order. With splits > 1 the vector is cut into that many
// contiguous splits read in parallel (and watermarked per split).
template <typename T>
std::shared_ptr<Source<T>> from_vector(std::vector<T> values, int splits = 1) {
  return std::make_shared<detail::VectorSource<T>>(
      std::make_shared<const std::vector<T>>(std::move(values)), splits);
}

// Reads a vector shared with the caller, without copying it. It must not change
// while the job runs.
template <typename T>
std::shared_ptr<Source<T>> from_shared_vector(std::shared_ptr<const std::vector<T>> values,
                                              int splits = 1) {
  return std::make_shared<detail::VectorSource<T>>(std::move(values), splits);
}

// Calls f(0), f(1), ... (f: uint64_t -> std::optional<T>) until it returns
// nullopt; one split. A checkpointed job restarts at f(i) (after checking
// that f(i - 1) has a value), so f(i) must not depend on earlier calls.
template <typename F>
auto from_generator(F f) {
  using T = typename std::invoke_result_t<F&, std::uint64_t>::value_type;
  return std::shared_ptr<Source<T>>(std::make_shared<detail::GeneratorSource<T, F>>(std::move(f)));
}

// Appends every record to `*out` (under a mutex; order across workers is not
// defined). `out` must outlive the job.
template <typename T>
std::shared_ptr<Sink<T>> collect_into(std::vector<T>& out) {
  return std::make_shared<detail::CollectSink<T>>(&out);
}

// Calls f(const T&) for every record, from the worker threads concurrently.
template <typename T, typename F>
std::shared_ptr<Sink<T>> callback_sink(F f) {
  return std::make_shared<detail::CallbackSink<T, F>>(std::move(f));
}

}  // namespace meterstream
