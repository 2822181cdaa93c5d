#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string>

#include <gtest/gtest.h>

namespace lego {
namespace {

double ValueOf(const std::vector<proto::StatsEntry>& v, const std::string& name) {
  for (const auto& e : v)
    if (e.name == name) return e.value;
  return -1;
}

// GET /metrics from 127.0.0.1:port; the whole response.
std::string Scrape(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};  // a broken exposer fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

// A gauge set by a collect hook is current at every read (the daemons' lego_used_bytes, the pmon's memory
// statistics), every hook runs, and a removed hook runs no more.
TEST(MetricsTest, CollectHooksRunBeforeEverySnapshotUntilRemoved) {
  Metrics m;
  auto& g = m.Gauge("lego_test_live_bytes", "test");
  auto& other = m.Gauge("lego_test_other", "test");
  std::atomic<int> runs{0};
  double live = 7;
  const uint64_t hook = m.OnCollect([&] {
    ++runs;
    g.Set(live);
  });
  const uint64_t second = m.OnCollect([&] { other.Set(live * 2); });
  EXPECT_NE(hook, second);
  EXPECT_EQ(ValueOf(m.Snapshot(), "lego_test_live_bytes"), 7);
  live = 9;
  auto snap = m.Snapshot();
  EXPECT_EQ(ValueOf(snap, "lego_test_live_bytes"), 9);
  EXPECT_EQ(ValueOf(snap, "lego_test_other"), 18);
  EXPECT_EQ(runs.load(), 2);
  m.RemoveCollectHook(hook);
  live = 11;
  snap = m.Snapshot();
  EXPECT_EQ(ValueOf(snap, "lego_test_live_bytes"), 9);
  EXPECT_EQ(ValueOf(snap, "lego_test_other"), 22);  // the other hook still runs
  EXPECT_EQ(runs.load(), 2);
  m.RemoveCollectHook(second);
  m.RemoveCollectHook(second);  // twice, or an id never given: nothing
  live = 13;
  EXPECT_EQ(ValueOf(m.Snapshot(), "lego_test_other"), 22);
}

// A component's own statistics (atomics outside the registry) become gauges of the same names, current at
// every read, whether read through Snapshot (`lego stats`) or a scrape.
TEST(MetricsTest, MirroredStatisticsAreGaugesCurrentAtEveryRead) {
  Metrics m;
  std::atomic<uint64_t> hits{3};
  const uint64_t hook = m.MirrorOnCollect(
      [&] {
        return std::vector<proto::StatsEntry>{{"lego_test_hits_total", static_cast<double>(hits.load())},
                                              {"lego_test_constant", 42}};
      },
      "test");
  auto snap = m.Snapshot();
  EXPECT_EQ(ValueOf(snap, "lego_test_hits_total"), 3);
  EXPECT_EQ(ValueOf(snap, "lego_test_constant"), 42);
  hits = 5;
  auto port = m.StartHttp("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  const std::string body = Scrape(*port);
  EXPECT_NE(body.find("\nlego_test_hits_total 5\n"), std::string::npos) << body;
  EXPECT_NE(body.find("# TYPE lego_test_hits_total gauge"), std::string::npos) << body;
  hits = 8;
  snap = m.Snapshot();
  EXPECT_EQ(ValueOf(snap, "lego_test_hits_total"), 8);
  EXPECT_EQ(std::count_if(snap.begin(), snap.end(), [](auto& e) { return e.name == "lego_test_hits_total"; }),
            1);  // one gauge, not one per read
  m.RemoveCollectHook(hook);
}

TEST(MetricsTest, CollectHookRunsBeforeEveryHttpScrape) {
  Metrics m;
  auto& g = m.Gauge("lego_test_live_bytes", "test");
  double live = 4096;
  const uint64_t hook = m.OnCollect([&] { g.Set(live); });
  auto port = m.StartHttp("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_NE(Scrape(*port).find("lego_test_live_bytes 4096"), std::string::npos);
  live = 8192;
  const std::string body = Scrape(*port);
  EXPECT_NE(body.find("lego_test_live_bytes 8192"), std::string::npos) << body;
  m.RemoveCollectHook(hook);
}

}  // namespace
}  // namespace lego
