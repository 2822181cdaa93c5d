#include "gm/region_map.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "common/log.h"
#include "protocol/p2m.h"

namespace lego::gm {

bool ParsePlacementPolicy(std::string_view s, PlacementPolicy* out) {
  if (s == "most-free")
    *out = PlacementPolicy::kMostFree;
  else if (s == "round-robin")
    *out = PlacementPolicy::kRoundRobin;
  else
    return false;
  return true;
}

Result<uint32_t> RegionMap::Assign(uint64_t space, uint64_t region, const std::vector<MmonView>& mmons,
                                   bool* replaced) {
  MutexLock lk(mu_);
  auto key = std::make_pair(space, region);
  std::optional<uint32_t> old_owner;
  if (auto it = owner_.find(key); it != owner_.end()) {
    auto m = std::find_if(mmons.begin(), mmons.end(), [&](const MmonView& v) { return v.id == it->second; });
    if (m != mmons.end() && m->alive) return it->second;
    old_owner = it->second;  // dead or gone: choose again (below), unless nobody has room
  }

  auto free_of = [](const MmonView& m) {
    return m.capacity_bytes > m.used_bytes ? m.capacity_bytes - m.used_bytes : 0;
  };
  std::vector<const MmonView*> candidates;
  for (const auto& m : mmons)
    if (m.alive && free_of(m) >= kFullThresholdBytes) candidates.push_back(&m);
  if (candidates.empty()) {
    uint64_t alive = 0;
    for (const auto& m : mmons) alive += m.alive;
    return Status(StatusCode::kOutOfMemory,
                  fmt::format("no memory monitor has room for region {} of space {:#x} ({} alive, all full)",
                              region, space, alive));
  }
  const MmonView* pick = nullptr;
  if (policy_ == PlacementPolicy::kRoundRobin) {
    std::sort(candidates.begin(), candidates.end(), [](auto* a, auto* b) { return a->id < b->id; });
    for (auto* c : candidates)
      if (c->id > last_rr_) {
        pick = c;
        break;
      }
    if (!pick) pick = candidates.front();
    last_rr_ = pick->id;
  } else {
    // Most free, where a region handed out but not yet filled counts as a quarter of a region in use (so a
    // burst of assignments spreads instead of piling onto the mmon that looked emptiest a second ago).
    auto score = [&](const MmonView* m) {
      uint64_t pending = regions_per_mmon_[m->id] * (kRegionBytes / 4);
      uint64_t f = free_of(*m);
      return f > pending ? f - pending : 0;
    };
    for (auto* c : candidates)
      if (!pick || score(c) > score(pick) || (score(c) == score(pick) && c->id < pick->id)) pick = c;
  }
  if (old_owner) {
    if (auto& count = regions_per_mmon_[*old_owner]; count) --count;
    if (replaced) *replaced = true;
    LEGO_LOG_INFO("region_reassigned space={:#x} region={} from_mmon={} to_mmon={}", space, region,
                  *old_owner, pick->id);
  }
  owner_[key] = pick->id;
  regions_per_mmon_[pick->id]++;
  LEGO_LOG_DEBUG("region_assigned space={:#x} region={} mmon={}", space, region, pick->id);
  return pick->id;
}

size_t RegionMap::ReleaseFrom(uint64_t first_space, const std::function<bool(uint64_t space)>& in_range) {
  size_t n = 0;
  for (auto it = owner_.lower_bound({first_space, 0}); it != owner_.end() && in_range(it->first.first);) {
    auto& count = regions_per_mmon_[it->second];
    if (count) --count;
    it = owner_.erase(it);
    ++n;
  }
  return n;
}

size_t RegionMap::ReleaseSpace(uint64_t space) {
  MutexLock lk(mu_);
  return ReleaseFrom(space, [space](uint64_t s) { return s == space; });
}

size_t RegionMap::ReleaseTaggedSpaces(uint32_t tag) {
  MutexLock lk(mu_);
  // Its spaces' ids are the range [tag << shift, (tag + 1) << shift), contiguous in owner_'s order.
  return ReleaseFrom(uint64_t{tag} << proto::kSpaceTagShift,
                     [tag](uint64_t s) { return proto::SpaceTag(s) == tag; });
}

size_t RegionMap::ForkSpace(uint64_t parent, uint64_t child) {
  MutexLock lk(mu_);
  std::vector<std::pair<uint64_t, uint32_t>> regions;
  for (auto it = owner_.lower_bound({parent, 0}); it != owner_.end() && it->first.first == parent; ++it)
    regions.emplace_back(it->first.second, it->second);
  for (auto [region, mmon] : regions) {
    if (owner_.emplace(std::make_pair(child, region), mmon).second) ++regions_per_mmon_[mmon];
  }
  return regions.size();
}

size_t RegionMap::RegionCount() const {
  MutexLock lk(mu_);
  return owner_.size();
}

}  // namespace lego::gm
