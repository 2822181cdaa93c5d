// The embedded local cluster behind `lego up` / `lego down`: one gm, one pmon, two mmons and one smon on
// loopback, as child daemons of no one (setsid), with their state in one per-user directory.
//
// State dir: $LEGO_STATE_DIR, else $XDG_RUNTIME_DIR/lego, else /tmp/lego-$UID. It holds cluster.toml (the gm
// address, every daemon's pid and command line; what `lego status`, `lego down` and `lego restart` read),
// logs/NAME.log and data/NAME/.
// `lego down` removes the whole directory: nothing is left behind.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/util.h"

namespace lego::cli {

struct DaemonRecord {
  std::string name;    // gm, pmon-0, mmon-0, mmon-1, smon-0
  std::string kind;    // gm, pmon, mmon, smon
  std::string binary;  // absolute path
  int pid = 0;
  std::vector<std::string> args;  // its command line after the binary (`lego restart` starts it again so)
};

struct ClusterState {
  std::string gm_addr;
  std::vector<DaemonRecord> daemons;
};

struct UpOptions {
  std::string state_dir;
  uint16_t gm_port = 0;  // 0: a free port
  uint64_t mmon_capacity = 1ull << 30;
  uint64_t excache = 256ull << 20;
  uint64_t smon_capacity = 10ull << 30;
  int mmons = 2;
  uint32_t heartbeat_interval_ms = 1000;
  uint32_t heartbeat_misses = 3;
  int timeout_s = 30;
  std::string log_level = "info";
  std::string transports;
  std::string eviction = "fifo";  // pmon ExCache eviction policy
  bool prefetch = true;
  uint64_t buffer_cache = 64ull << 20;  // each mmon's storage buffer cache; 0: off
};

std::string DefaultStateDir();
Result<ClusterState> ReadState(const std::string& state_dir);
// True if pid is running and is the daemon we started (guards against pid reuse): its binary with its
// recorded command line, or, between fork and exec, our own child.
bool DaemonAlive(const DaemonRecord& d);

// Exit codes follow the CLI's convention: 0 ok, 1 failure, 2 usage.
int Up(const UpOptions& options);
int Down(const std::string& state_dir, int timeout_s);
// `lego restart NAME`: stops one component of the local cluster if it runs (SIGTERM, then SIGKILL after
// timeout_s; SIGKILL at once if `kill`), starts it again with its command line, data dir and log, and waits
// until the gm lists it alive with its new pid (the gm: until every running monitor has registered with
// it again). The gm keeps its address, so the monitors find it again; a monitor gets a new port and tells
// the gm at its registration. A recorded pid is signalled only if DaemonAlive says it is still the daemon.
int Restart(const std::string& state_dir, const std::string& name, bool kill, int timeout_s);

}  // namespace lego::cli
