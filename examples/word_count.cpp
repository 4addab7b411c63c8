// word_count: words per 5-second window of a text file.
//
//   file_source(<tmp>/...txt)      one line -> Line{number, text};
//        |     |                   comment lines ('#') are rejected:
//        |     +-- undecodable() -> collect_into(rejected)
//        v
//   with_watermarks           synthetic event time: line n is at T0 + n seconds
//        |
//   flat_map -> words         lower-cased, split on anything but letters
//        |
//   key_by(word) ............ exchange
//        |
//   window(tumbling 5 s) + aggregate(Count)
//        |
//   collect_into(counts)      sorted and printed after the run
//
// Windows are an event-time concept, and a text file has no time: the example
// gives line n the timestamp T0 + n s, so lines 0-4 make the first window,
// 5-9 the second, and so on.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <vector>

#include <meterstream/meterstream.hpp>

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

constexpr ms::Timestamp kT0 = 1700000000000;  // 2023-11-14 22:13:20 UTC

struct Line {
  std::int64_t number = 0;  // 0-based, among the accepted lines
  std::string text;
};

constexpr const char* kText[] = {
    "# A sample text: lines starting with '#' are rejected by the parser.",
    "The meter reads the grid, the grid feeds the meter.",
    "Every reading has a time; every window has an end.",
    "Late readings wait for no window.",
    "The watermark says: no reading older than this will come.",
    "A window fires when the watermark passes its end.",
    "# another comment",
    "Keys meet on one worker; the worker owns the key group.",
    "Meter, meter, meter: the hot key reads a hundred times.",
    "The end of the input fires every window.",
    "Counting words is the hello world of streams.",
    "The grid, the meter, the window and the watermark.",
    "Streams never end, files do.",
};

int fail(const char* what, const ms::Status& status) {
  std::fprintf(stderr, "word_count: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  // Write the input file.
  std::error_code ec;
  const std::filesystem::path path =
      std::filesystem::temp_directory_path(ec) /
      ("meterstream-word_count-" + std::to_string(ms::processing_time_now()) + ".txt");
  if (ec) {
    std::fprintf(stderr, "word_count: no temporary folder: %s\n", ec.message().c_str());
    return 1;
  }
  {
    std::ofstream out(path);
    for (const char* line : kText) out << line << '\n';
    if (!out) {
      std::fprintf(stderr, "word_count: cannot write %s\n", path.c_str());
      return 1;
    }
  }
  std::printf("input: %s\n", path.c_str());

  // The parser numbers the lines it accepts (one copy per split; the file is
  // one split). It is the source, not with_watermarks(), that may keep a
  // counter: the timestamp function must be a pure function of the record.
  std::int64_t next_number = 0;
  auto parse = [next_number](std::string_view text) mutable -> std::optional<Line> {
    if (!text.empty() && text[0] == '#') return std::nullopt;  // -> undecodable()
    return Line{next_number++, std::string(text)};
  };

  using Counted = ms::WindowResult<std::string, std::uint64_t>;
  std::vector<Counted> counts;
  std::vector<std::string> rejected;

  ms::Pipeline p;
  auto lines = p.source(ms::file_source(path.string(), parse));
  lines.undecodable().sink(ms::collect_into(rejected));
  lines
      .with_watermarks(ms::WatermarkStrategy::monotonous_timestamps(),
                       [](const Line& l) { return kT0 + l.number * 1000; })
      .flat_map<std::string>([](const Line& l, ms::Emitter<std::string>& out) {
        std::string word;
        for (char c : l.text) {
          if (std::isalpha(static_cast<unsigned char>(c))) {
            word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          } else if (!word.empty()) {
            out.emit(word);
            word.clear();
          }
        }
        if (!word.empty()) out.emit(word);
      })
      .key_by([](const std::string& w) { return w; })
      .window(ms::tumbling(5s))
      .aggregate(ms::Count{})
      .sink(ms::collect_into(counts));

  ms::JobOptions options;
  options.parallelism = 2;
  if (ms::Status s = p.run(options); !s.ok()) return fail("run", s);
  std::filesystem::remove(path, ec);

  // Per window, the most frequent words first.
  std::sort(counts.begin(), counts.end(), [](const Counted& a, const Counted& b) {
    return std::make_tuple(a.start, b.value, a.key) < std::make_tuple(b.start, a.value, b.key);
  });
  ms::Timestamp window = ms::kMinTimestamp;
  int rank = 0;
  for (const Counted& c : counts) {
    if (c.start != window) {
      window = c.start;
      rank = 0;
      std::printf("\nwindow [+%llds, +%llds):\n", static_cast<long long>((c.start - kT0) / 1000),
                  static_cast<long long>((c.end - kT0) / 1000));
    }
    if (rank++ < 5) {
      std::printf("  %-10s %llu\n", c.key.c_str(), static_cast<unsigned long long>(c.value));
    }
  }
  std::printf("\n(the top five words per window; %zu (window, word) counts in all)\n",
              counts.size());
  std::printf("rejected lines (the source's undecodable() side output):\n");
  for (const std::string& r : rejected) std::printf("  %s\n", r.c_str());
  return 0;
}
