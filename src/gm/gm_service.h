// GmService: the global manager's request handlers (X2G membership, C2G queries) and its liveness checker.
// LegoOS's GPM/GMM/GSM all live in lego-gm; this file is the membership part that every later manager uses.
//
// Threading: handlers run on the messenger's progress thread and only touch the MembershipTable (which
// locks itself); the checker thread wakes every interval/2 to mark silent members dead.
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/metrics.h"
#include "gm/membership.h"
#include "gm/region_map.h"
#include "messaging/messenger.h"

namespace lego::gm {

struct GmSelf {
  std::string listen_addr;
  uint16_t metrics_port = 0;
};

class GmService {
 public:
  GmService(msg::Messenger& messenger, Metrics& metrics, MembershipOptions options, GmSelf self,
            PlacementPolicy placement = PlacementPolicy::kMostFree);
  ~GmService();
  // REQUIRES: before messenger.Start().
  void InstallHandlers();
  void Start();
  void Stop();
  MembershipTable& table() { return table_; }

 private:
  void CheckerLoop();
  void InstallMemoryHandlers();  // GMM: vRegion placement

  msg::Messenger& messenger_;
  MembershipTable table_;
  RegionMap regions_;
  GmSelf self_;
  int64_t started_wall_ms_;
  prometheus::Gauge& g_alive_;
  prometheus::Counter& c_deaths_;
  prometheus::Counter& c_registrations_;
  prometheus::Counter& c_regions_assigned_;
  prometheus::Counter& c_region_refusals_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread checker_;
};

}  // namespace lego::gm
