// GmService: the global manager's request handlers (X2G membership, C2G queries) and its liveness checker.
// LegoOS's GPM/GMM/GSM all live in lego-gm; this file is the membership part that every later manager uses.
//
// Threading: handlers run on the messenger's progress thread and only touch the MembershipTable (which
// locks itself); the checker thread wakes every interval/2 to mark silent members dead.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "common/metrics.h"
#include "common/work_queue.h"
#include "gm/membership.h"
#include "gm/region_map.h"
#include "gm/vnode_table.h"
#include "messaging/messenger.h"
#include "protocol/vnode.h"

namespace lego::gm {

struct GmSelf {
  std::string listen_addr;
  uint16_t metrics_port = 0;
  uint32_t incarnation = 1;  // starts with this data dir, this one included
};

// How long the gm waits for an smon to make or delete a vNode's namespace.
inline constexpr std::chrono::milliseconds kSmonCallTimeout{10000};

class GmService {
 public:
  GmService(msg::Messenger& messenger, Metrics& metrics, MembershipOptions options, GmSelf self,
            PlacementPolicy placement = PlacementPolicy::kMostFree,
            std::unique_ptr<VnodeTable> vnodes = nullptr);
  ~GmService();
  // REQUIRES: before messenger.Start().
  void InstallHandlers();
  void Start();
  void Stop();
  MembershipTable& table() { return table_; }

 private:
  void CheckerLoop();
  void InstallMemoryHandlers();  // GMM: vRegion placement
  void InstallVnodeHandlers();   // GSM: vNodes and their storage placement

  Result<proto::VnodeRecord> CreateVnode(const proto::VnodeCreateReq& req);
  Status RemoveVnode(const std::string& name);
  Result<proto::VnodeRecord> LookupVnode(const proto::VnodeLookupReq& req);
  proto::VnodeRecord ToRecord(const VnodeEntry& e, const std::vector<proto::MemberRecord>& members) const;
  // The alive mmon with the most free memory, or nullptr.
  static const proto::MemberRecord* PickCacheMmon(const std::vector<proto::MemberRecord>& members);
  Status CallSmon(const proto::MemberRecord& smon, uint16_t opcode, uint32_t vnode);

  msg::Messenger& messenger_;
  MembershipTable table_;
  RegionMap regions_;
  GmSelf self_;
  int64_t started_wall_ms_;
  int64_t started_mono_ms_;
  // A restarted gm (incarnation > 1) knows only the members that have registered with it again: until this
  // long after its start (heartbeat interval x (misses + 1)) it refuses x2g.release_space and
  // c2g.release_tagged_spaces (Busy), so that no space is taken for freed while an mmon missing from its
  // list still holds some of it.
  int64_t settle_ms_;
  // Busy (saying when to try again) while settling, else Ok. `what` is what to do again.
  Status SettleRefusal(const char* what) const;
  prometheus::Gauge& g_alive_;
  prometheus::Counter& c_deaths_;
  prometheus::Counter& c_registrations_;
  prometheus::Counter& c_regions_assigned_;
  prometheus::Counter& c_regions_reassigned_;
  prometheus::Counter& c_region_refusals_;
  std::unique_ptr<VnodeTable> vnodes_;  // null: vNodes are not served (tests of membership only)
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread checker_;
  // vNode operations call smons, so they run on one thread of their own, one at a time (which also orders
  // them); Stop() drops the ones not started (their callers get an error reply).
  WorkQueue ops_{1};
  std::map<std::string, std::shared_ptr<msg::Channel>> smon_channels_;  // ops thread only; by address
};

}  // namespace lego::gm
