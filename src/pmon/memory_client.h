// MemoryClient: the process monitor's view of remote memory. It asks lego-gm which memory monitor owns
// each 1 GiB vRegion of an address space (GMM, X2G assign_region), caches the answer, and reads, writes
// and frees pages on that monitor (P2M). Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <vector>

#include "common/status.h"
#include "common/util.h"
#include "messaging/messenger.h"

namespace lego::pmon {

using msg::Millis;

inline constexpr uint64_t kPage = 4096;
inline constexpr int kRegionShift = 30;  // 1 GiB vRegions (LegoOS)

class MemoryClient {
 public:
  MemoryClient(msg::Messenger& messenger, HostPort gm, Millis timeout);

  // Reads pages that all lie in one vRegion, in two halves so that the caller can work while they travel:
  // ReadStart sends the request; ReadFinish waits for the reply to the n pages asked for. present[i] is set
  // to 1 if the mmon held page i and 0 if it was never written. The pages are not copied out: *reply keeps
  // the reply (read in place: a reply of a few pages may still lie in UCX's receive buffer, which goes back
  // when *reply is destroyed), and *pages points at the present pages' bytes in request order, packed (the
  // k-th present page is at *pages + k * kPage).
  // reply_buffer, if given, receives a reply that is copied (an earlier reply's buffer: no allocation, no
  // zeroing; ReplyView::TakeBuffer gives it back).
  Result<std::shared_ptr<msg::PendingCall>> ReadStart(uint64_t space, std::span<const uint64_t> vaddrs,
                                                      proto::Bytes&& reply_buffer = proto::Bytes());
  static Status ReadFinish(msg::PendingCall& call, size_t n, uint8_t* present, msg::ReplyView* reply,
                           const uint8_t** pages);
  // Writes pages (any vRegions; data holds vaddrs.size() pages in order). All-or-nothing per vRegion.
  // A vRegion whose owner is found gone (kPeerUnreachable) before it took any of the region's pages is
  // forgotten, so that the next write asks the gm again, which moves the region to an alive mmon once it
  // has seen the old one dead (RegionMap::Assign): a program whose first region went to an mmon that had
  // just died goes on instead of failing every write-back. A vRegion whose owner holds pages and is found
  // gone sets *owner_lost (if given): the process's pages there are out of reach, as a page read would find.
  Status Write(uint64_t space, std::span<const uint64_t> vaddrs, const uint8_t* data,
               bool* owner_lost = nullptr);
  // Frees [start, start+len) on the owners of the vRegions it touches that were ever assigned.
  Status FreeRange(uint64_t space, uint64_t start, uint64_t len, uint64_t* freed = nullptr);
  // Frees everything of the space on every mmon that holds part of it, and tells the gm to forget it.
  Status DestroySpace(uint64_t space, uint64_t* freed = nullptr);
  // The same for a space whose holders this client does not know (one of a previous life of the pmon, or
  // one whose DestroySpace failed): every mmon the gm lists alive is asked to free it. Fails if any of
  // them, or the gm, could not be asked, or if the gm lists an mmon as dead (not left): a stopped mmon is
  // dead to the gm but keeps its pool, so the space is not gone until it has answered too (a restarted
  // one answers with an empty pool).
  // Nor if the gm refuses to release the space (Busy): a restarted gm does until every live member has
  // had time to register with it again, since an mmon missing from its list may still hold the space.
  Status DestroySpaceEverywhere(uint64_t space, uint64_t* freed = nullptr);
  // fork(): `child` gets a copy-on-write copy of every page of `parent`, on the same memory monitors.
  Status ForkSpace(uint64_t parent, uint64_t child, uint64_t* pages = nullptr);

 private:
  Result<std::shared_ptr<msg::Channel>> Owner(uint64_t space, uint64_t region);
  std::shared_ptr<msg::Channel> KnownOwner(uint64_t space, uint64_t region);

  msg::Messenger& messenger_;
  std::shared_ptr<msg::Channel> gm_;
  const Millis timeout_;
  std::mutex mu_;
  std::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<msg::Channel>> owners_;  // (space, region)
  // (space, region)s whose owner holds pages: a write was answered, or the space was forked from one that
  // did. Such an owner is never forgotten (its pages would read as zero anywhere else).
  std::set<std::pair<uint64_t, uint64_t>> holding_;
  std::map<std::string, std::shared_ptr<msg::Channel>> channels_;  // by mmon address
};

}  // namespace lego::pmon
