// DaemonConfig: how every Lego daemon is configured, from flags and/or a TOML cluster file.
//
// Precedence: command-line flag > the daemon's own table in the file ([gm], [pmon], [mmon], [smon], or the
// table named by --section) > the file's [cluster] table > built-in default. No node table is compiled in:
// a daemon on another host joins with nothing but --gm HOST:PORT. The file format is in
// docs/configuration.md.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/util.h"
#include "protocol/membership.h"

namespace lego::daemon {

struct DaemonConfig {
  proto::ComponentKind kind = proto::ComponentKind::kUnknown;
  std::string name;                            // stable identity; default: kept in data_dir/identity
  HostPort listen{"127.0.0.1", 0};             // port 0 picks a free port
  HostPort gm;                                 // required for monitors; unused by the gm
  std::string data_dir;                        // created if missing
  uint64_t capacity = 0;                       // bytes: pool (mmon), ExCache (pmon), quota (smon)
  std::string metrics_listen = "127.0.0.1:0";  // Prometheus HTTP; "off" disables
  uint32_t heartbeat_interval_ms = 1000;
  uint32_t heartbeat_misses = 3;
  std::string log_level = "info";
  std::string ready_file;               // written once serving: "listen=HOST:PORT\nmetrics_port=N\n"
  std::string ucx_transports;           // UCX_TLS; empty lets UCX choose
  std::string placement = "most-free";  // gm: vRegion placement policy (most-free | round-robin)
  std::string eviction = "fifo";        // pmon: ExCache eviction policy (fifo | clock)
  bool prefetch = true;                 // pmon: prefetch sequential/strided misses
  std::string buffer_cache = "64M";     // mmon: storage buffer cache size; "0" turns it off
  uint32_t flush_interval_ms = 5000;    // mmon: dirty buffer-cache data reaches the smon this often
  uint32_t storage_timeout_ms = 5000;   // mmon: an smon silent this long fails the request with EIO;
                                        // pmon: waits this plus 2 s for the mmon
};

struct KindDefaults {
  proto::ComponentKind kind;
  const char* description;    // one paragraph for --help
  const char* capacity_flag;  // e.g. "--capacity"; nullptr if the daemon has no capacity
  const char* capacity_help;
  const char* default_capacity;
};

// Parses argv into *config. Returns kInvalidArgument with a message for the user on bad input; prints help
// and sets *exit_now (with status OK) for --help/--version.
Status ParseDaemonConfig(const KindDefaults& defaults, int argc, char** argv, DaemonConfig* config,
                         bool* exit_now);

// Returns the member's stable name: config.name if set, else the one kept in data_dir/identity (created
// on first start as KIND-RANDOMHEX).
Result<std::string> LoadOrCreateIdentity(const DaemonConfig& config);

}  // namespace lego::daemon
