#include "cli/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <toml.hpp>

#include "cli/commands.h"

namespace lego::cli {

static std::error_code RemoveStateDir(const std::string& dir);
namespace fs = std::filesystem;

std::string DefaultStateDir() {
  if (const char* s = getenv("LEGO_STATE_DIR"); s && *s) return s;
  if (const char* x = getenv("XDG_RUNTIME_DIR"); x && *x) return fmt::format("{}/lego", x);
  return fmt::format("/tmp/lego-{}", getuid());
}

namespace {

std::string StateFile(const std::string& dir) { return dir + "/cluster.toml"; }

lego::Status WriteState(const std::string& dir, const ClusterState& s) {
  toml::value root;
  root["gm"] = s.gm_addr;
  toml::array arr;
  for (const auto& d : s.daemons) {
    toml::value t;
    t["name"] = d.name;
    t["kind"] = d.kind;
    t["binary"] = d.binary;
    t["pid"] = d.pid;
    toml::array args;
    for (const auto& a : d.args) args.push_back(a);
    t["args"] = args;
    arr.push_back(t);
  }
  root["daemon"] = arr;
  std::ostringstream text;
  text << "# Written by `lego up` and `lego restart`; read by `lego status`, `lego down` and `lego restart`. "
          "Do not edit.\n"
       << root;
  return WriteFileAtomic(StateFile(dir), text.str());
}

std::string SelfDir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : p.parent_path().string();
}

std::string TailFile(const std::string& path, int lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > size_t(lines) ? all.size() - lines : 0; i < all.size(); ++i)
    out += "    " + all[i] + "\n";
  return out;
}

Result<int> Spawn(const std::string& binary, const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(stdout);  // or the child would print our buffered output again
  std::fflush(stderr);
  int logfd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (logfd < 0) return ErrnoError("open " + log, errno);
  pid_t pid = fork();
  if (pid < 0) {
    close(logfd);
    return ErrnoError("fork", errno);
  }
  if (pid == 0) {
    setsid();  // a daemon: not killed by the terminal's Ctrl-C, not our child for long
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(logfd, 1);
    dup2(logfd, 2);
    execv(binary.c_str(), argv.data());
    fmt::print(stderr, "exec {}: {}\n", binary, strerror(errno));
    _exit(127);
  }
  close(logfd);
  return pid;
}

// Reaps our own children that exited, so that DaemonAlive sees them gone.
void ReapChildren() {
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

std::map<std::string, std::string> ReadReadyFile(const std::string& path) {
  std::map<std::string, std::string> kv;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);) {
    auto eq = l.find('=');
    if (eq != std::string::npos) kv[l.substr(0, eq)] = l.substr(eq + 1);
  }
  return kv;
}

// Waits up to `for_ms` for d to exit; true if it did.
bool AwaitExit(const DaemonRecord& d, int64_t for_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(for_ms);
  while (DaemonAlive(d) && std::chrono::steady_clock::now() < deadline) {
    ReapChildren();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ReapChildren();
  return !DaemonAlive(d);
}

int StopAll(const std::string& state_dir, const ClusterState& s, int timeout_s, bool quiet);

}  // namespace

Result<ClusterState> ReadState(const std::string& state_dir) {
  std::string path = StateFile(state_dir);
  if (!fs::exists(path)) return NotFound(fmt::format("no cluster is up (no {})", path));
  try {
    auto root = toml::parse(path);
    ClusterState s;
    s.gm_addr = toml::find_or<std::string>(root, "gm", "");
    if (root.contains("daemon")) {
      for (const auto& t : toml::find<toml::array>(root, "daemon")) {
        DaemonRecord d;
        d.name = toml::find<std::string>(t, "name");
        d.kind = toml::find<std::string>(t, "kind");
        d.binary = toml::find<std::string>(t, "binary");
        d.pid = toml::find<int>(t, "pid");
        d.args = toml::find_or<std::vector<std::string>>(t, "args", {});
        s.daemons.push_back(d);
      }
    }
    return s;
  } catch (const std::exception& e) {
    return InvalidArgument(fmt::format("{} is corrupt: {}", path, e.what()));
  }
}

bool DaemonAlive(const DaemonRecord& d) {
  if (d.pid <= 0 || kill(d.pid, 0) != 0) return false;
  std::ifstream stat(fmt::format("/proc/{}/stat", d.pid));
  std::string content((std::istreambuf_iterator<char>(stat)), {});
  auto close_paren = content.rfind(')');
  if (close_paren != std::string::npos && close_paren + 2 < content.size() && content[close_paren + 2] == 'Z')
    return false;  // a zombie has exited
  std::error_code ec;
  auto exe = fs::read_symlink(fmt::format("/proc/{}/exe", d.pid), ec);
  if (ec) return true;  // cannot tell (permissions): assume it is ours
  // A binary rebuilt or upgraded while the daemon runs shows as "NAME (deleted)": still ours.
  std::string name = exe.filename().string();
  if (const std::string del = " (deleted)"; name.size() > del.size() && name.ends_with(del))
    name.resize(name.size() - del.size());
  if (name == "lego") {
    // Between fork and exec the child still runs the lego binary: ours only if we are its parent (the `lego
    // up` or `lego restart` that started it). Any other lego process (a user's `lego run`) took a dead
    // daemon's pid.
    int ppid = 0;
    if (close_paren != std::string::npos) std::sscanf(content.c_str() + close_paren + 1, " %*c %d", &ppid);
    return ppid == getpid();
  }
  if (name != fs::path(d.binary).filename().string()) return false;
  // The same binary may be another cluster's daemon that took a dead one's pid: compare the command line
  // (recorded since `lego restart` exists; a state file without it is trusted on the binary alone).
  if (d.args.empty()) return true;
  std::ifstream f(fmt::format("/proc/{}/cmdline", d.pid));
  std::vector<std::string> argv;
  for (std::string arg; std::getline(f, arg, '\0');) argv.push_back(arg);
  if (argv.empty()) return true;  // cannot tell (it is exiting): as for the exe above
  if (argv.size() != d.args.size() + 1) return false;
  for (size_t i = 0; i < d.args.size(); ++i)  // the gm first ran with port 0 where the state has its port
    if (argv[i + 1] != d.args[i] && !(i > 0 && d.args[i - 1] == "--listen")) return false;
  return true;
}

int Up(const UpOptions& o) {
  const std::string dir = o.state_dir;
  if (auto existing = ReadState(dir); existing.ok()) {
    int alive = 0;
    for (const auto& d : existing->daemons) alive += DaemonAlive(d);
    if (alive > 0) {
      fmt::print(stderr,
                 "lego up: a cluster is already up ({} of {} daemons running, gm at {}, state in {}).\n"
                 "Run `lego status` to see it or `lego down` to stop it.\n",
                 alive, existing->daemons.size(), existing->gm_addr, dir);
      return 1;
    }
    fmt::print(stderr, "lego up: found a stale cluster in {} (all its daemons have exited); cleaning it up\n",
               dir);
    (void)RemoveStateDir(dir);
  } else if (existing.status().code() != StatusCode::kNotFound) {
    fmt::print(stderr, "lego up: {}; remove {} or run `lego down`\n", existing.status().message(), dir);
    return 1;
  }

  std::error_code ec;
  fs::create_directories(dir + "/logs", ec);
  fs::create_directories(dir + "/run", ec);
  fs::create_directories(dir + "/data", ec);
  if (ec) {
    fmt::print(stderr, "lego up: cannot create state dir {}: {}\n", dir, ec.message());
    return 1;
  }
  chmod(dir.c_str(), 0700);

  const std::string bindir = SelfDir();
  ClusterState state;
  const bool tty = isatty(STDOUT_FILENO);
  auto fail = [&](const std::string& why, const std::string& log_of) {
    fmt::print(stderr, "lego up: {}\n", why);
    if (!log_of.empty()) fmt::print(stderr, "  last lines of {}:\n{}", log_of, TailFile(log_of, 15));
    StopAll(dir, state, 5, /*quiet=*/true);
    (void)RemoveStateDir(dir);
    return 1;
  };

  auto start = [&](const std::string& name, const std::string& kind,
                   std::vector<std::string> args) -> Status {
    std::string binary = fmt::format("{}/lego-{}", bindir, kind);
    if (access(binary.c_str(), X_OK) != 0)
      return NotFound(fmt::format("{} not found (is lego installed beside its daemons?)", binary));
    args.insert(args.end(),
                {"--data-dir", fmt::format("{}/data/{}", dir, name), "--name", name, "--log-level",
                 o.log_level, "--ready-file", fmt::format("{}/run/{}.ready", dir, name)});
    if (!o.transports.empty()) args.insert(args.end(), {"--transports", o.transports});
    auto pid = Spawn(binary, args, fmt::format("{}/logs/{}.log", dir, name));
    if (!pid.ok()) return pid.status();
    state.daemons.push_back({name, kind, binary, pid.value(), args});
    return WriteState(dir, state);
  };

  fmt::print("lego up: starting the local cluster in {}\n", dir);
  Status st = start(
      "gm", "gm",
      {"--listen", fmt::format("127.0.0.1:{}", o.gm_port), "--heartbeat-interval-ms",
       std::to_string(o.heartbeat_interval_ms), "--heartbeat-misses", std::to_string(o.heartbeat_misses)});
  if (!st.ok()) return fail(st.message(), "");
  // Wait for the gm to serve; its ready file carries the bound address.
  const std::string gm_log = dir + "/logs/gm.log";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s);
  std::string gm_addr;
  while (gm_addr.empty()) {
    auto kv = ReadReadyFile(dir + "/run/gm.ready");
    if (kv.count("listen")) gm_addr = kv["listen"];
    ReapChildren();
    if (gm_addr.empty() && !DaemonAlive(state.daemons[0]))
      return fail("lego-gm exited during start-up", gm_log);
    if (gm_addr.empty() && std::chrono::steady_clock::now() > deadline)
      return fail(fmt::format("lego-gm did not start within {} s", o.timeout_s), gm_log);
    if (gm_addr.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  state.gm_addr = gm_addr;
  // A restarted gm must listen where the monitors look for it: the address it bound, not port 0.
  for (size_t i = 0; i + 1 < state.daemons[0].args.size(); ++i)
    if (state.daemons[0].args[i] == "--listen") state.daemons[0].args[i + 1] = gm_addr;
  (void)WriteState(dir, state);
  fmt::print("  gm      listening on {}\n", gm_addr);

  std::vector<std::pair<std::string, std::vector<std::string>>> monitors;
  monitors.push_back({"pmon-0",
                      {"--excache", std::to_string(o.excache), "--eviction", o.eviction, "--prefetch",
                       o.prefetch ? "true" : "false"}});
  for (int i = 0; i < o.mmons; ++i)
    monitors.push_back(
        {fmt::format("mmon-{}", i),
         {"--capacity", std::to_string(o.mmon_capacity), "--buffer-cache", std::to_string(o.buffer_cache)}});
  monitors.push_back({"smon-0", {"--capacity", std::to_string(o.smon_capacity)}});
  for (auto& [name, args] : monitors) {
    std::string kind = name.substr(0, name.find('-'));
    args.insert(args.begin(), {"--gm", gm_addr, "--listen", "127.0.0.1:0"});
    st = start(name, kind, args);
    if (!st.ok()) return fail(st.message(), "");
  }

  // Wait until every monitor has registered with the gm, showing progress.
  auto m = MakeCliMessenger();
  if (!m.ok()) return fail(m.status().ToString(), "");
  auto gm_hp = ParseHostPort(gm_addr);
  std::set<std::string> want;
  for (auto& [name, args] : monitors) want.insert(name);
  std::string last_line;
  while (true) {
    std::set<std::string> joined;
    auto members = ListMembers(*m.value(), gm_hp.value(), 1000);
    if (members.ok())
      for (const auto& r : members.value())
        if (r.fixed.state == static_cast<uint8_t>(proto::MemberState::kAlive) && want.count(r.name))
          joined.insert(r.name);
    std::string waiting;
    for (const auto& w : want)
      if (!joined.count(w)) waiting += (waiting.empty() ? "" : ", ") + w;
    std::string line = fmt::format("  waiting for monitors to register: {}/{} joined{}{}", joined.size(),
                                   want.size(), waiting.empty() ? "" : "; waiting for ", waiting);
    if (line != last_line) {
      if (tty)
        fmt::print("\r\033[K{}", line);
      else
        fmt::print("{}\n", line);
      std::fflush(stdout);
      last_line = line;
    }
    if (joined.size() == want.size()) break;
    ReapChildren();
    for (const auto& d : state.daemons)
      if (!DaemonAlive(d)) {
        if (tty) fmt::print("\n");
        return fail(fmt::format("lego-{} ({}) exited during start-up", d.kind, d.name),
                    fmt::format("{}/logs/{}.log", dir, d.name));
      }
    if (std::chrono::steady_clock::now() > deadline) {
      if (tty) fmt::print("\n");
      return fail(fmt::format("monitors did not register within {} s (waiting for {})", o.timeout_s, waiting),
                  fmt::format("{}/logs/{}.log", dir, waiting.substr(0, waiting.find(','))));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (tty) fmt::print("\n");
  m.value()->Shutdown();
  fmt::print(
      "lego up: cluster is up: 1 gm, 1 pmon, {} mmon, 1 smon (gm at {}). `lego status` shows it; `lego down` "
      "stops it.\n",
      o.mmons, gm_addr);
  return 0;
}

namespace {

int StopAll(const std::string& state_dir, const ClusterState& s, int timeout_s, bool quiet) {
  // Monitors first, the gm last, so that monitors can deregister.
  std::vector<DaemonRecord> order;
  for (const auto& d : s.daemons)
    if (d.kind != "gm") order.push_back(d);
  for (const auto& d : s.daemons)
    if (d.kind == "gm") order.push_back(d);
  int already_dead = 0;
  std::vector<DaemonRecord> running;
  ReapChildren();
  for (const auto& d : order) {
    if (!DaemonAlive(d)) {
      if (!quiet) fmt::print("  {} (pid {}) had already exited\n", d.name, d.pid);
      ++already_dead;
      continue;
    }
    if (d.kind == "gm" && !running.empty()) {
      // Give monitors a moment to deregister before the gm goes.
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (std::chrono::steady_clock::now() < until) {
        ReapChildren();
        bool any = false;
        for (const auto& r : running) any |= DaemonAlive(r);
        if (!any) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    kill(d.pid, SIGTERM);
    running.push_back(d);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  int killed = 0;
  for (const auto& d : running) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (!AwaitExit(d, std::max<int64_t>(left.count(), 0))) {
      fmt::print(stderr, "  {} (pid {}) did not stop within {} s; killing it\n", d.name, d.pid, timeout_s);
      kill(d.pid, SIGKILL);
      ++killed;
    } else if (!quiet) {
      fmt::print("  stopped {} (pid {})\n", d.name, d.pid);
    }
  }
  ReapChildren();
  return killed;
}

}  // namespace

// Detaches every mount below `dir` (vNode FUSE mounts a killed pmon left behind), then removes `dir`.
// Never recurses into a mount: a live vNode mount holds the user's files, which live on the smon.
static std::error_code RemoveStateDir(const std::string& dir) {
  std::error_code ec;
  std::string root = fs::weakly_canonical(dir, ec).string();
  if (ec) root = dir;
  std::vector<std::string> below;
  if (FILE* f = std::fopen("/proc/self/mounts", "re")) {
    char line[4096];
    while (std::fgets(line, sizeof line, f)) {
      char src[1024], mnt[2048];
      if (std::sscanf(line, "%1023s %2047s", src, mnt) != 2) continue;
      std::string m;  // undo /proc/mounts' octal escapes (\040 for a space ...)
      for (size_t i = 0; mnt[i]; ++i) {
        if (mnt[i] == '\\' && mnt[i + 1] && mnt[i + 2] && mnt[i + 3]) {
          m.push_back(
              static_cast<char>((mnt[i + 1] - '0') * 64 + (mnt[i + 2] - '0') * 8 + (mnt[i + 3] - '0')));
          i += 3;
        } else {
          m.push_back(mnt[i]);
        }
      }
      if (m.rfind(root + "/", 0) == 0) below.push_back(m);
    }
    std::fclose(f);
  }
  std::sort(below.rbegin(), below.rend());  // deepest first
  for (const auto& m : below) {
    if (umount2(m.c_str(), MNT_DETACH) != 0) {
      // Not root: fusermount3 can detach FUSE mounts of the same user.
      pid_t pid = fork();
      if (pid == 0) {
        execlp("fusermount3", "fusermount3", "-u", "-z", m.c_str(), static_cast<char*>(nullptr));
        _exit(127);
      }
      int st = 0;
      if (pid > 0) waitpid(pid, &st, 0);
    }
    fmt::print(stderr, "lego: detached the leftover mount {}\n", m);
  }
  // If a mount could not be detached, refuse to recurse into it.
  for (const auto& m : below) {
    struct stat a {
    }, b{};
    std::string parent = fs::path(m).parent_path().string();
    if (stat(m.c_str(), &a) == 0 && stat(parent.c_str(), &b) == 0 && a.st_dev != b.st_dev)
      return std::make_error_code(std::errc::device_or_resource_busy);
  }
  fs::remove_all(dir, ec);
  return ec;
}

namespace {

// An exclusive lock on the state dir for the commands that change it: two restarts, or a restart and a
// `lego down`, would each write the state from what they read, and lose the other's daemon.
class StateDirLock {
 public:
  explicit StateDirLock(const std::string& dir) : fd_(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (fd_ >= 0) (void)flock(fd_, LOCK_EX);
  }
  ~StateDirLock() {
    if (fd_ >= 0) close(fd_);
  }
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

 private:
  int fd_;
};

}  // namespace

int Down(const std::string& dir, int timeout_s) {
  StateDirLock lock(dir);  // not while a `lego restart` is writing the state
  auto s = ReadState(dir);
  if (!s.ok()) {
    if (s.status().code() == StatusCode::kNotFound) {
      fmt::print(stderr, "lego down: no cluster is up (state dir {}); nothing to do\n", dir);
      return 0;
    }
    fmt::print(stderr, "lego down: {}\n", s.status().message());
    return 1;
  }
  fmt::print("lego down: stopping {} daemons\n", s->daemons.size());
  StopAll(dir, s.value(), timeout_s, /*quiet=*/false);
  std::error_code ec = RemoveStateDir(dir);
  if (ec) {
    fmt::print(stderr, "lego down: cannot remove {}: {}\n", dir, ec.message());
    return 1;
  }
  fmt::print("lego down: cluster stopped; removed {}\n", dir);
  return 0;
}

int Restart(const std::string& dir, const std::string& name, bool hard, int timeout_s) {
  StateDirLock lock(dir);
  auto s = ReadState(dir);
  if (!s.ok()) {
    fmt::print(stderr, "lego restart: {}\n", s.status().message());
    return 1;
  }
  auto it = std::find_if(s->daemons.begin(), s->daemons.end(), [&](auto& d) { return d.name == name; });
  if (it == s->daemons.end()) {
    std::string names;
    for (const auto& d : s->daemons) names += (names.empty() ? "" : ", ") + d.name;
    fmt::print(stderr, "lego restart: the local cluster has no component '{}' (it has {})\n", name, names);
    return 2;
  }
  DaemonRecord& d = *it;
  if (d.args.empty()) {
    fmt::print(stderr,
               "lego restart: {}'s command line is not in {} (the cluster was started by an older lego); "
               "`lego down` and `lego up` again\n",
               name, StateFile(dir));
    return 1;
  }
  ReapChildren();
  if (DaemonAlive(d)) {
    bool killed = hard;
    kill(d.pid, hard ? SIGKILL : SIGTERM);
    if (!AwaitExit(d, int64_t{timeout_s} * 1000) && !hard) {
      fmt::print(stderr, "lego restart: {} (pid {}) did not stop within {} s; killing it\n", name, d.pid,
                 timeout_s);
      kill(d.pid, SIGKILL);
      killed = true;
      (void)AwaitExit(d, 10000);
    }
    if (DaemonAlive(d)) {  // SIGKILL did not take within 10 s: stuck in the kernel (D state)
      fmt::print(stderr,
                 "lego restart: {} (pid {}) does not exit, even after SIGKILL; not starting another\n", name,
                 d.pid);
      return 1;
    }
    fmt::print("lego restart: {} {} (pid {})\n", killed ? "killed" : "stopped", name, d.pid);
  } else {
    fmt::print("lego restart: {} (pid {}) was not running\n", name, d.pid);
  }
  const std::string log = fmt::format("{}/logs/{}.log", dir, name);
  const std::string ready = fmt::format("{}/run/{}.ready", dir, name);
  (void)unlink(ready.c_str());
  auto pid = Spawn(d.binary, d.args, log);
  if (!pid.ok()) {
    fmt::print(stderr, "lego restart: cannot start {}: {}\n", name, pid.status().message());
    return 1;
  }
  d.pid = pid.value();
  if (Status st = WriteState(dir, s.value()); !st.ok()) {
    // Unrecorded, `lego down` would never stop it: take it down again.
    fmt::print(stderr, "lego restart: cannot record {}'s new pid: {}; stopping it again\n", name,
               st.message());
    kill(d.pid, SIGKILL);
    (void)AwaitExit(d, 10000);
    return 1;
  }
  // Registered again: the gm lists it alive with its new pid (for the gm: the gm answers, as itself).
  auto m = MakeCliMessenger();
  auto gm_hp = ParseHostPort(s->gm_addr);
  if (!m.ok() || !gm_hp.ok()) {
    fmt::print(stderr, "lego restart: started {} (pid {}); cannot ask the gm whether it registered: {}\n",
               name, d.pid, (!m.ok() ? m.status() : gm_hp.status()).message());
    return 1;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::string last_err = "no answer yet";
  for (;;) {
    auto members = ListMembers(*m.value(), gm_hp.value(), 1000);
    if (members.ok()) {
      // Back: listed alive with its new pid. A restarted gm knows nobody at first: it is back once every
      // monitor of the cluster that runs has registered with it again.
      std::string addr, missing;
      for (const auto& o : s->daemons) {
        if (o.name != name && (d.kind != "gm" || !DaemonAlive(o))) continue;
        bool listed = false;
        for (const auto& r : members.value())
          if (r.name == o.name && r.fixed.pid == static_cast<uint32_t>(o.pid) &&
              r.fixed.state == static_cast<uint8_t>(proto::MemberState::kAlive)) {
            listed = true;
            if (o.name == name) addr = r.listen_addr;
          }
        if (!listed) missing += (missing.empty() ? "" : ", ") + o.name;
      }
      if (missing.empty()) {
        m.value()->Shutdown();
        fmt::print("lego restart: {} is back (pid {}, {} {}{})\n", name, d.pid,
                   d.kind == "gm" ? "listening on" : "registered at", d.kind == "gm" ? s->gm_addr : addr,
                   d.kind == "gm" ? "; every running monitor has registered with it again" : "");
        return 0;
      }
      last_err = fmt::format("the gm does not list {} alive (with its current pid) yet", missing);
    } else {
      last_err = members.status().ToString();
    }
    ReapChildren();
    if (!DaemonAlive(d)) {
      m.value()->Shutdown();
      fmt::print(stderr, "lego restart: lego-{} ({}) exited during start-up; last lines of {}:\n{}", d.kind,
                 name, log, TailFile(log, 15));
      return 1;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      m.value()->Shutdown();
      fmt::print(stderr, "lego restart: {} (pid {}) runs but did not register within {} s: {}\n", name, d.pid,
                 timeout_s, last_err);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace lego::cli
