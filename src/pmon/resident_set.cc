#include "pmon/resident_set.h"

namespace lego::pmon {

Result<EvictionPolicy> ParseEvictionPolicy(const std::string& s) {
  if (s == "fifo") return EvictionPolicy::kFifo;
  if (s == "clock" || s == "lru") return EvictionPolicy::kClock;
  return Status(StatusCode::kInvalidArgument, "unknown eviction policy '" + s + "' (expected fifo or clock)");
}

const char* EvictionPolicyName(EvictionPolicy p) { return p == EvictionPolicy::kFifo ? "fifo" : "clock"; }

void ResidentSet::Insert(uint64_t page) {
  const uint64_t gen = next_gen_++;
  nodes_[page] = Node{gen, false};
  queue_.emplace_back(page, gen);
}

void ResidentSet::Touch(uint64_t page) {
  auto it = nodes_.find(page);
  if (it != nodes_.end()) it->second.referenced = true;
}

void ResidentSet::Erase(uint64_t page) {
  nodes_.erase(page);
  // Keep the queue from growing without bound when pages churn without being picked.
  if (queue_.size() > 2 * nodes_.size() + 1024) {
    std::deque<std::pair<uint64_t, uint64_t>> live;
    for (auto& e : queue_) {
      auto it = nodes_.find(e.first);
      if (it != nodes_.end() && it->second.gen == e.second) live.push_back(e);
    }
    queue_.swap(live);
  }
}

std::vector<uint64_t> ResidentSet::PickVictims(size_t n, const std::function<void(uint64_t)>& rearm) {
  std::vector<uint64_t> out;
  size_t budget = 2 * nodes_.size() + 1;
  while (out.size() < n && !queue_.empty() && budget-- > 0) {
    auto [page, gen] = queue_.front();
    queue_.pop_front();
    auto it = nodes_.find(page);
    if (it == nodes_.end() || it->second.gen != gen) continue;  // stale
    if (policy_ == EvictionPolicy::kClock && it->second.referenced) {
      it->second.referenced = false;
      it->second.gen = next_gen_++;
      queue_.emplace_back(page, it->second.gen);
      if (rearm) rearm(page);
      continue;
    }
    nodes_.erase(it);
    out.push_back(page);
  }
  return out;
}

}  // namespace lego::pmon
