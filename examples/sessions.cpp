// sessions: user sessions from click events, closed after 30 s of inactivity.
//
//   from_vector(clicks)          hand-made, slightly out of order
//        |
//   with_watermarks              bounded out-of-orderness 5 s, ts = ts_ms
//        |
//   key_by(user) ............... exchange
//        |
//   window(session gap 30 s) + aggregate(SessionStats)
//        |                          |
//        v                          v late(): a click whose session had already
//   collect_into(sessions)          closed when it arrived -> collect_into(late)
//
// A session window per user starts at a click and is extended by every click
// less than 30 s after the previous one; two sessions that a late click
// bridges merge into one (their accumulators are merged).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include <meterstream/meterstream.hpp>

namespace ms = meterstream;
using namespace std::chrono_literals;

namespace {

struct Click {
  std::string user;
  std::int64_t ts_ms = 0;
  std::string page;
};

// Clicks, pages and the last page of a session.
struct SessionStats {
  struct Acc {
    std::uint64_t clicks = 0;
    std::vector<std::string> pages;  // distinct, in first-seen order
    std::int64_t last_ts = 0;
    std::string last_page;
  };
  using accumulator_type = Acc;
  Acc create() const { return Acc{}; }
  void add(Acc& a, const Click& c) const {
    ++a.clicks;
    if (std::find(a.pages.begin(), a.pages.end(), c.page) == a.pages.end()) {
      a.pages.push_back(c.page);
    }
    if (a.clicks == 1 || c.ts_ms >= a.last_ts) {
      a.last_ts = c.ts_ms;
      a.last_page = c.page;
    }
  }
  void merge(Acc& a, const Acc& b) const {
    if (b.clicks == 0) return;
    for (const std::string& p : b.pages) {
      if (std::find(a.pages.begin(), a.pages.end(), p) == a.pages.end()) a.pages.push_back(p);
    }
    if (a.clicks == 0 || b.last_ts >= a.last_ts) {
      a.last_ts = b.last_ts;
      a.last_page = b.last_page;
    }
    a.clicks += b.clicks;
  }
  Acc result(const Acc& a) const { return a; }
};

constexpr std::int64_t kT0 = 1700000000000;
constexpr std::int64_t s(std::int64_t seconds) { return kT0 + seconds * 1000; }

}  // namespace

int main() {
  // Seconds after kT0, in arrival order. ann: three sessions; bob: clicks at
  // +2 and +10 s, then +42 s (a 32 s pause: a new session), then a click at
  // +38 s that arrives 4 s late (within the 5 s bound) and bridges the two into
  // one; cid: a click that arrives after its session closed (late).
  std::vector<Click> clicks = {
      {"ann", s(0), "/"},          {"bob", s(2), "/"},        {"ann", s(5), "/pricing"},
      {"bob", s(10), "/docs"},     {"cid", s(12), "/"},       {"ann", s(20), "/signup"},
      {"bob", s(42), "/docs/api"}, {"bob", s(38), "/docs/dsl"},
      {"ann", s(70), "/"},         {"ann", s(85), "/pricing"}, {"cid", s(120), "/"},
      {"ann", s(200), "/"},        {"cid", s(14), "/late"},
  };

  using Session = ms::WindowResult<std::string, SessionStats::Acc>;
  std::vector<Session> sessions;
  std::vector<Click> late;

  ms::Pipeline p;
  auto per_user = p.source(ms::from_vector(clicks))
                      .with_watermarks(ms::bounded_out_of_orderness(5s).with_emit_every(1),
                                       &Click::ts_ms)
                      .key_by(&Click::user)
                      .window(ms::session(30s))
                      .aggregate(SessionStats{});
  per_user.late().sink(ms::collect_into(late));
  per_user.sink(ms::collect_into(sessions));

  if (ms::Status st = p.run(); !st.ok()) {
    std::fprintf(stderr, "sessions: %s\n", st.ToString().c_str());
    return 1;
  }

  std::sort(sessions.begin(), sessions.end(), [](const Session& a, const Session& b) {
    return std::tie(a.key, a.start) < std::tie(b.key, b.start);
  });
  std::printf("%-4s %-14s %6s  %s\n", "user", "session", "clicks", "pages (last)");
  for (const Session& x : sessions) {
    std::string pages;
    for (const std::string& pg : x.value.pages) pages += (pages.empty() ? "" : " ") + pg;
    std::printf("%-4s +%3llds..+%3llds %6llu  %s (%s)\n", x.key.c_str(),
                static_cast<long long>((x.start - kT0) / 1000),
                static_cast<long long>((x.end - kT0) / 1000),
                static_cast<unsigned long long>(x.value.clicks), pages.c_str(),
                x.value.last_page.c_str());
  }
  std::printf("late clicks (after their session closed):\n");
  for (const Click& c : late) {
    std::printf("  %s +%llds %s\n", c.user.c_str(), static_cast<long long>((c.ts_ms - kT0) / 1000),
                c.page.c_str());
  }
  return 0;
}
