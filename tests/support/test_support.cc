#include "support/test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

namespace lego::test {
namespace fs = std::filesystem;

std::string BinDir() { return LEGO_BIN_DIR; }

namespace {
// Every daemon a test starts (through `lego up` or directly) stops when the test process ends, however it
// ends: ctest kills a test that runs past its timeout, and then no TearDown runs `lego down`.
const bool kDaemonsExitWithTest = [] {
  setenv("LEGO_EXIT_WITH_PID", std::to_string(getpid()).c_str(), 1);
  return true;
}();
}  // namespace

TempDir::TempDir() {
  char tmpl[] = "/tmp/lego-test-XXXXXX";
  char* p = mkdtemp(tmpl);
  if (!p) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

void DetachMountsBelow(const std::string& dir) {
  std::vector<std::string> below;
  std::ifstream mounts("/proc/self/mounts");
  std::string src, mnt, rest;
  while (mounts >> src >> mnt && std::getline(mounts, rest))
    if (mnt.rfind(dir + "/", 0) == 0) below.push_back(mnt);
  std::sort(below.rbegin(), below.rend());
  for (const auto& m : below) umount2(m.c_str(), MNT_DETACH);
}

TempDir::~TempDir() {
  // A test that failed half-way may leave a vNode mount below: never recurse into it.
  DetachMountsBelow(path_);
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Process::Process(std::string binary, std::vector<std::string> args, std::string log_path)
    : log_(std::move(log_path)) {
  std::vector<char*> argv;
  argv.push_back(binary.data());
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    // Die with the test runner, so no daemon outlives a crashed test.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
}

Process::Process(Process&& o) noexcept : pid_(o.pid_), status_(o.status_), log_(std::move(o.log_)) {
  o.pid_ = -1;
}

Process::~Process() {
  if (pid_ > 0 && Running()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

bool Process::Running() {
  if (pid_ <= 0) return false;
  if (status_ != -1) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

void Process::Signal(int sig) {
  if (Running()) kill(pid_, sig);
}

int Process::Wait(std::chrono::milliseconds timeout) {
  WaitFor([&] { return !Running(); }, timeout);
  return Running() ? -1 : status_;
}

void Process::Kill9() {
  Signal(SIGKILL);
  Wait(std::chrono::seconds(10));
}

void Process::Stop() {
  Signal(SIGSTOP);
  WaitFor(
      [&] {
        std::ifstream in(fmt::format("/proc/{}/stat", pid_));
        std::string content((std::istreambuf_iterator<char>(in)), {});
        auto p = content.rfind(')');
        return p != std::string::npos && p + 2 < content.size() && content[p + 2] == 'T';
      },
      std::chrono::seconds(5));
}

std::string Process::Log() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult Run(const std::string& binary, const std::vector<std::string>& args,
              const std::map<std::string, std::string>& env, std::chrono::seconds timeout) {
  TempDir tmp;
  std::string out_path = tmp.path() + "/out", err_path = tmp.path() + "/err";
  std::vector<std::string> a = args;
  std::vector<char*> argv;
  std::string bin = binary;
  argv.push_back(bin.data());
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    int o = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(o, 1);
    dup2(e, 2);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  RunResult r;
  int st = 0;
  bool done = WaitFor([&] { return waitpid(pid, &st, WNOHANG) == pid; }, timeout);
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    r.exit_code = -1;
  } else {
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  return r;
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::map<std::string, std::string> WaitReadyFile(const std::string& path, std::chrono::milliseconds timeout) {
  std::map<std::string, std::string> kv;
  WaitFor(
      [&] {
        std::ifstream in(path);
        kv.clear();
        for (std::string l; std::getline(in, l);) {
          auto eq = l.find('=');
          if (eq != std::string::npos) kv[l.substr(0, eq)] = l.substr(eq + 1);
        }
        return kv.count("listen") > 0;
      },
      timeout);
  return kv;
}

uint16_t FreePort() {
  // Below the kernel's ephemeral range (32768+), so that no outgoing connection of a concurrently running
  // test can take the port between our check and a daemon's (re)bind of it.
  static std::mt19937 rng(static_cast<unsigned>(getpid()) * 2654435761u ^
                          static_cast<unsigned>(time(nullptr)));
  for (int attempt = 0; attempt < 1000; ++attempt) {
    uint16_t port = static_cast<uint16_t>(20000 + rng() % 12000);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (ok) return port;
  }
  throw std::runtime_error("no free port in 20000-32000");
}

Daemon StartDaemon(const std::string& kind, const std::string& dir, const std::string& name,
                   std::vector<std::string> extra_args) {
  std::string ready = fmt::format("{}/{}.ready", dir, name);
  std::remove(ready.c_str());
  std::vector<std::string> args = {"--data-dir", fmt::format("{}/{}", dir, name), "--ready-file", ready};
  bool has_listen = false;
  for (const auto& a : extra_args) has_listen |= a == "--listen" || a == "--config";
  if (!has_listen) args.insert(args.end(), {"--listen", "127.0.0.1:0"});
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  Daemon d{
      Process(fmt::format("{}/lego-{}", BinDir(), kind), args, fmt::format("{}/{}.log", dir, name)), {}, 0};
  auto kv = WaitReadyFile(ready, std::chrono::seconds(20));
  if (!kv.count("listen")) throw std::runtime_error(fmt::format("{} did not start: {}", name, d.proc.Log()));
  d.addr = ParseHostPort(kv["listen"]).value();
  d.metrics_port = static_cast<uint16_t>(std::stoi(kv["metrics_port"]));
  return d;
}

std::string HttpGet(uint16_t port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return "";
  }
  std::string req = fmt::format("GET {} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
  if (write(fd, req.data(), req.size()) < 0) {
    close(fd);
    return "";
  }
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) resp.append(buf, n);
  close(fd);
  auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

std::string DaemonLogTails(const std::string& state_dir, size_t lines) {
  std::string out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(state_dir + "/logs", ec)) {
    std::ifstream f(e.path());
    std::deque<std::string> last;
    for (std::string line; std::getline(f, line);) {
      last.push_back(std::move(line));
      if (last.size() > lines) last.pop_front();
    }
    out += "--- " + e.path().filename().string() + "\n";
    for (const auto& l : last) out += l + "\n";
  }
  return out;
}

std::string DaemonStacks(const std::string& state_dir) {
  if (access("/usr/bin/gdb", X_OK) != 0) return "";
  std::string out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(state_dir + "/run", ec)) {
    const pid_t pid =
        std::atoi(WaitReadyFile(e.path().string(), std::chrono::milliseconds(0))["pid"].c_str());
    if (pid <= 0 || kill(pid, 0) != 0) continue;
    auto bt = Run("/usr/bin/gdb",
                  {"-p", std::to_string(pid), "-batch", "-nx", "-ex", "set print frame-arguments none", "-ex",
                   "set print entry-values no", "-ex", "thread apply all bt 16"},
                  {}, std::chrono::seconds(20));
    std::string frames;
    std::istringstream in(bt.out);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("Thread ", 0) == 0 || line.rfind("#", 0) == 0) frames += line + "\n";
    out += "--- stacks of " + e.path().stem().string() + " (pid " + std::to_string(pid) + ")\n" + frames;
  }
  return out;
}

void PrintDaemonState(const std::string& state_dir, bool stacks) {
  fmt::print(stderr, "daemon logs, last lines:\n{}{}", DaemonLogTails(state_dir),
             stacks ? DaemonStacks(state_dir) : std::string());
}

}  // namespace lego::test
