// RegionMap: the global memory manager's half of LegoOS's two-level memory management. Each address space
// is cut into 1 GiB vRegions; the GMM decides which memory monitor owns each vRegion, and that monitor then
// manages the pages inside it. Unlike LegoOS's GMM, a full monitor is never chosen while another has room
// (LegoOS issue #10: one mComponent ran out while the other sat idle).
//
// Policies: most-free (default: the alive mmon with the most free bytes, counting regions it was just given
// whose pages have not arrived yet) and round-robin (the next alive mmon with room, in id order).
// Pure logic: the caller passes the current view of the mmons (tests/unit/region_map_test.cc).
// Thread safety: one internal mutex; every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace lego::gm {

inline constexpr uint64_t kRegionBytes = 1ull << 30;  // one vRegion
// An mmon with less free memory than this is full: it gets no new regions.
inline constexpr uint64_t kFullThresholdBytes = 1ull << 20;

enum class PlacementPolicy { kMostFree, kRoundRobin };
bool ParsePlacementPolicy(std::string_view s, PlacementPolicy* out);  // "most-free", "round-robin"

struct MmonView {
  uint32_t id = 0;
  bool alive = false;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
};

class RegionMap {
 public:
  explicit RegionMap(PlacementPolicy policy) : policy_(policy) {}

  // The owner of (space, region), choosing one if the region has none, or if its owner is dead or gone from
  // `mmons` (*replaced is then set). Only a caller that holds no page in the region asks again once it has an
  // owner (the pmon, after writing to an owner that died before taking any: MemoryClient::Write), so
  // replacing loses nothing. kOutOfMemory if no alive mmon has room.
  Result<uint32_t> Assign(uint64_t space, uint64_t region, const std::vector<MmonView>& mmons,
                          bool* replaced = nullptr);
  // Forgets every region of the space (process exit); returns how many it had.
  size_t ReleaseSpace(uint64_t space);
  // Forgets every region of every space whose id carries `tag` (proto::SpaceTag): `lego reclaim` of a pmon
  // that never came back. Returns how many regions it forgot.
  size_t ReleaseTaggedSpaces(uint32_t tag);
  // A forked child's vRegions start on the same mmons as its parent's (their pages are copied there).
  size_t ForkSpace(uint64_t parent, uint64_t child);
  size_t RegionCount() const;

 private:
  // Forgets the regions of the spaces from first_space on while in_range(space) holds (owner_'s order).
  size_t ReleaseFrom(uint64_t first_space, const std::function<bool(uint64_t space)>& in_range) REQUIRES(mu_);

  const PlacementPolicy policy_;
  mutable Mutex mu_;
  std::map<std::pair<uint64_t, uint64_t>, uint32_t> owner_ GUARDED_BY(mu_);
  std::map<uint32_t, uint64_t> regions_per_mmon_ GUARDED_BY(mu_);
  uint32_t last_rr_ GUARDED_BY(mu_) = 0;
};

}  // namespace lego::gm
