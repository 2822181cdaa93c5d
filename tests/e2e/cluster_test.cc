// End-to-end tests of the control plane: real lego-gm, lego-pmon, lego-mmon and lego-smon processes on
// loopback ephemeral ports, talking over real UCX.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/log.h"
#include "messaging/messenger.h"
#include "protocol/any.h"
#include "support/test_support.h"
#include "transport/messenger_test_peer.h"

namespace lego {
namespace {

using namespace std::chrono_literals;
using proto::ComponentKind;
using proto::MemberState;

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    msg::MessengerOptions o;
    o.name = "test-client";
    auto m = msg::Messenger::Create(o);
    ASSERT_TRUE(m.ok());
    client_ = std::move(m.value());
    ASSERT_TRUE(client_->Start().ok());
  }
  void TearDown() override { client_->Shutdown(); }

  void StartGm(std::vector<std::string> args = {}) {
    gm_ = std::make_unique<test::Daemon>(test::StartDaemon("gm", dir_.path(), "gm", args));
  }
  test::Daemon StartMonitor(const std::string& kind, const std::string& name,
                            std::vector<std::string> args = {}) {
    args.insert(args.end(), {"--gm", gm_->addr.ToString(), "--name", name});
    return test::StartDaemon(kind, dir_.path(), name, args);
  }
  std::vector<proto::MemberRecord> Members() {
    auto ch = client_->Connect(gm_->addr, 5s);
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    if (!ch.ok()) return {};
    auto r = ch.value()->Call(proto::kListMembers, {}, 5s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    return proto::DecodeMemberList(r.value()).value();
  }
  std::optional<proto::MemberRecord> Member(const std::string& name) {
    for (auto& m : Members())
      if (m.name == name) return m;
    return std::nullopt;
  }
  bool WaitState(const std::string& name, MemberState state, std::chrono::milliseconds timeout) {
    return test::WaitFor(
        [&] {
          auto m = Member(name);
          return m && m->fixed.state == static_cast<uint8_t>(state);
        },
        timeout);
  }

  test::TempDir dir_;
  std::unique_ptr<test::Daemon> gm_;
  std::unique_ptr<msg::Messenger> client_;
};

TEST_F(ClusterTest, EveryKindRegistersWithItsCapacityAndPid) {
  StartGm();
  auto pmon = StartMonitor("pmon", "pmon-0", {"--excache", "64M"});
  auto mmon0 = StartMonitor("mmon", "mmon-0", {"--capacity", "512M"});
  auto mmon1 = StartMonitor("mmon", "mmon-1", {"--capacity", "256M"});
  auto smon = StartMonitor("smon", "smon-0");
  ASSERT_TRUE(WaitState("smon-0", MemberState::kAlive, 10s));
  ASSERT_TRUE(WaitState("mmon-1", MemberState::kAlive, 10s));
  ASSERT_TRUE(WaitState("mmon-0", MemberState::kAlive, 10s));
  ASSERT_TRUE(WaitState("pmon-0", MemberState::kAlive, 10s));
  auto members = Members();
  ASSERT_EQ(members.size(), 5u);  // gm + 4
  EXPECT_EQ(members[0].fixed.kind, uint8_t(ComponentKind::kGm));
  auto m0 = Member("mmon-0").value();
  EXPECT_EQ(m0.fixed.kind, uint8_t(ComponentKind::kMmon));
  EXPECT_EQ(m0.fixed.capacity_bytes, 512ull << 20);
  EXPECT_EQ(m0.fixed.pid, uint32_t(mmon0.proc.pid()));
  EXPECT_EQ(m0.listen_addr, mmon0.addr.ToString());
  EXPECT_EQ(Member("pmon-0")->fixed.capacity_bytes, 64ull << 20);
  EXPECT_EQ(Member("pmon-0")->fixed.kind, uint8_t(ComponentKind::kPmon));
  EXPECT_EQ(Member("smon-0")->fixed.kind, uint8_t(ComponentKind::kSmon));
}

TEST_F(ClusterTest, KilledMmonIsDeadWithinFiveSecondsByDefaultAndRejoinsWithSameId) {
  StartGm();  // default heartbeat: 1000 ms x 3 misses
  auto mmon = std::make_unique<test::Daemon>(StartMonitor("mmon", "mmon-0"));
  ASSERT_TRUE(WaitState("mmon-0", MemberState::kAlive, 10s));
  auto before = Member("mmon-0").value();

  auto t0 = std::chrono::steady_clock::now();
  mmon->proc.Kill9();
  ASSERT_TRUE(WaitState("mmon-0", MemberState::kDead, 10s));
  auto detect = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(detect, 5s) << "detection took "
                        << std::chrono::duration_cast<std::chrono::milliseconds>(detect).count();
  EXPECT_GT(detect, 2s);  // not before the configured misses

  // Restart with the same data dir: same identity, same id, new incarnation (a new port is fine).
  mmon = std::make_unique<test::Daemon>(
      test::StartDaemon("mmon", dir_.path(), "mmon-0", {"--gm", gm_->addr.ToString()}));
  ASSERT_TRUE(WaitState("mmon-0", MemberState::kAlive, 10s));
  auto after = Member("mmon-0").value();
  EXPECT_EQ(after.fixed.id, before.fixed.id);
  EXPECT_EQ(after.fixed.incarnation, before.fixed.incarnation + 1);
  EXPECT_EQ(after.fixed.pid, uint32_t(mmon->proc.pid()));
  EXPECT_EQ(Members().size(), 2u);
}

TEST_F(ClusterTest, ConfigurableHeartbeatDetectsFaster) {
  StartGm({"--heartbeat-interval-ms", "100", "--heartbeat-misses", "5"});
  auto smon = StartMonitor("smon", "smon-0");
  ASSERT_TRUE(WaitState("smon-0", MemberState::kAlive, 10s));
  auto t0 = std::chrono::steady_clock::now();
  smon.proc.Kill9();
  ASSERT_TRUE(WaitState("smon-0", MemberState::kDead, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST_F(ClusterTest, SigtermExitsCleanlyAndDeregisters) {
  StartGm();
  auto pmon = StartMonitor("pmon", "pmon-0");
  ASSERT_TRUE(WaitState("pmon-0", MemberState::kAlive, 10s));
  pmon.proc.Signal(SIGTERM);
  int st = pmon.proc.Wait(10s);
  ASSERT_NE(st, -1) << "pmon did not exit on SIGTERM";
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  EXPECT_EQ(Member("pmon-0")->fixed.state, uint8_t(MemberState::kLeft));
  EXPECT_NE(pmon.proc.Log().find("event=deregistered"), std::string::npos);
  gm_->proc.Signal(SIGTERM);
  st = gm_->proc.Wait(10s);
  ASSERT_NE(st, -1);
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

TEST_F(ClusterTest, MonitorStartedBeforeGmJoinsWhenGmComesUp) {
  uint16_t port = test::FreePort();
  auto gm_addr = fmt::format("127.0.0.1:{}", port);
  auto mmon = test::StartDaemon("mmon", dir_.path(), "mmon-0", {"--gm", gm_addr, "--name", "mmon-0"});
  std::this_thread::sleep_for(700ms);
  StartGm({"--listen", gm_addr});
  EXPECT_TRUE(WaitState("mmon-0", MemberState::kAlive, 10s));
}

TEST_F(ClusterTest, RestartedGmIsRejoinedByEveryMonitor) {
  uint16_t port = test::FreePort();
  auto gm_addr = fmt::format("127.0.0.1:{}", port);
  StartGm({"--listen", gm_addr, "--heartbeat-interval-ms", "200"});
  auto mmon = StartMonitor("mmon", "mmon-0");
  auto pmon = StartMonitor("pmon", "pmon-0");
  ASSERT_TRUE(WaitState("pmon-0", MemberState::kAlive, 10s));
  gm_->proc.Kill9();
  StartGm({"--listen", gm_addr, "--heartbeat-interval-ms", "200"});
  EXPECT_TRUE(WaitState("mmon-0", MemberState::kAlive, 15s)) << mmon.proc.Log() << gm_->proc.Log();
  EXPECT_TRUE(WaitState("pmon-0", MemberState::kAlive, 15s)) << pmon.proc.Log();
}

TEST_F(ClusterTest, CountersOverRpcAndPrometheus) {
  StartGm();
  auto mmon = StartMonitor("mmon", "mmon-0", {"--capacity", "128M"});
  ASSERT_TRUE(WaitState("mmon-0", MemberState::kAlive, 10s));
  auto ch = client_->Connect(mmon.addr, 5s);
  ASSERT_TRUE(ch.ok());
  auto r = ch.value()->Call(proto::kGetStats, {}, 5s);
  ASSERT_TRUE(r.ok());
  std::map<std::string, double> stats;
  for (auto& e : proto::DecodeStats(r.value()).value()) stats[e.name] = e.value;
  EXPECT_EQ(stats["lego_capacity_bytes"], double(128 << 20));
  EXPECT_GE(stats["lego_msg_requests_sent_total"], 1);  // its registration and heartbeats
  std::string text = test::HttpGet(mmon.metrics_port, "/metrics");
  EXPECT_NE(text.find("lego_capacity_bytes 134217728"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE lego_msg_requests_served_total counter"), std::string::npos);
  // Statistics kept outside the registry (the buffer cache's) are in both, as of the read.
  EXPECT_EQ(stats.count("lego_mmon_bcache_resident_bytes"), 1u);
  EXPECT_NE(text.find("\nlego_mmon_bcache_resident_bytes 0\n"), std::string::npos) << text;
  EXPECT_NE(test::HttpGet(gm_->metrics_port, "/metrics").find("lego_gm_members_alive"), std::string::npos);
}

TEST_F(ClusterTest, GmRejectsMalformedMembershipMessagesAndKeepsServing) {
  StartGm();
  auto ch = client_->Connect(gm_->addr, 5s);
  ASSERT_TRUE(ch.ok());
  // Truncated, oversized-string and wrong-kind registrations.
  proto::RegisterReq req;
  req.fixed.kind = uint8_t(ComponentKind::kMmon);
  req.listen_addr = "127.0.0.1:1";
  req.name = "x";
  auto good = proto::EncodeRegisterReq(req);
  for (size_t cut : {size_t{0}, size_t{5}, good.size() - 1}) {
    auto r = ch.value()->Call(proto::kRegister, std::span(good.data(), cut), 5s);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kBadMessage) << cut;
  }
  auto trailing = good;
  trailing.push_back(0);
  EXPECT_EQ(ch.value()->Call(proto::kRegister, trailing, 5s).status().code(), StatusCode::kBadMessage);
  req.fixed.kind = 99;
  EXPECT_EQ(ch.value()->Call(proto::kRegister, proto::EncodeRegisterReq(req), 5s).status().code(),
            StatusCode::kBadMessage);
  auto lying = good;
  lying[sizeof(proto::RegisterFixed)] = 0xff;  // listen_addr length 0x..ff, more than the payload
  lying[sizeof(proto::RegisterFixed) + 1] = 0x0f;
  EXPECT_EQ(ch.value()->Call(proto::kRegister, lying, 5s).status().code(), StatusCode::kBadMessage);
  // Heartbeat of an unknown member; list with a payload.
  proto::HeartbeatReq hb{12345, 1, 0, 0};
  EXPECT_EQ(ch.value()->Call(proto::kHeartbeat, proto::EncodeFixed(hb), 5s).status().code(),
            StatusCode::kUnknownMember);
  EXPECT_EQ(ch.value()->Call(proto::kListMembers, good, 5s).status().code(), StatusCode::kBadMessage);
  // Raw frames: truncated payload, wrong version.
  auto hdr = msg::MessengerTestPeer::RequestHeader(proto::kListMembers, 100);
  auto r = msg::MessengerTestPeer::CallRaw(*client_, *ch.value(), hdr, sizeof(hdr), {}, 5s)->Wait();
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  hdr = msg::MessengerTestPeer::RequestHeader(proto::kListMembers, 0);
  hdr.version = 9;
  r = msg::MessengerTestPeer::CallRaw(*client_, *ch.value(), hdr, sizeof(hdr), {}, 5s)->Wait();
  EXPECT_EQ(r.status().code(), StatusCode::kVersionMismatch);
  // Still serving, and nothing was admitted.
  EXPECT_EQ(Members().size(), 1u);
  EXPECT_TRUE(gm_->proc.Running());
  EXPECT_NE(gm_->proc.Log().find("event=bad_message"), std::string::npos);
}

TEST_F(ClusterTest, StartsFromTomlClusterFile) {
  uint16_t port = test::FreePort();
  std::string file = dir_.path() + "/cluster.toml";
  {
    std::ofstream out(file);
    out << "[cluster]\ngm = \"127.0.0.1:" << port << "\"\n\n[gm]\nlisten = \"127.0.0.1:" << port << "\"\n"
        << "heartbeat_interval_ms = 300\n\n[mmon]\ncapacity = \"2G\"\nmetrics = \"off\"\n";
  }
  gm_ = std::make_unique<test::Daemon>(test::StartDaemon("gm", dir_.path(), "gm", {"--config", file}));
  EXPECT_EQ(gm_->addr.port, port);
  auto mmon = test::StartDaemon("mmon", dir_.path(), "mmon-0", {"--config", file, "--name", "mmon-0"});
  ASSERT_TRUE(WaitState("mmon-0", MemberState::kAlive, 10s));
  EXPECT_EQ(Member("mmon-0")->fixed.capacity_bytes, 2ull << 30);
  EXPECT_EQ(Member("mmon-0")->fixed.metrics_port, 0);
  // A flag overrides the file.
  auto mmon1 = test::StartDaemon("mmon", dir_.path(), "mmon-1",
                                 {"--config", file, "--name", "mmon-1", "--capacity", "1G"});
  ASSERT_TRUE(WaitState("mmon-1", MemberState::kAlive, 10s));
  EXPECT_EQ(Member("mmon-1")->fixed.capacity_bytes, 1ull << 30);
}

TEST(DaemonFlags, BadInputGetsClearErrorAndExitCode2) {
  test::TempDir dir;
  auto bin = test::BinDir() + "/lego-mmon";
  auto r = test::Run(bin, {"--data-dir", dir.path()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--gm HOST:PORT is required"), std::string::npos) << r.err;
  r = test::Run(bin, {"--data-dir", dir.path(), "--gm", "127.0.0.1:1", "--capacity", "lots"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--capacity"), std::string::npos) << r.err;
  r = test::Run(bin, {"--data-dir", dir.path(), "--gm", "nonsense"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--gm"), std::string::npos) << r.err;
  r = test::Run(bin, {"--data-dir", dir.path(), "--gm", "127.0.0.1:1", "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
  r = test::Run(bin, {"--config", dir.path() + "/missing.toml", "--gm", "127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("missing.toml"), std::string::npos) << r.err;
  r = test::Run(bin, {"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--capacity"), std::string::npos);
  // A data dir that cannot be created is a start failure (1), not a crash.
  r = test::Run(bin, {"--data-dir", "/proc/lego-cannot-exist", "--gm", "127.0.0.1:1", "--metrics", "off"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("data dir"), std::string::npos) << r.err;
  // A port already taken.
  auto gm = test::StartDaemon("gm", dir.path(), "gm", {"--metrics", "off"});
  r = test::Run(test::BinDir() + "/lego-gm",
                {"--data-dir", dir.path() + "/gm2", "--listen", gm.addr.ToString(), "--metrics", "off"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("listen on"), std::string::npos) << r.err;
  // A ready file that cannot be written fails the start after everything else has started (threads, the
  // gm's registration): each kind stops what it started and exits 1, not with a crash on the way out.
  for (const std::string kind : {"mmon", "pmon", "smon"}) {
    r = test::Run(test::BinDir() + "/lego-" + kind,
                  {"--data-dir", dir.path() + "/" + kind, "--gm", gm.addr.ToString(), "--metrics", "off",
                   "--ready-file", "/proc/lego-cannot-exist/ready"});
    EXPECT_EQ(r.exit_code, 1) << kind << ": " << r.err;
    EXPECT_NE(r.err.find("/proc/lego-cannot-exist/ready"), std::string::npos) << kind << ": " << r.err;
  }
}

}  // namespace
}  // namespace lego

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  lego::InitLogging("test", "warn");
  return RUN_ALL_TESTS();
}
