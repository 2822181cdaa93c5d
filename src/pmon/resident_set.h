// ResidentSet: which of a process's pages are in the ExCache, and in what order to evict them.
//
// Policies (pmon --eviction):
//   fifo  - evict in the order pages became resident.
//   clock - an LRU approximation: CLOCK (second chance) over a referenced bit. The bit is set by every
//           fault the pmon sees on a resident page (a write to a write-protected page); when the hand finds a
//           referenced page it clears the bit, asks the caller to re-arm detection (write-protect the page
//           again) and moves on. Reads of resident pages raise no fault and are invisible: this kernel has no
//           idle-page tracking (CONFIG_IDLE_PAGE_TRACKING off), so read recency cannot be observed from
//           outside the program. See docs/decisions/006-excache.md.
// Not thread safe: the owner (a ProcessSession) serialises calls.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace lego::pmon {

enum class EvictionPolicy { kFifo, kClock };
Result<EvictionPolicy> ParseEvictionPolicy(const std::string& s);
const char* EvictionPolicyName(EvictionPolicy p);

class ResidentSet {
 public:
  explicit ResidentSet(EvictionPolicy policy) : policy_(policy) {}

  void Insert(uint64_t page);  // page became resident (not referenced yet)
  void Touch(uint64_t page);   // page was referenced
  void Erase(uint64_t page);   // page left the ExCache (evicted, unmapped)
  bool Contains(uint64_t page) const { return nodes_.count(page) != 0; }
  size_t size() const { return nodes_.size(); }

  // Removes and returns up to n victims. For kClock, referenced pages met on the way get a second chance:
  // their bit is cleared and rearm(page) is called. Scans at most 2 * size() entries.
  std::vector<uint64_t> PickVictims(size_t n, const std::function<void(uint64_t)>& rearm);

 private:
  struct Node {
    uint64_t gen;
    bool referenced;
  };
  EvictionPolicy policy_;
  uint64_t next_gen_ = 0;
  std::unordered_map<uint64_t, Node> nodes_;
  std::deque<std::pair<uint64_t, uint64_t>> queue_;  // (page, gen); stale entries skipped lazily
};

}  // namespace lego::pmon
