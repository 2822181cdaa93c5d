// End-to-end tests of disaggregated storage: real programs (tar, sqlite3, Python) under `lego run` in vNodes,
// their files going through the pmon's FUSE mount, the mmon's buffer cache and the smon's file store, over
// real UCX. Each test starts its own cluster (gm, smon, mmon, pmon as processes) so that it can kill and
// restart components.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "messaging/remote_fs.h"
#include "support/test_support.h"

namespace lego {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class StorageTest : public ::testing::Test {
 protected:
  virtual std::string BufferCache() const { return "32M"; }
  // Missed heartbeats (of 300 ms) before the gm declares a member dead.
  virtual std::string HeartbeatMisses() const { return "3"; }
  // How long the mmon waits for the smon before a request fails with EIO.
  virtual int StorageTimeoutMs() const { return 2000; }

  void SetUp() override {
    gm_ = std::make_unique<test::Daemon>(
        test::StartDaemon("gm", dir_.path(), "gm",
                          {"--heartbeat-interval-ms", "300", "--heartbeat-misses", HeartbeatMisses()}));
    gm_addr_ = gm_->addr.ToString();
    StartSmon();
    mmon_ = std::make_unique<test::Daemon>(test::StartDaemon(
        "mmon", dir_.path(), "mmon-0",
        {"--gm", gm_addr_, "--name", "mmon-0", "--capacity", "256M", "--buffer-cache", BufferCache(),
         "--storage-timeout-ms", std::to_string(StorageTimeoutMs()), "--flush-interval-ms", "500"}));
    pmon_ = std::make_unique<test::Daemon>(StartPmon("pmon-0"));
    ASSERT_TRUE(test::WaitFor([&] { return AliveCount() == 3; }, 10s))
        << Lego({"status", "--gm", gm_addr_}).out;
  }

  void TearDown() override {
    // A pmon stops its mounts on SIGTERM; a SIGKILL would leave them behind (TempDir detaches them anyway).
    for (auto* p : {pmon_.get(), pmon2_.get()}) {
      if (!p) continue;
      p->proc.Signal(SIGTERM);
      p->proc.Wait(15s);
    }
    pmon_.reset();
    pmon2_.reset();
    test::DetachMountsBelow(dir_.path());
  }

  void StartSmon() {
    smon_ = std::make_unique<test::Daemon>(test::StartDaemon(
        "smon", dir_.path(), "smon-0", {"--gm", gm_addr_, "--name", "smon-0", "--capacity", "128M"}));
  }
  test::Daemon StartPmon(const std::string& name) {
    return test::StartDaemon(
        "pmon", dir_.path(), name,
        {"--gm", gm_addr_, "--name", name, "--excache", "64M", "--storage-timeout-ms", "2000"});
  }

  int AliveCount() {
    auto r = Lego({"status", "--gm", gm_addr_, "--json"});
    if (r.exit_code != 0) return -1;
    int alive = 0;
    for (auto& c : json::parse(r.out))
      if (c["state"] == "alive" && c["kind"] != "gm") ++alive;
    return alive;
  }

  test::RunResult Lego(std::vector<std::string> args, std::chrono::seconds timeout = 120s) {
    return test::Run(test::BinDir() + "/lego", args, {{"LEGO_STATE_DIR", dir_.path() + "/nostate"}}, timeout);
  }
  // `lego run` in a vNode on pmon `pmon` (default pmon-0).
  test::RunResult Run(const std::string& vnode, std::vector<std::string> argv,
                      const std::string& pmon = "pmon-0", std::chrono::seconds timeout = 180s) {
    std::vector<std::string> args{
        "run",    "--gm", gm_addr_, "--pmon-socket", fmt::format("{}/{}/pmon.sock", dir_.path(), pmon),
        "--pmon", pmon};
    if (!vnode.empty()) args.insert(args.end(), {"--vnode", vnode});
    args.push_back("--");
    args.insert(args.end(), argv.begin(), argv.end());
    return Lego(args, timeout);
  }
  test::RunResult Sh(const std::string& vnode, const std::string& script,
                     const std::string& pmon = "pmon-0") {
    return Run(vnode, {"/bin/sh", "-c", script}, pmon);
  }
  void CreateVnode(const std::string& name) {
    auto r = Lego({"vnode", "create", name, "--gm", gm_addr_});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  // Where the smon keeps a vNode's files.
  std::string SmonDir(int id) { return fmt::format("{}/smon-0/vnodes/{}", dir_.path(), id); }
  // A second mmon (mmon-1), so that a vNode's buffer cache has somewhere to move to.
  void StartSecondMmon() {
    mmon1_ = std::make_unique<test::Daemon>(
        test::StartDaemon("mmon", dir_.path(), "mmon-1",
                          {"--gm", gm_addr_, "--name", "mmon-1", "--capacity", "256M", "--buffer-cache",
                           BufferCache(), "--storage-timeout-ms", "2000", "--flush-interval-ms", "500"}));
    ASSERT_TRUE(test::WaitFor([&] { return AliveCount() == 4; }, 10s));
  }
  // A numeric field of the vNode as lego-gm lists it now ("id", "cache_mmon_id"...; 0: no such vNode).
  uint32_t VnodeField(const std::string& vnode, const char* field) {
    for (auto& v : json::parse(Lego({"vnode", "ls", "--gm", gm_addr_, "--json"}).out))
      if (v["name"] == vnode) return v[field].get<uint32_t>();
    return 0;
  }
  // The id of the vNode's buffer-cache mmon (0: unknown).
  uint32_t CacheMmon(const std::string& vnode) { return VnodeField(vnode, "cache_mmon_id"); }
  // A messenger in the test process, to send FS requests as a pmon does (null if it cannot start).
  std::unique_ptr<msg::Messenger> InProcessClient() {
    msg::MessengerOptions o;
    o.name = "test-pmon";
    auto m = msg::Messenger::Create(o);
    if (!m.ok() || !m.value()->Start().ok()) return nullptr;
    return std::move(m.value());
  }
  // kill -9 of the mmon with member id `id` (mmon-0 or mmon-1).
  void KillMmon(uint32_t id) {
    int pid = 0;
    for (auto& c : json::parse(Lego({"status", "--gm", gm_addr_, "--json"}).out))
      if (c["id"].get<uint32_t>() == id) pid = c["pid"].get<int>();
    test::Daemon* victim = mmon_->proc.pid() == pid ? mmon_.get() : mmon1_.get();
    ASSERT_TRUE(victim != nullptr && victim->proc.pid() == pid) << "no mmon with id " << id;
    victim->proc.Kill9();
  }

  test::TempDir dir_;
  std::string gm_addr_;
  std::unique_ptr<test::Daemon> gm_, smon_, mmon_, mmon1_, pmon_, pmon2_;
};

TEST_F(StorageTest, SourceTreeTarredAndCopiedInVnodeIsByteIdentical) {
  CreateVnode("tar");
  const std::string src = LEGO_SOURCE_DIR;
  const std::string out = dir_.path() + "/back.tar";
  auto r =
      Sh("tar", fmt::format("tar -C {} -cf - src tests docs | tar -xf - && tar -cf {} src tests docs && "
                            "cp -a src copy && diff -r src copy && cp -r docs/. docs2 && diff -r docs docs2",
                            src, out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  fs::create_directories(dir_.path() + "/back");
  ASSERT_EQ(test::Run("/bin/tar", {"-C", dir_.path() + "/back", "-xf", out}).exit_code, 0);
  for (const char* d : {"src", "tests", "docs"}) {
    auto diff = test::Run("/usr/bin/diff", {"-r", src + "/" + d, dir_.path() + "/back/" + d});
    EXPECT_EQ(diff.exit_code, 0) << d << ": " << diff.out.substr(0, 2000);
  }
  // The files really live on the smon.
  EXPECT_TRUE(fs::exists(SmonDir(1) + "/src/protocol/fs.h"));
}

TEST_F(StorageTest, SqliteInsertsHundredThousandRowsAndPassesIntegrityCheck) {
  CreateVnode("db");
  auto r = Sh(
      "db",
      "sqlite3 test.db 'CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER);' && "
      "sqlite3 test.db 'BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<100000) "
      "INSERT INTO t(a,b) SELECT hex(randomblob(16)), x FROM c; COMMIT;' && "
      "sqlite3 test.db 'CREATE INDEX ib ON t(b); SELECT count(*), sum(b) FROM t; PRAGMA integrity_check;'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "100000|5000050000\nok\n");
  // Another program, later, reads the same database.
  r = Sh("db", "sqlite3 test.db 'SELECT count(*) FROM t WHERE b % 1000 = 0; PRAGMA integrity_check;'");
  EXPECT_EQ(r.out, "100\nok\n") << r.err;
}

TEST_F(StorageTest, PythonFileOperationsMatchLocalRun) {
  CreateVnode("py");
  const std::string script = std::string(LEGO_SOURCE_DIR) + "/tests/programs/fileops.py";
  fs::create_directories(dir_.path() + "/local");
  auto local = test::Run("/bin/sh", {"-c", fmt::format("cd {}/local && python3 {}", dir_.path(), script)});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  auto lego = Run("py", {"/usr/bin/python3", script});
  ASSERT_EQ(lego.exit_code, 0) << lego.err;
  EXPECT_EQ(lego.out, local.out);
  EXPECT_NE(lego.out.find("ok\n"), std::string::npos);
}

TEST_F(StorageTest, StartsInTheVnodeMountWithItsRootInTheEnvironment) {
  auto r = Sh("", "echo $LEGO_VNODE; pwd; echo $LEGO_VNODE_ROOT; echo hi > f; cat f");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string mp = dir_.path() + "/pmon-0/vnodes/default";
  EXPECT_EQ(r.out, fmt::format("default\n{}\n{}\nhi\n", mp, mp));
  auto ls = Lego({"vnode", "ls", "--gm", gm_addr_, "--json"});
  ASSERT_EQ(ls.exit_code, 0);
  auto j = json::parse(ls.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["name"], "default");
  // Written back by the mmon's buffer cache within its flush interval (500 ms here).
  const std::string on_smon = SmonDir(j[0]["id"].get<int>()) + "/f";
  EXPECT_TRUE(test::WaitFor([&] { return ReadAll(on_smon) == "hi\n"; }, 5s)) << ReadAll(on_smon);
}

TEST_F(StorageTest, FsyncedDataSurvivesKill9OfTheSmon) {
  CreateVnode("dur");
  // 4 MB fsync'ed, and a database with committed rows.
  auto r = Sh(
      "dur",
      "head -c 4194304 /dev/urandom > data.bin && python3 -c \"import os; fd=os.open('data.bin', os.O_RDWR); "
      "os.fsync(fd)\" && sha256sum data.bin && "
      "sqlite3 db 'CREATE TABLE t(x); INSERT INTO t VALUES(1),(2),(3);'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string sum = r.out;
  // While a writer commits row after row, the smon dies.
  auto writer =
      test::Process(test::BinDir() + "/lego",
                    {"run", "--gm", gm_addr_, "--pmon-socket", dir_.path() + "/pmon-0/pmon.sock", "--vnode",
                     "dur", "--", "/bin/sh", "-c",
                     "for i in $(seq 1 2000); do sqlite3 db \"INSERT INTO t VALUES($i);\" || exit 1; done"},
                    dir_.path() + "/writer.log");
  std::this_thread::sleep_for(1500ms);
  smon_->proc.Kill9();
  EXPECT_NE(writer.Wait(60s), -1) << "the program hung after its smon died";
  StartSmon();
  ASSERT_TRUE(test::WaitFor([&] { return AliveCount() == 3; }, 10s));
  // The mmon finds the restarted smon by itself; the first request may still fail while the gm catches up.
  test::RunResult after;
  ASSERT_TRUE(test::WaitFor(
      [&] {
        after = Sh("dur",
                   "sha256sum data.bin && sqlite3 db 'PRAGMA integrity_check; SELECT count(*) >= 3 FROM t;'");
        return after.exit_code == 0;
      },
      20s))
      << after.err;
  EXPECT_EQ(after.out, sum + "ok\n1\n");
}

TEST_F(StorageTest, DeadSmonGivesEioPromptlyNotAHang) {
  CreateVnode("eio");
  ASSERT_EQ(Sh("eio", "mkdir d && echo x > d/f").exit_code, 0);
  smon_->proc.Stop();  // silent, not gone: only the timeout can tell
  auto t0 = std::chrono::steady_clock::now();
  auto r = Sh("eio", "ls d/f; echo y > d/g; echo rc=$?");
  auto took = std::chrono::steady_clock::now() - t0;
  kill(smon_->proc.pid(), SIGCONT);
  EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << r.out << r.err;
  // --storage-timeout-ms 2000 at the mmon; the pmon gives up 2 s after that; some slack for a busy CI
  // machine.
  EXPECT_LT(took, 15s);
  // Once the smon answers again, so do the files.
  EXPECT_TRUE(test::WaitFor([&] { return Sh("eio", "echo z > d/h && cat d/f").out == "x\n"; }, 20s));
}

// kill -9 of the mmon that holds a vNode's buffer cache: a program started right after it (before the gm has
// noticed) pauses until the gm moves the cache to the other mmon, and then works, rather than failing with
// EIO; what was fsync'ed is all there.
TEST_F(StorageTest, ProgramsRideOutTheDeathOfTheVnodesCacheMmon) {
  StartSecondMmon();
  CreateVnode("ride");
  auto w = Sh("ride", "echo hello > f && sync f && cat f");
  ASSERT_EQ(w.exit_code, 0) << w.err;
  const uint32_t home = CacheMmon("ride");
  ASSERT_NE(home, 0u);
  KillMmon(home);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = Sh("ride", "cat f && echo again > g && cat g");
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello\nagain\n");
  // Detection takes about 1 s here (3 heartbeats of 300 ms); the requests wait up to 2 s.
  EXPECT_LT(took, 15s);
  const uint32_t moved = CacheMmon("ride");
  EXPECT_NE(moved, home);
  EXPECT_NE(moved, 0u);
}

// Create, mkdir, rename, unlink and rmdir are not idempotent, yet they too wait out a dead cache mmon: the
// pmon's RemoteFs stamps each with a request id and sends it again along the vNode's new route, and the
// smon runs an id once (its duplicate-request cache). Driven from the test process with the pmon's RemoteFs,
// so that the first request after the kill is a rename (through a FUSE mount, a lookup would go first).
TEST_F(StorageTest, MetadataRequestsRideOutTheDeathOfTheCacheMmonAndRunOnce) {
  StartSecondMmon();
  CreateVnode("meta");
  const uint32_t vnode = VnodeField("meta", "id");
  ASSERT_NE(vnode, 0u);
  auto client = InProcessClient();
  ASSERT_TRUE(client);
  msg::RemoteFs rfs(*client, gm_->addr,
                    msg::RemoteFsOptions{msg::RemoteFsOptions::Target::kCacheMmon, msg::Millis(8000)});
  auto op = [&](proto::FsOp what, const std::string& path, const std::string& path2 = "", uint64_t id = 0) {
    proto::FsRequest r;
    r.op = what;
    r.f.vnode = vnode;
    r.f.mode = 0755;
    r.f.request_id = id;
    r.path = path;
    r.path2 = path2;
    return rfs.Execute(r).err();
  };
  ASSERT_EQ(op(proto::FsOp::kMkdir, "a"), 0);  // the route to the cache mmon is now open
  KillMmon(CacheMmon("meta"));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(op(proto::FsOp::kRename, "a", "b"), 0);  // EIO before request ids
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
  EXPECT_GE(rfs.retried(), 1u);
  EXPECT_EQ(op(proto::FsOp::kMkdir, "b/c"), 0);
  EXPECT_EQ(op(proto::FsOp::kRmdir, "b/c"), 0);
  EXPECT_TRUE(fs::is_directory(SmonDir(vnode) + "/b"));
  EXPECT_FALSE(fs::exists(SmonDir(vnode) + "/a"));
  // The id travels pmon -> mmon -> smon: the same request sent twice runs once; a new one runs.
  EXPECT_EQ(op(proto::FsOp::kMkdir, "d", "", 0x8000'0000'0000'00d0), 0);
  EXPECT_EQ(op(proto::FsOp::kMkdir, "d", "", 0x8000'0000'0000'00d0), 0);
  EXPECT_EQ(op(proto::FsOp::kMkdir, "d"), EEXIST);
  double replayed = -1;
  for (auto& c : json::parse(Lego({"stats", "--gm", gm_addr_, "--json"}).out))
    if (c["kind"] == "smon") replayed = c["stats"].value("lego_smon_fs_replayed_total", -1.0);
  EXPECT_GE(replayed, 1);
  client->Shutdown();
}

// A vNode whose smon is stopped does not hold up another vNode cached on the same mmon: each vNode has a
// buffer cache (and at most two of the mmon's FS threads) of its own. Before, vNode a's requests, each stuck
// until its timeout, held the one cache, and vNode b's requests waited behind them.
// The gm notices a stopped member only after 30 missed heartbeats (9 s): until then a stopped smon's vNodes
// have their requests stuck for the whole timeout, rather than refused at once as the gm's dead smon's.
class StorageSlowDetectionTest : public StorageTest {
 protected:
  std::string HeartbeatMisses() const override { return "30"; }
  // Stuck requests hold their threads this long: a vNode that waits behind them waits seconds.
  int StorageTimeoutMs() const override { return 4000; }
};

TEST_F(StorageSlowDetectionTest, AStoppedSmonDoesNotHoldUpOtherVnodesOnTheSameMmon) {
  auto smon1 = test::StartDaemon("smon", dir_.path(), "smon-1",
                                 {"--gm", gm_addr_, "--name", "smon-1", "--capacity", "128M"});
  ASSERT_TRUE(test::WaitFor([&] { return AliveCount() == 4; }, 10s));
  std::map<std::string, uint32_t> smon_id;
  for (auto& c : json::parse(Lego({"status", "--gm", gm_addr_, "--json"}).out))
    if (c["kind"] == "smon") smon_id[c["name"].get<std::string>()] = c["id"].get<uint32_t>();
  // a and a2 on smon-0, b on smon-1; all three cached on the one mmon.
  for (const auto& [name, smon] : {std::pair{"a", "smon-0"}, {"a2", "smon-0"}, {"b", "smon-1"}})
    ASSERT_EQ(
        Lego({"vnode", "create", name, "--smon", std::to_string(smon_id[smon]), "--gm", gm_addr_}).exit_code,
        0);
  const uint32_t a = VnodeField("a", "id"), a2 = VnodeField("a2", "id");
  ASSERT_EQ(Sh("a", "echo one > f && sync f").exit_code, 0);
  ASSERT_EQ(Sh("b", "seq 1 100000 > f && sync f").exit_code, 0);

  // a's and a2's smon stops; four threads keep sending their requests, each stuck until its 4 s timeout (two
  // stuck vNodes: with a limit per vNode rather than per smon they held all four of the mmon's FS threads).
  smon_->proc.Stop();
  auto client = InProcessClient();
  ASSERT_TRUE(client);
  msg::RemoteFs rfs(*client, gm_->addr,
                    msg::RemoteFsOptions{msg::RemoteFsOptions::Target::kCacheMmon, msg::Millis(4000)});
  std::atomic<bool> stop{false};
  std::atomic<int> stuck{0};
  std::vector<std::thread> pressure;
  for (int i = 0; i < 4; ++i)
    pressure.emplace_back([&, i] {
      while (!stop) {
        proto::FsRequest r;
        r.op = proto::FsOp::kGetattr;  // always goes to the smon
        r.f.vnode = i % 2 ? a2 : a;
        r.path = i == 0 ? "f" : "";
        if (rfs.Execute(r).err() != 0) ++stuck;
      }
    });
  std::this_thread::sleep_for(200ms);  // their first requests are in (and stuck until 4 s after)
  const auto t0 = std::chrono::steady_clock::now();
  auto r = Sh("b", "md5sum < f && for i in $(seq 20); do echo $i > g$i; done && cat g20");
  const auto took = std::chrono::steady_clock::now() - t0;
  stop = true;
  for (auto& t : pressure) t.join();
  smon_->proc.Signal(SIGCONT);
  client->Shutdown();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, test::Run("/bin/sh", {"-c", "seq 1 100000 | md5sum"}).out + "20\n");
  // About 0.2 s here. With one cache for both vNodes, b's requests waited behind a's stuck ones past their
  // own timeout: b's program failed with EIO. With a2 keyed by its own id until the mmon had looked up its
  // smon, a's and a2's first requests took all four FS threads: b waited one or two of their timeouts
  // (1.6-3.6 s with a 2 s timeout).
  EXPECT_LT(took, 2500ms) << "vNode b waited for vNode a's stopped smon";
  EXPECT_GT(stuck.load(), 0);                // a's requests really were stuck (and failed at their timeout)
  EXPECT_EQ(Sh("a", "cat f").out, "one\n");  // and a is served again once its smon runs
}

TEST_F(StorageTest, ProcessInOneVnodeCannotReachAnothersFiles) {
  CreateVnode("a");
  CreateVnode("b");
  ASSERT_EQ(Sh("a", "mkdir sub && echo secret > sub/s.txt").exit_code, 0);
  auto r = Sh(
      "b",
      "for p in ../a/sub/s.txt \"$LEGO_VNODE_ROOT/../a/sub/s.txt\" /proc/self/cwd/../a/sub/s.txt; do "
      "cat $p && echo READ; done; ls ../a && echo LISTED; echo evil > ../a/evil && echo WROTE; "
      "mkdir ../a/x && echo MKDIR; mv ../a/sub ../a/moved && echo MOVED; rm ../a/sub/s.txt && echo REMOVED; "
      "python3 -c \"open('../a/sub/s.txt').read(); print('PYREAD')\"; "
      "sh -c 'cat ../a/sub/s.txt' && echo CHILDREAD; true");
  for (const char* bad : {"READ", "LISTED", "WROTE", "MKDIR", "MOVED", "REMOVED", "PYREAD", "CHILDREAD"})
    EXPECT_EQ(r.out.find(bad), std::string::npos) << bad << "\n" << r.out << r.err;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  // a's file is intact on the smon once the mmon's buffer cache has written it back (every 500 ms here: the
  // attempts above may all be refused sooner than that).
  const std::string on_smon = SmonDir(1) + "/sub/s.txt";
  EXPECT_TRUE(test::WaitFor([&] { return ReadAll(on_smon) == "secret\n"; }, 5s)) << ReadAll(on_smon);
  EXPECT_FALSE(fs::exists(SmonDir(1) + "/evil"));
  EXPECT_FALSE(fs::exists(SmonDir(1) + "/x"));
  // And it still reads its own.
  EXPECT_EQ(Sh("a", "cat sub/s.txt").out, "secret\n");
}

TEST_F(StorageTest, FullSmonGivesEnospc) {
  CreateVnode("full");
  auto r =
      Sh("full",
         "python3 -c \"\nimport errno, os\nf = open('big', 'wb')\ntry:\n  for i in range(200):\n"
         "    f.write(b'x' * (1 << 20)); f.flush()\n  os.fsync(f.fileno())\n  print('no error')\n"
         "except OSError as e:\n  print(errno.errorcode[e.errno])\n\"; rm -f big; echo small > s && cat s");
  EXPECT_EQ(r.out, "ENOSPC\nsmall\n") << r.err;
}

TEST_F(StorageTest, WhatOnePmonWritesAnotherReads) {
  CreateVnode("shared");
  pmon2_ = std::make_unique<test::Daemon>(StartPmon("pmon-1"));
  ASSERT_TRUE(test::WaitFor([&] { return AliveCount() == 4; }, 10s));
  ASSERT_EQ(Sh("shared", "seq 1 100000 > numbers && echo one > note", "pmon-0").exit_code, 0);
  auto r = Sh("shared", "md5sum numbers; cat note; echo two >> note", "pmon-1");
  EXPECT_EQ(r.out, test::Run("/bin/sh", {"-c", "seq 1 100000 | md5sum | sed 's/-/numbers/'"}).out + "one\n")
      << r.err;
  EXPECT_EQ(Sh("shared", "cat note", "pmon-0").out, "one\ntwo\n");
}

TEST_F(StorageTest, VnodeCommandsAndTheTableSurviveAGmRestart) {
  EXPECT_EQ(Lego({"vnode", "create", "bad/name", "--gm", gm_addr_}).exit_code, 2);
  CreateVnode("keep");
  CreateVnode("drop");
  auto dup = Lego({"vnode", "create", "keep", "--gm", gm_addr_});
  EXPECT_EQ(dup.exit_code, 1);
  EXPECT_NE(dup.err.find("exists"), std::string::npos) << dup.err;
  ASSERT_EQ(Sh("drop", "echo x > f").exit_code, 0);
  ASSERT_TRUE(fs::exists(SmonDir(2) + "/f"));

  // Refused while a process runs in it, unless --force.
  auto sleeper = test::Process(test::BinDir() + "/lego",
                               {"run", "--gm", gm_addr_, "--pmon-socket", dir_.path() + "/pmon-0/pmon.sock",
                                "--vnode", "drop", "--", "/bin/sleep", "30"},
                               dir_.path() + "/sleeper.log");
  std::this_thread::sleep_for(1s);
  auto rm = Lego({"vnode", "rm", "drop", "--gm", gm_addr_});
  EXPECT_EQ(rm.exit_code, 1);
  EXPECT_NE(rm.err.find("sleep"), std::string::npos) << rm.err;
  const std::string drop_mount = dir_.path() + "/pmon-0/vnodes/drop";
  EXPECT_NE(ReadAll("/proc/self/mounts").find(drop_mount), std::string::npos);
  rm = Lego({"vnode", "rm", "drop", "--force", "--gm", gm_addr_});
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_FALSE(fs::exists(SmonDir(2)));
  EXPECT_EQ(ReadAll("/proc/self/mounts").find(drop_mount), std::string::npos) << "the pmon kept the mount";
  sleeper.Kill9();
  EXPECT_EQ(Lego({"vnode", "rm", "drop", "--gm", gm_addr_}).exit_code, 1);

  // A restarted gm (same address and data dir) still knows every vNode and where it lives, and numbers
  // the monitors as before.
  const auto smon_id = json::parse(Lego({"vnode", "ls", "--gm", gm_addr_, "--json"}).out)[0]["smon_id"];
  gm_->proc.Kill9();
  gm_ = std::make_unique<test::Daemon>(
      test::StartDaemon("gm", dir_.path(), "gm",
                        {"--listen", gm_addr_, "--heartbeat-interval-ms", "300", "--heartbeat-misses", "3"}));
  ASSERT_TRUE(test::WaitFor([&] { return AliveCount() == 3; }, 15s));
  auto ls = Lego({"vnode", "ls", "--gm", gm_addr_, "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  auto j = json::parse(ls.out);
  ASSERT_EQ(j.size(), 1u) << ls.out;
  EXPECT_EQ(j[0]["name"], "keep");
  EXPECT_EQ(j[0]["id"], 1);
  EXPECT_TRUE(j[0]["smon_alive"].get<bool>());
  EXPECT_EQ(j[0]["smon_id"], smon_id);
  CreateVnode("next");  // ids are never reused
  j = json::parse(Lego({"vnode", "ls", "--gm", gm_addr_, "--json"}).out);
  EXPECT_EQ(j[1]["id"], 3);

  // --smon takes the smon's name too.
  auto named = Lego({"vnode", "create", "named", "--smon", "smon-0", "--gm", gm_addr_});
  EXPECT_EQ(named.exit_code, 0) << named.err;
  auto unknown = Lego({"vnode", "create", "other", "--smon", "smon-9", "--gm", gm_addr_});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("--smon smon-9: no storage monitor of that name (there are: smon-0)"),
            std::string::npos)
      << unknown.err;
}

// The same programs with the buffer cache turned off (every request goes through to the smon).
class NoBufferCacheStorageTest : public StorageTest {
 protected:
  std::string BufferCache() const override { return "0"; }
};

TEST_F(NoBufferCacheStorageTest, TarAndSqliteWork) {
  CreateVnode("nc");
  auto r =
      Sh("nc", fmt::format("tar -C {} -cf - src | tar -xf - && diff -r {}/src src && echo same && "
                           "sqlite3 db 'CREATE TABLE t(x); INSERT INTO t VALUES(1); PRAGMA integrity_check;'",
                           LEGO_SOURCE_DIR, LEGO_SOURCE_DIR));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "same\nok\n");
}

}  // namespace
}  // namespace lego
