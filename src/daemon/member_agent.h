// MemberAgent: keeps one monitor registered with the global manager.
//
// It registers (retrying while the gm is unreachable), heartbeats at the interval the gm sets, registers
// again when the gm answers kUnknownMember (the gm restarted and forgot it), and deregisters on Stop().
// A thread of its own; Stop() is prompt (the thread sleeps on a condition variable).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "messaging/messenger.h"

namespace lego::daemon {

struct MemberInfo {
  proto::ComponentKind kind;
  std::string name;
  std::string listen_addr;
  uint16_t metrics_port = 0;
  uint64_t capacity_bytes = 0;
};

class MemberAgent {
 public:
  MemberAgent(msg::Messenger& messenger, HostPort gm, MemberInfo info, std::function<uint64_t()> used_bytes);
  ~MemberAgent();
  void Start();
  void Stop();  // deregisters if registered
  // The used bytes changed a lot (an mmon freed a space): heartbeat now rather than at the next interval, so
  // that the gm places the next regions on current numbers (it measured: a program started right after
  // another got both its vRegions on the mmon that looked emptier a second before). At most one early
  // heartbeat per kMinHeartbeatGap.
  void HeartbeatSoon();
  uint32_t id() const { return id_.load(); }
  bool registered() const { return registered_.load(); }

 private:
  void Loop();
  bool Register();
  bool SleepFor(std::chrono::milliseconds d);  // false if stopping
  bool WaitForHeartbeat(bool allow_early);     // the interval, or HeartbeatSoon; false if stopping

  msg::Messenger& messenger_;
  std::shared_ptr<msg::Channel> gm_;
  MemberInfo info_;
  std::function<uint64_t()> used_bytes_;
  std::atomic<uint32_t> id_{0};
  std::atomic<bool> registered_{false};
  uint32_t incarnation_ = 0;
  uint32_t interval_ms_ = 1000;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool soon_ = false;  // HeartbeatSoon was called
  std::thread thread_;
};

}  // namespace lego::daemon
