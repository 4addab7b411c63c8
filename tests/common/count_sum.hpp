// CountSum<T>: the window aggregate of the tests' small record types (a
// struct with a `val` field): how many records, and the sum of their `val`,
// both of `val`'s type.
#pragma once

namespace meterstream::test {

template <typename T>
struct CountSum {
  using Value = decltype(T::val);
  struct Acc {
    Value count = 0;
    Value sum = 0;
  };
  using accumulator_type = Acc;
  Acc create() const { return {}; }
  void add(Acc& a, const T& r) const {
    ++a.count;
    a.sum += r.val;
  }
  void merge(Acc& a, const Acc& b) const {
    a.count += b.count;
    a.sum += b.sum;
  }
  Acc result(const Acc& a) const { return a; }
};

}  // namespace meterstream::test
