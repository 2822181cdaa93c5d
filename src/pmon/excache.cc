#include "pmon/excache.h"

#include <algorithm>

#include "common/log.h"
#include "pmon/process_session.h"

namespace lego::pmon {

ExCache::ExCache(uint64_t budget_bytes) : budget_(std::max<uint64_t>(budget_bytes / kPage, 64)) {}

ExCache::~ExCache() { Stop(); }

void ExCache::Start() {
  evictor_ = std::thread([this] { EvictorLoop(); });
}

void ExCache::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  evictor_cv_.notify_all();
  room_cv_.notify_all();
  if (evictor_.joinable()) evictor_.join();
}

void ExCache::Add(const std::shared_ptr<ProcessSession>& s) {
  std::lock_guard lock(mu_);
  sessions_.push_back(s);
}

void ExCache::Remove(ProcessSession* s) {
  std::lock_guard lock(mu_);
  std::erase_if(sessions_, [s](auto& p) { return p.get() == s; });
}

// Eviction starts above the high watermark and frees a batch at a time: the gap below the cap is what
// lets faults proceed without waiting while the evictor works. It is also memory the program cannot use
// (the resident set settles at the watermark), so it is kept small: two batches (2 MiB), at most an eighth
// of the cap. A batch takes about a millisecond; two batches of gap cover hundreds of faults meanwhile.
uint64_t ExCache::HighMark(uint64_t cap) {
  const uint64_t gap = std::min<uint64_t>(cap / 8, 2 * kBatchPages);
  return cap - gap;
}

bool ExCache::Fits(ProcessSession& s, size_t n) const {
  return total_.load(std::memory_order_relaxed) + n <= budget_ && s.resident_pages() + n <= s.cap_pages();
}

bool ExCache::Reserve(ProcessSession& s, size_t n, Millis wait) {
  std::unique_lock lock(mu_);
  if (!Fits(s, n)) {
    evictor_cv_.notify_one();
    if (!room_cv_.wait_for(lock, wait, [&] { return stop_ || Fits(s, n); }) || stop_) return false;
  }
  total_.fetch_add(n, std::memory_order_relaxed);
  s.AddResident(n);
  if (total_.load(std::memory_order_relaxed) > HighMark(budget_) ||
      s.resident_pages() > HighMark(s.cap_pages()))
    evictor_cv_.notify_one();
  return true;
}

void ExCache::Overcommit(ProcessSession& s, size_t n) {
  std::lock_guard lock(mu_);
  total_.fetch_add(n, std::memory_order_relaxed);
  s.AddResident(n);
  evictor_cv_.notify_one();
}

void ExCache::Release(ProcessSession& s, size_t n) {
  {
    std::lock_guard lock(mu_);
    total_.fetch_sub(std::min<uint64_t>(n, total_.load(std::memory_order_relaxed)),
                     std::memory_order_relaxed);
    s.SubResident(n);
  }
  room_cv_.notify_all();
}

// The process to evict from: one over its own cap's watermark first, else the largest while the pmon-wide
// budget is over its watermark. nullptr: nothing to do.
std::shared_ptr<ProcessSession> ExCache::PickVictimProcess() {
  std::shared_ptr<ProcessSession> largest;
  for (auto& s : sessions_) {
    if (!s->can_evict() || s->resident_pages() == 0 || s->evict_paused()) continue;
    if (s->resident_pages() > HighMark(s->cap_pages())) return s;
    if (!largest || s->resident_pages() > largest->resident_pages()) largest = s;
  }
  if (total_.load(std::memory_order_relaxed) > HighMark(budget_)) return largest;
  return nullptr;
}

void ExCache::EvictorLoop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    auto victim = PickVictimProcess();
    if (!victim) {
      evictor_cv_.wait_for(lock, std::chrono::milliseconds(100));
      continue;
    }
    lock.unlock();
    size_t freed = victim->EvictBatch(kBatchPages);
    lock.lock();
    if (freed == 0) {
      // Nothing could be evicted (memory monitors full or unreachable, or every page mid-fault): back off
      // instead of spinning; faults waiting for room give up after their wait and overcommit.
      room_cv_.notify_all();
      evictor_cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
  }
}

}  // namespace lego::pmon
