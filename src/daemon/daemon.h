// The shared body of every Lego daemon (lego-gm, lego-pmon, lego-mmon, lego-smon).
//
// RunDaemon parses flags/config, sets up logging, the data dir, the Prometheus endpoint and the Messenger,
// lets the component install its handlers (setup), starts serving, registers with the gm (monitors only),
// and then waits for SIGTERM/SIGINT, on which it deregisters, stops and exits 0. Exit codes: 0 clean stop,
// 2 bad flags or config, 1 failure to start.
#pragma once

#include <functional>
#include <memory>

#include "common/metrics.h"
#include "daemon/config.h"
#include "messaging/messenger.h"

namespace lego::daemon {

// What a component's setup sees.
struct DaemonContext {
  const DaemonConfig& config;
  Metrics& metrics;
  msg::Messenger& messenger;
  std::string name;  // the stable member name
  // Call after a large change of the bytes in use (an mmon freed 1 MiB or more): the member agent reports
  // them to the gm at once instead of at its next heartbeat. Safe from any thread, also before registration.
  // It refers to RunDaemon's state: call it only from handlers and threads that stop before RunDaemon
  // returns (the messenger's, and the component's own, stopped in Component::stop).
  std::function<void()> used_changed;
};

struct Component {
  // Installs handlers; runs before the messenger starts. May keep state in the returned object.
  std::function<Status(DaemonContext&)> setup;
  // Starts background work after the messenger serves (optional).
  std::function<void(DaemonContext&)> start;
  // Stops background work before the messenger stops (optional).
  std::function<void()> stop;
  // Bytes in use, reported in heartbeats (optional).
  std::function<uint64_t()> used_bytes;
};

int RunDaemon(const KindDefaults& defaults, int argc, char** argv, Component component);

}  // namespace lego::daemon
