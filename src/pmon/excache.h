// ExCache: the process monitor's budget of local DRAM for remote memory, shared by all the processes it
// runs, with an optional per-process cap. The fault path reserves room before installing pages; one
// evictor thread keeps every budget below its high watermark in batches, off the fault path. A fault that
// finds no room wakes the evictor and waits (bounded); if eviction stalls (memory monitors full or
// unreachable), the page is installed past the budget and counted as overcommit rather than hanging.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/util.h"
#include "messaging/messenger.h"

namespace lego::pmon {
using msg::Millis;

class ProcessSession;

class ExCache {
 public:
  static constexpr size_t kBatchPages = 256;  // 1 MiB per eviction batch

  explicit ExCache(uint64_t budget_bytes);
  ~ExCache();

  void Start();
  void Stop();

  void Add(const std::shared_ptr<ProcessSession>& s);
  void Remove(ProcessSession* s);

  // Reserves room for n pages of s; waits up to `wait` for the evictor. False: no room came.
  bool Reserve(ProcessSession& s, size_t n, Millis wait);
  // Takes room past the budget (eviction stalled): never blocks.
  void Overcommit(ProcessSession& s, size_t n);
  // n pages of s left local memory (evicted, unmapped, process gone).
  void Release(ProcessSession& s, size_t n);

  uint64_t budget_pages() const { return budget_; }
  uint64_t resident_pages() const { return total_.load(std::memory_order_relaxed); }

 private:
  static uint64_t HighMark(uint64_t cap);
  bool Fits(ProcessSession& s, size_t n) const;         // REQUIRES mu_
  std::shared_ptr<ProcessSession> PickVictimProcess();  // REQUIRES mu_
  void EvictorLoop();

  const uint64_t budget_;
  std::atomic<uint64_t> total_{0};
  std::mutex mu_;
  std::condition_variable evictor_cv_;
  std::condition_variable room_cv_;
  std::vector<std::shared_ptr<ProcessSession>> sessions_;
  bool stop_ = false;
  std::thread evictor_;
};

}  // namespace lego::pmon
