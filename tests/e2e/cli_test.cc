// End-to-end tests of the `lego` CLI: up, status, stats, down, and their error messages.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace lego {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

class CliTest : public ::testing::Test {
 protected:
  void TearDown() override {
    // Whatever happened, leave nothing running.
    Lego({"down", "--timeout", "5"});
  }
  test::RunResult Lego(std::vector<std::string> args) {
    return test::Run(test::BinDir() + "/lego", args, {{"LEGO_STATE_DIR", state_dir()}}, 120s);
  }
  std::string state_dir() { return dir_.path() + "/state"; }
  json StatusJson() {
    auto r = Lego({"status", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::array();
  }
  json Component(const std::string& name) {
    for (auto& c : StatusJson())
      if (c["name"] == name) return c;
    return json();
  }
  bool PidAlive(int pid) { return kill(pid, 0) == 0; }

  test::TempDir dir_;
};

TEST_F(CliTest, UpStatusDownLeavesNothingBehind) {
  auto up = Lego({"up", "--mmon-capacity", "256M", "--excache", "64M"});
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_NE(up.out.find("4/4 joined"), std::string::npos) << up.out;
  EXPECT_NE(up.out.find("cluster is up"), std::string::npos);

  auto status = Lego({"status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("5 members: 5 alive, 0 dead"), std::string::npos) << status.out;

  auto j = StatusJson();
  ASSERT_EQ(j.size(), 5u);
  std::map<std::string, int> kinds;
  std::vector<int> pids;
  for (auto& c : j) {
    kinds[c["kind"]]++;
    for (const char* key : {"kind", "id", "address", "state", "pid", "capacity_bytes", "used_bytes"})
      EXPECT_TRUE(c.contains(key)) << key;
    EXPECT_EQ(c["state"], "alive");
    pids.push_back(c["pid"]);
    EXPECT_TRUE(PidAlive(c["pid"]));
  }
  EXPECT_EQ(kinds["gm"], 1);
  EXPECT_EQ(kinds["pmon"], 1);
  EXPECT_EQ(kinds["mmon"], 2);
  EXPECT_EQ(kinds["smon"], 1);
  EXPECT_EQ(Component("mmon-0")["capacity_bytes"], 256ull << 20);
  EXPECT_EQ(Component("pmon-0")["capacity_bytes"], 64ull << 20);

  auto stats = Lego({"stats", "--json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  auto sj = json::parse(stats.out);
  ASSERT_EQ(sj.size(), 5u);
  for (auto& m : sj) EXPECT_TRUE(m.contains("stats")) << m.dump();
  auto text_stats = Lego({"stats"});
  EXPECT_NE(text_stats.out.find("lego_msg_requests_served_total"), std::string::npos);

  auto down = Lego({"down"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  for (int pid : pids) EXPECT_TRUE(test::WaitFor([&] { return !PidAlive(pid); }, 5s)) << pid;
  EXPECT_FALSE(fs::exists(state_dir()));
}

// LEGO_EXIT_WITH_PID: the daemons of a cluster stop when the process named there ends (the test harness
// names itself, so that a test killed by its timeout leaves no daemons behind). Here the owner is a
// `sleep`, killed once the cluster is up.
TEST_F(CliTest, DaemonsStopWhenTheirOwnerProcessEnds) {
  const pid_t owner = fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    execl("/bin/sleep", "sleep", "120", nullptr);
    _exit(127);
  }
  auto up = test::Run(test::BinDir() + "/lego", {"up"},
                      {{"LEGO_STATE_DIR", state_dir()}, {"LEGO_EXIT_WITH_PID", std::to_string(owner)}}, 120s);
  ASSERT_EQ(up.exit_code, 0) << up.err;
  std::vector<int> pids;
  for (auto& c : StatusJson()) pids.push_back(c["pid"]);
  ASSERT_EQ(pids.size(), 5u);
  kill(owner, SIGKILL);
  waitpid(owner, nullptr, 0);
  // Gone or a zombie not reaped yet (they were `lego up`'s children): either way, not running.
  auto running = [](int pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return false;
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
  };
  for (int pid : pids) EXPECT_TRUE(test::WaitFor([&] { return !running(pid); }, 10s)) << pid;
}

TEST_F(CliTest, KilledMmonShowsDeadInStatusWithinSeconds) {
  ASSERT_EQ(Lego({"up"}).exit_code, 0);
  int pid = Component("mmon-1")["pid"];
  kill(pid, SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(test::WaitFor([&] { return Component("mmon-1")["state"] == "dead"; }, 10s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 6s);
  auto status = Lego({"status"});
  EXPECT_NE(status.out.find("4 alive, 1 dead"), std::string::npos) << status.out;
  // stats still answers, marking the dead member unavailable.
  auto stats = Lego({"stats"});
  EXPECT_EQ(stats.exit_code, 0);
  EXPECT_NE(stats.out.find("unavailable"), std::string::npos) << stats.out;
  // down reports the dead daemon and still cleans up.
  auto down = Lego({"down"});
  EXPECT_EQ(down.exit_code, 0);
  EXPECT_NE(down.out.find("mmon-1"), std::string::npos);
  EXPECT_NE(down.out.find("already exited"), std::string::npos) << down.out;
  EXPECT_FALSE(fs::exists(state_dir()));
}

// `lego restart NAME`: a killed mmon comes back (its flags and data dir; a new pid and port), the gm comes
// back on its address and every monitor registers with it again, a pmon killed on purpose comes back, and a
// program runs afterwards.
TEST_F(CliTest, RestartBringsBackAKilledMonitorAndTheGm) {
  auto none = Lego({"restart", "mmon-0"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("no cluster is up"), std::string::npos) << none.err;
  ASSERT_EQ(Lego({"up", "--mmon-capacity", "256M", "--excache", "64M"}).exit_code, 0);
  const int old_mmon = Component("mmon-1")["pid"];
  ASSERT_EQ(kill(old_mmon, SIGKILL), 0);
  ASSERT_TRUE(test::WaitFor([&] { return Component("mmon-1")["state"] == "dead"; }, 10s));
  // Its pid taken by another lego process (as a reused pid would be): never signalled as if it were the mmon.
  test::Process other(test::BinDir() + "/lego",
                      {"--state-dir", state_dir(), "top", "-n", "600", "--interval-ms", "100"},
                      dir_.path() + "/top.log");
  {
    const std::string path = state_dir() + "/cluster.toml";
    std::ifstream in(path);
    std::string toml((std::istreambuf_iterator<char>(in)), {});
    const std::string was = "pid = " + std::to_string(old_mmon);
    const size_t at = toml.find(was);
    ASSERT_NE(at, std::string::npos) << toml;
    toml.replace(at, was.size(), "pid = " + std::to_string(other.pid()));
    std::ofstream(path) << toml;
  }
  auto r = Lego({"restart", "mmon-1"});
  {
    std::ifstream stat("/proc/" + std::to_string(other.pid()) + "/stat");
    std::string st((std::istreambuf_iterator<char>(stat)), {});
    const size_t paren = st.rfind(')');
    EXPECT_TRUE(paren != std::string::npos && paren + 2 < st.size() && st[paren + 2] != 'Z')
        << "lego restart signalled a process that was not the mmon: " << st;
  }
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("was not running"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mmon-1 is back"), std::string::npos) << r.out;
  json mmon = Component("mmon-1");
  EXPECT_EQ(mmon["state"], "alive");
  EXPECT_NE(mmon["pid"], old_mmon);
  EXPECT_EQ(mmon["capacity_bytes"], 256ull << 20);  // its flags again

  const std::string gm_addr = Component("gm")["address"];
  const int old_gm = Component("gm")["pid"];
  std::map<std::string, uint32_t>
      ids;  // a restarted gm numbers every monitor as before (DATA_DIR/members.json)
  for (const char* name : {"pmon-0", "mmon-0", "mmon-1", "smon-0"}) ids[name] = Component(name)["id"];
  r = Lego({"restart", "gm"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("stopped gm"), std::string::npos) << r.out;
  auto status = Lego({"status"});
  EXPECT_NE(status.out.find("5 members: 5 alive, 0 dead"), std::string::npos) << status.out;
  EXPECT_EQ(Component("gm")["address"], gm_addr);
  EXPECT_NE(Component("gm")["pid"], old_gm);
  for (const auto& [name, id] : ids) EXPECT_EQ(Component(name)["id"], id) << name;

  r = Lego({"restart", "pmon-0", "--kill"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("killed pmon-0"), std::string::npos) << r.out;
  auto run = Lego({"run", "--", "/bin/echo", "hello"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "hello\n");

  auto bad = Lego({"restart", "mmon-7"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("no component 'mmon-7' (it has gm, pmon-0, mmon-0, mmon-1, smon-0)"),
            std::string::npos)
      << bad.err;
}

TEST_F(CliTest, ClearMessagesForMisuse) {
  auto down = Lego({"down"});
  EXPECT_EQ(down.exit_code, 0);
  EXPECT_NE(down.err.find("no cluster is up"), std::string::npos) << down.err;
  auto status = Lego({"status"});
  EXPECT_EQ(status.exit_code, 1);
  EXPECT_NE(status.err.find("no cluster is up"), std::string::npos) << status.err;
  EXPECT_NE(status.err.find("lego up"), std::string::npos);

  auto bad = Lego({"up", "--excache", "banana"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--excache"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(state_dir() + "/cluster.toml"));
  EXPECT_NE(Lego({"frobnicate"}).exit_code, 0);
  auto help = Lego({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* cmd : {"up", "status", "stats", "down", "restart", "reclaim"}) {
    EXPECT_NE(help.out.find(cmd), std::string::npos) << cmd;
    auto h = Lego({cmd, "--help"});
    EXPECT_EQ(h.exit_code, 0) << cmd;
  }

  ASSERT_EQ(Lego({"up"}).exit_code, 0);
  auto twice = Lego({"up"});
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.err.find("already up"), std::string::npos) << twice.err;
  EXPECT_EQ(Lego({"stats", "--id", "999"}).exit_code, 1);

  // The gm dies: status explains, down cleans up, up works again.
  int gm_pid = Component("gm")["pid"];
  kill(gm_pid, SIGKILL);
  ASSERT_TRUE(test::WaitFor([&] { return kill(gm_pid, 0) != 0; }, 5s));
  status = Lego({"status"});
  EXPECT_EQ(status.exit_code, 1);
  EXPECT_NE(status.err.find("cannot reach the global manager"), std::string::npos) << status.err;
  EXPECT_NE(status.err.find("lego down"), std::string::npos) << status.err;
  EXPECT_EQ(Lego({"down"}).exit_code, 0);
  EXPECT_EQ(Lego({"up"}).exit_code, 0);
}

TEST_F(CliTest, StaleStateFromCrashedClusterIsCleanedByUp) {
  ASSERT_EQ(Lego({"up"}).exit_code, 0);
  for (auto& c : StatusJson()) kill(c["pid"].get<int>(), SIGKILL);
  std::this_thread::sleep_for(300ms);
  auto up = Lego({"up"});
  EXPECT_EQ(up.exit_code, 0) << up.err;
  EXPECT_NE(up.err.find("stale"), std::string::npos) << up.err;
}

}  // namespace
}  // namespace lego
