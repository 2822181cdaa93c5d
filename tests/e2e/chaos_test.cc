// Chaos suite (ctest label `chaos`, not in the default run; `scripts/test.sh --chaos`): real programs run on
// a real cluster (gm, smon, two mmons, pmon as processes) while monitors are killed, stopped and restarted at
// random. What must hold, whatever is killed:
//   - no silent corruption: a program that exits 0 printed exactly what it prints when run locally;
//   - no hang: every `lego run` ends within its deadline, and a program that fails says why on stderr;
//   - no collateral crash: a daemon that was not killed is still running after each round;
//   - recovery: once everything is back, a round with no chaos runs every program correctly, and every
//     mmon's pool is empty again after the programs are gone (no remote memory leaked by the failures).
// LEGO_CHAOS_SECONDS (default 240) bounds the chaos rounds; LEGO_CHAOS_SEED replays a run (the seed is
// printed).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace lego {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

std::string Programs() { return test::BinDir() + "/../tests/programs"; }

// One monitor process and how to start it again with the same data dir.
struct Component {
  std::string kind;
  std::vector<std::string> args;
  std::unique_ptr<test::Daemon> d;
};

// A program run under Lego, with what it must print.
struct Workload {
  std::string name;
  std::vector<std::string> lego_args;  // after `lego run --gm G --pmon-socket S`
  std::string want;                    // stdout of a correct run
};

class ChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gm_port_ = test::FreePort();
    gm_addr_ = fmt::format("127.0.0.1:{}", gm_port_);
    Add("gm", "gm",
        {"--listen", gm_addr_, "--heartbeat-interval-ms", "300", "--heartbeat-misses", "3", "--metrics",
         "off"});
    Add("smon-0", "smon", {"--gm", gm_addr_, "--name", "smon-0", "--capacity", "1G", "--metrics", "off"});
    for (const char* m : {"mmon-0", "mmon-1"})
      Add(m, "mmon",
          {"--gm", gm_addr_, "--name", m, "--capacity", "512M", "--buffer-cache", "16M",
           "--storage-timeout-ms", "2000", "--flush-interval-ms", "500", "--metrics", "off"});
    Add("pmon-0", "pmon",
        {"--gm", gm_addr_, "--name", "pmon-0", "--excache", "128M", "--storage-timeout-ms", "2000",
         "--metrics", "off"});
    ASSERT_TRUE(test::WaitFor([&] { return AliveCount() == 4; }, 20s))
        << Lego({"status", "--gm", gm_addr_}).out;
    auto v = Lego({"vnode", "create", "chaos", "--gm", gm_addr_});
    ASSERT_EQ(v.exit_code, 0) << v.err;
  }

  void TearDown() override {
    for (auto& [name, c] : comps_)
      if (c.d && name == "pmon-0") {  // a pmon stops its mounts on SIGTERM
        c.d->proc.Signal(SIGCONT);
        c.d->proc.Signal(SIGTERM);
        c.d->proc.Wait(15s);
      }
    comps_.clear();
    test::DetachMountsBelow(dir_.path());
  }

  // Over TCP: a daemon killed or stopped in the middle of a shared-memory send would leave its local peers
  // deaf (decision 009), a known limitation this suite is not about.
  void Add(const std::string& name, const std::string& kind, std::vector<std::string> args) {
    args.insert(args.end(), {"--transports", "tcp"});
    comps_[name] = Component{kind, args, nullptr};
    Start(name);
  }
  void Start(const std::string& name) {
    Component& c = comps_.at(name);
    c.d = std::make_unique<test::Daemon>(test::StartDaemon(c.kind, dir_.path(), name, c.args));
  }

  test::RunResult Lego(std::vector<std::string> args, std::chrono::seconds timeout = 60s) {
    return test::Run(test::BinDir() + "/lego", args, {{"LEGO_STATE_DIR", dir_.path() + "/nostate"}}, timeout);
  }
  int AliveCount() {
    auto r = Lego({"status", "--gm", gm_addr_, "--json"}, 10s);
    if (r.exit_code != 0) return -1;
    int alive = 0;
    try {
      for (auto& c : json::parse(r.out))
        if (c["state"] == "alive" && c["kind"] != "gm") ++alive;
    } catch (...) {
      return -1;
    }
    return alive;
  }
  uint64_t MmonUsedBytes() {
    auto r = Lego({"status", "--gm", gm_addr_, "--json"}, 10s);
    uint64_t used = 0;
    try {
      for (auto& c : json::parse(r.out))
        if (c["kind"] == "mmon" && c["state"] == "alive") used += c["used_bytes"].get<uint64_t>();
    } catch (...) {
      return UINT64_MAX;  // no answer: ask again
    }
    return used;
  }

  std::vector<Workload> Workloads() {
    std::vector<Workload> w;
    // Memory: 48 MB read back at random through a 16 MB ExCache, checked by the program itself.
    std::vector<std::string> ws{Programs() + "/working_set", "48", "2", "random"};
    auto local = test::Run(ws[0], {ws.begin() + 1, ws.end()}, {}, 120s);
    EXPECT_EQ(local.exit_code, 0) << local.err;
    std::vector<std::string> a{"--excache", "16M", "--"};
    a.insert(a.end(), ws.begin(), ws.end());
    w.push_back({"working_set", a, local.out});
    // Files: written, fsync'ed, renamed, read back and removed in the vNode.
    const std::string script =
        "set -e; d=w$$; mkdir $d; seq 1 30000 > $d/n.tmp; sync $d/n.tmp; mv $d/n.tmp $d/n; "
        "md5sum < $d/n; rm -r $d";
    auto want = test::Run("/bin/sh", {"-c", "seq 1 30000 | md5sum"});
    w.push_back({"files", {"--vnode", "chaos", "--", "/bin/sh", "-c", script}, want.out});
    // Both: Python objects on remote memory, written to a file in the vNode and read back.
    const std::string py =
        "import hashlib, os\n"
        "rows = sorted(((i * 7919) % 100003, str(i) * 3) for i in range(150000))\n"
        "name = 'p%d' % os.getpid()\n"
        "with open(name, 'w') as f:\n"
        "    f.write(repr(rows))\n"
        "    f.flush(); os.fsync(f.fileno())\n"
        "print(hashlib.md5(open(name).read().encode()).hexdigest())\n"
        "os.unlink(name)\n";
    auto pl = test::Run("/usr/bin/python3", {"-c", py}, {}, 120s);
    EXPECT_EQ(pl.exit_code, 0) << pl.err;
    w.push_back(
        {"python", {"--vnode", "chaos", "--excache", "16M", "--", "/usr/bin/python3", "-c", py}, pl.out});
    return w;
  }

  // Runs every workload at once; `during` runs meanwhile. Returns how many failed (with a reason); a wrong
  // output or a hang fails the test.
  int RunRound(const std::vector<Workload>& ws, const std::function<void()>& during, bool chaos,
               const std::string& round) {
    std::vector<test::RunResult> results(ws.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < ws.size(); ++i)
      threads.emplace_back([&, i] {
        std::vector<std::string> args{"run", "--gm", gm_addr_, "--pmon-socket",
                                      dir_.path() + "/pmon-0/pmon.sock"};
        args.insert(args.end(), ws[i].lego_args.begin(), ws[i].lego_args.end());
        results[i] = Lego(args, 150s);
      });
    if (during) during();
    for (auto& t : threads) t.join();
    int failed = 0;
    for (size_t i = 0; i < ws.size(); ++i) {
      const auto& r = results[i];
      const std::string what = fmt::format("{} {}", round, ws[i].name);
      EXPECT_NE(r.exit_code, -1) << what << ": `lego run` hung (killed after 150 s)\n"
                                 << r.err.substr(0, 2000);
      if (r.exit_code == 0) {
        EXPECT_EQ(r.out, ws[i].want) << what << ": exited 0 with the wrong output\n" << r.err.substr(0, 2000);
        continue;
      }
      ++failed;
      const std::string why = r.err.substr(0, r.err.find('\n'));
      std::printf("chaos:   %s failed (exit %d): %s\n", what.c_str(), r.exit_code, why.c_str());
      EXPECT_TRUE(chaos) << what << ": failed without chaos (exit " << r.exit_code << ")\n"
                         << r.err.substr(0, 2000);
      EXPECT_FALSE(r.err.empty()) << what << ": failed (exit " << r.exit_code << ") without saying why";
    }
    return failed;
  }

  test::TempDir dir_;
  uint16_t gm_port_ = 0;
  std::string gm_addr_;
  std::map<std::string, Component> comps_;
};

TEST_F(ChaosTest, ProgramsAndFilesSurviveRandomKillsOfMonitors) {
  const char* seed_env = std::getenv("LEGO_CHAOS_SEED");
  const uint64_t seed = seed_env ? std::strtoull(seed_env, nullptr, 10) : std::random_device()();
  const char* secs_env = std::getenv("LEGO_CHAOS_SECONDS");
  const auto budget = std::chrono::seconds(secs_env ? std::atoi(secs_env) : 240);
  std::printf("chaos: LEGO_CHAOS_SEED=%llu, %lld s\n", static_cast<unsigned long long>(seed),
              static_cast<long long>(budget.count()));
  std::mt19937_64 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const auto ws = Workloads();
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(RunRound(ws, nullptr, false, "warm-up"), 0);

  const std::vector<std::string> victims{"gm", "smon-0", "mmon-0", "mmon-1", "pmon-0"};
  const auto end = std::chrono::steady_clock::now() + budget;
  int rounds = 0, failures = 0;
  std::map<std::string, int> actions;
  while (std::chrono::steady_clock::now() < end && !HasFailure()) {
    ++rounds;
    const std::string victim = victims[uniform(0, static_cast<int>(victims.size()) - 1)];
    // Stopping (SIGSTOP) a monitor for a while instead of killing it: only the mmons and the smon (a stopped
    // gm or pmon is a pause the programs simply wait out).
    const bool stop = victim.find("mon-") != std::string::npos && victim != "pmon-0" && uniform(0, 2) == 0;
    const int delay_ms = uniform(200, 2500), down_ms = uniform(300, 4000);
    const std::string action = fmt::format("{} {}", stop ? "stop" : "kill", victim);
    ++actions[action];
    std::printf("chaos: round %d: %s after %d ms, for %d ms\n", rounds, action.c_str(), delay_ms, down_ms);
    std::fflush(stdout);
    std::vector<std::string> survivors;
    for (const auto& v : victims)
      if (v != victim) survivors.push_back(v);
    failures += RunRound(
        ws,
        [&] {
          std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
          auto& p = comps_.at(victim).d->proc;
          if (stop) {
            p.Stop();
            std::this_thread::sleep_for(std::chrono::milliseconds(down_ms));
            p.Signal(SIGCONT);
          } else {
            p.Kill9();
            p.Wait(5s);
            std::this_thread::sleep_for(std::chrono::milliseconds(down_ms));
            Start(victim);
          }
        },
        true, fmt::format("round {} ({})", rounds, action));
    for (const auto& s : survivors)
      EXPECT_TRUE(comps_.at(s).d->proc.Running())
          << s << " died in round " << rounds << " (" << action << "); its log:\n"
          << comps_.at(s).d->proc.Log().substr(0, 4000);
    ASSERT_TRUE(test::WaitFor([&] { return AliveCount() == 4; }, 30s))
        << "the cluster did not come back after round " << rounds << "\n"
        << Lego({"status", "--gm", gm_addr_}).out;
  }
  std::printf("chaos: %d rounds, %d program runs failed with a reason; actions:", rounds, failures);
  for (const auto& [a, n] : actions) std::printf(" %s x%d;", a.c_str(), n);
  std::printf("\n");

  // Everything is back: a round without chaos must run every program correctly...
  ASSERT_EQ(RunRound(ws, nullptr, false, "after the chaos"), 0);
  // ...and no remote memory of any program, killed or not, stays on the mmons (a pmon frees what its
  // killed programs left once it is back; a free that failed is retried every 5 s).
  EXPECT_TRUE(test::WaitFor([&] { return MmonUsedBytes() == 0; }, 30s))
      << MmonUsedBytes() << " bytes left on the mmons\n"
      << Lego({"status", "--gm", gm_addr_}).out;
}

}  // namespace
}  // namespace lego
