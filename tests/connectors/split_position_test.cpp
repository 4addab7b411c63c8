// position() / seek() of the built-in splits: a split seeked to a position
// reads exactly what the split that gave the position had still to read.
// Drives the splits directly (no pipeline).

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "common/temp_dir.hpp"
#include "meterstream/connectors/files/files.hpp"
#include "meterstream/connectors/generator/smart_meter_source.hpp"
#include "meterstream/connectors/memory/memory.hpp"

namespace ms = meterstream;
namespace fs = std::filesystem;
using meterstream::test::TempDir;

namespace {

template <typename T>
struct Read {
  std::vector<T> records;
  std::vector<std::string> undecodable;
};

// Polls `split` `max` records at a time, up to `limit` records or its end.
template <typename T>
Read<T> read(ms::SplitReader<T>& split, std::size_t max, std::size_t limit = SIZE_MAX) {
  Read<T> r;
  while (r.records.size() + r.undecodable.size() < limit) {
    auto poll = split.poll(r.records, max, r.undecodable);
    REQUIRE(poll.ok());
    if (*poll == ms::SplitReader<T>::Poll::kEnd) break;
  }
  return r;
}

template <typename T>
std::vector<std::unique_ptr<ms::SplitReader<T>>> splits_of(ms::Source<T>& source) {
  auto splits = source.create_splits();
  REQUIRE(splits.ok());
  return std::move(splits).value();
}

// Reads `head_max` records from a split of `source`, takes its position,
// reads the rest; a fresh split seeked to the position reads the same rest.
template <typename T>
void check_resume(ms::Source<T>& source, std::size_t split, std::size_t head_max,
                  std::size_t poll_max) {
  auto first = splits_of(source);
  const Read<T> head = read(*first[split], poll_max, head_max);
  auto position = first[split]->position();
  REQUIRE(position.ok());
  const Read<T> rest = read(*first[split], poll_max);
  auto end_position = first[split]->position();
  REQUIRE(end_position.ok());

  auto second = splits_of(source);
  REQUIRE(second[split]->seek(*position).ok());
  const Read<T> resumed = read(*second[split], poll_max);
  CHECK(resumed.records == rest.records);
  CHECK(resumed.undecodable == rest.undecodable);
  auto resumed_end = second[split]->position();
  REQUIRE(resumed_end.ok());
  CHECK(*resumed_end == *end_position);

  // Seeked to the end, the split has nothing left.
  auto third = splits_of(source);
  REQUIRE(third[split]->seek(*end_position).ok());
  const Read<T> nothing = read(*third[split], poll_max);
  CHECK(nothing.records.empty());
  CHECK(nothing.undecodable.empty());
}

template <typename T>
void check_rejected(ms::SplitReader<T>& split, std::string_view position) {
  INFO("position of " << position.size() << " bytes: " << std::string(position));
  const ms::Status s = split.seek(position);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(s.message()), Catch::Contains("'" + split.name() + "'"));
}

}  // namespace

TEST_CASE("a vector split seeked to its position reads exactly the rest", "[checkpoint]") {
  std::vector<int> values(1000);
  for (int i = 0; i < 1000; ++i) values[static_cast<std::size_t>(i)] = i * 7;
  auto source = ms::from_vector(values, 3);
  for (std::size_t split = 0; split < 3; ++split) {
    check_resume(*source, split, 0, 64);
    check_resume(*source, split, 1, 1);
    check_resume(*source, split, 100, 7);
  }
  // The position is the record index in the whole vector.
  auto splits = splits_of(*source);
  read(*splits[1], 10, 10);
  CHECK(splits[1]->position().value() == std::to_string(333 + 10));
}

TEST_CASE("a vector split rejects positions outside its range, naming the split", "[checkpoint]") {
  std::vector<int> values(100, 1);
  auto source = ms::from_vector(values, 2);
  auto splits = splits_of(*source);
  for (std::string_view bad : {"", "x", "-1", "12x", " 60", "60 ", "99999999999999999999999"}) {
    check_rejected(*splits[1], bad);
  }
  check_rejected(*splits[1], std::string("\0\1\2", 3));
  // Split 1 holds records [50, 100): a position of split 0, or beyond the end.
  check_rejected(*splits[1], "49");
  check_rejected(*splits[1], "101");
  check_rejected(*splits[0], "51");
  CHECK(splits[1]->seek("50").ok());
  CHECK(splits[1]->seek("100").ok());
  const ms::Status s = splits[1]->seek("7");
  CHECK(s.message() ==
        "split 'vector[1]': cannot seek to position '7': record index outside the split "
        "[50, 100]");
}

TEST_CASE("a generator split seeked to its position reads exactly the rest", "[checkpoint]") {
  auto source = ms::from_generator([](std::uint64_t i) -> std::optional<std::uint64_t> {
    if (i >= 500) return std::nullopt;
    return i * i;
  });
  check_resume(*source, 0, 0, 50);
  check_resume(*source, 0, 123, 10);
  check_resume(*source, 0, 499, 499);

  auto splits = splits_of(*source);
  read(*splits[0], 10, 20);
  CHECK(splits[0]->position().value() == "20");
  // The end of the generator is index 500: f(499) is its last record.
  check_rejected(*splits[0], "501");
  check_rejected(*splits[0], "abc");
  check_rejected(*splits[0], "");
  CHECK(splits[0]->seek("500").ok());
  CHECK(splits[0]->seek("0").ok());
}

TEST_CASE("a smart-meter split seeked to its position reads exactly the rest", "[checkpoint]") {
  ms::SmartMeterWorkload w;
  w.seed = 11;
  w.meters = 50;
  w.hot_factor = 5;
  w.events = 20000;
  w.dup_ppm = 100000;  // many pending duplicates in the position
  w.late_ppm = 50000;
  auto source = ms::smart_meter_source(w);
  check_resume(*source, 0, 0, 1000);
  check_resume(*source, 0, 7777, 333);

  auto splits = splits_of(*source);
  check_rejected(*splits[0], "");
  check_rejected(*splits[0], "12");
  ms::SmartMeterWorkload other = w;
  other.seed = 12;
  auto other_splits = splits_of(*ms::smart_meter_source(other));
  read(*other_splits[0], 100, 100);
  check_rejected(*splits[0], other_splits[0]->position().value());
  // A truncated position.
  read(*splits[0], 100, 1000);
  const std::string position = splits[0]->position().value();
  auto fresh = splits_of(*source);
  check_rejected(*fresh[0], std::string_view(position).substr(0, position.size() - 1));
}

TEST_CASE("a file split seeked to its position reads the rest with its line numbers",
          "[checkpoint]") {
  TempDir dir;
  const std::string path = (dir.path / "in.txt").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << "1\n2\nbad-3\n4\r\n\n6\nbad-7\n8\n9\n10";  // no '\n' after the last line
  }
  auto parse = [](std::string_view line) -> std::optional<int> {
    if (line.empty() || line.substr(0, 3) == "bad") return std::nullopt;
    return std::stoi(std::string(line));
  };
  auto source = ms::file_source(path, parse);
  for (std::size_t head = 0; head <= 10; ++head) {
    check_resume(*source, 0, head, 1);
    check_resume(*source, 0, head, 3);
  }

  auto splits = splits_of(*source);
  const Read<int> head = read(*splits[0], 4, 4);  // lines 1..4
  CHECK(head.records == std::vector<int>{1, 2, 4});
  CHECK(splits[0]->position().value() == "13:4");
  auto resumed = splits_of(*source);
  REQUIRE(resumed[0]->seek("13:4").ok());
  const Read<int> rest = read(*resumed[0], 100);
  CHECK(rest.records == std::vector<int>{6, 8, 9, 10});
  CHECK(rest.undecodable == std::vector<std::string>{path + ":5: ", path + ":7: bad-7"});
  CHECK(resumed[0]->position().value() == "28:10");
}

TEST_CASE("a file split rejects positions that are not at a line start, naming the file",
          "[checkpoint]") {
  TempDir dir;
  const std::string path = (dir.path / "in.txt").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << "one\ntwo\nthree\n";  // 14 bytes; lines start at 0, 4, 8
  }
  auto source = ms::file_source(path);
  auto splits = splits_of(*source);
  ms::SplitReader<std::string>& split = *splits[0];
  for (std::string_view bad : {"", "4", "x:1", "4:", ":1", "4:1x", "-4:1", "4;1"}) {
    check_rejected(split, bad);
  }
  check_rejected(split, "5:1");   // inside a line
  check_rejected(split, "15:3");  // beyond the end
  check_rejected(split, "0:1");   // lines before offset 0
  check_rejected(split, "4:0");   // no line before a line start > 0
  check_rejected(split, "4:5");   // more lines than bytes
  CHECK_THAT(std::string(split.seek("5:1").message()),
             Catch::Contains("not at the start of a line"));
  // A rejected seek leaves the split where it was.
  Read<std::string> all = read(split, 10);
  CHECK(all.records == std::vector<std::string>{"one", "two", "three"});

  auto fresh = splits_of(*source);
  REQUIRE(fresh[0]->seek("8:2").ok());
  CHECK(read(*fresh[0], 10).records == std::vector<std::string>{"three"});
  REQUIRE(fresh[0]->seek("14:3").ok());
  CHECK(read(*fresh[0], 10).records.empty());
}
