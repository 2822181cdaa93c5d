// Helpers for tests that run real Lego daemons as processes: temp dirs, spawned processes that are always
// killed (RAII, SIGKILL on destruction), waiting for ready files, and the paths of the built binaries.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/util.h"

namespace lego::test {

// Directory of the built daemons and CLI (set by CMake as LEGO_BIN_DIR).
std::string BinDir();

// Lazily detaches every mount below dir (vNode FUSE mounts a killed pmon left behind).
void DetachMountsBelow(const std::string& dir);

// A fresh directory under /tmp, removed with everything in it on destruction (mounts below it are
// detached first, never recursed into).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process. Its stdout+stderr go to a log file. Killed with SIGKILL on destruction if still running.
class Process {
 public:
  Process(std::string binary, std::vector<std::string> args, std::string log_path);
  ~Process();
  Process(Process&&) noexcept;
  Process& operator=(Process&&) = delete;
  pid_t pid() const { return pid_; }
  bool Running();
  void Signal(int sig);
  // Waits for exit; returns the exit status as waitpid's (or -1 on timeout).
  int Wait(std::chrono::milliseconds timeout);
  void Kill9();
  // SIGSTOP, and wait until the kernel reports the process stopped.
  void Stop();
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_;
};

// Runs a command to completion; returns exit code and captures stdout/stderr.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
RunResult Run(const std::string& binary, const std::vector<std::string>& args,
              const std::map<std::string, std::string>& env = {},
              std::chrono::seconds timeout = std::chrono::seconds(60));

// The last `lines` lines of each daemon's log of a cluster (STATE_DIR/logs/*.log).
std::string DaemonLogTails(const std::string& state_dir, size_t lines = 40);
// The threads' stacks of each daemon of a cluster still running (STATE_DIR/run/*.ready), with gdb if it is
// installed: what a daemon that stopped answering was doing.
std::string DaemonStacks(const std::string& state_dir);
// Both (the stacks if `stacks`), on stderr: what a failed test shows of its cluster before `lego down` and
// its temp dir take it away. gdb stops each daemon while it attaches: not for a cluster other tests go on
// using.
void PrintDaemonState(const std::string& state_dir, bool stacks = true);

// Polls cond every 10 ms until true or timeout; returns whether it became true.
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// Reads KEY=VALUE lines of a daemon's --ready-file, waiting for it to appear.
std::map<std::string, std::string> WaitReadyFile(const std::string& path, std::chrono::milliseconds timeout);

// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
uint16_t FreePort();

// Starts a daemon (kind: gm, pmon, mmon, smon) with its ready file in dir and waits until it serves.
struct Daemon {
  Process proc;
  HostPort addr;
  uint16_t metrics_port = 0;
};
Daemon StartDaemon(const std::string& kind, const std::string& dir, const std::string& name,
                   std::vector<std::string> extra_args);

// Minimal HTTP GET to 127.0.0.1:port/path; returns the body ("" on error).
std::string HttpGet(uint16_t port, const std::string& path);

}  // namespace lego::test
