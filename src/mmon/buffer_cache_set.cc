#include "mmon/buffer_cache_set.h"

#include <algorithm>
#include <vector>

#include "common/log.h"

namespace lego::mmon {
namespace {

int64_t SteadyNs() { return std::chrono::steady_clock::now().time_since_epoch().count(); }
constexpr int64_t kRebalanceEveryNs = 1'000'000'000;  // idle vNodes are looked for at most once a second

}  // namespace

BufferCacheSet::BufferCacheSet(const BufferCacheOptions& opts, proto::FsService* downstream,
                               std::chrono::nanoseconds idle_after)
    : opts_(opts),
      enabled_(opts.capacity_bytes / kCacheBlockSize > 0),
      downstream_(downstream),
      idle_after_(idle_after) {}

BufferCacheSet::~BufferCacheSet() { Stop(); }

void BufferCacheSet::Start() {
  MutexLock l(mu_);
  started_ = true;
  for (auto& [vnode, c] : caches_) c->Start();
}

void BufferCacheSet::Stop() {
  std::vector<std::shared_ptr<BufferCache>> all;
  {
    MutexLock l(mu_);
    started_ = false;
    for (auto& [vnode, c] : caches_) all.push_back(c);
  }
  for (auto& c : all) c->Stop();  // outside the lock: a stop flushes, which may wait for an smon
}

std::shared_ptr<BufferCache> BufferCacheSet::CacheFor(uint32_t vnode) {
  const int64_t now = SteadyNs();
  std::vector<std::shared_ptr<BufferCache>> retired;  // destroyed after the lock is released
  MutexLock l(mu_);
  auto it = caches_.find(vnode);
  if (it == caches_.end()) {
    auto c = std::make_shared<BufferCache>(opts_, downstream_);  // enabled; Rebalance sets its share below
    if (started_) c->Start();
    it = caches_.emplace(vnode, std::move(c)).first;
    LEGO_LOG_INFO("bcache_vnode_added vnode={} vnodes={}", vnode, caches_.size());
  }
  std::shared_ptr<BufferCache> c = it->second;
  auto a = active_.find(c.get());
  if (a == active_.end() || !a->second || now >= next_rebalance_ns_.load(std::memory_order_relaxed)) {
    Rebalance(c.get(), &retired);
    next_rebalance_ns_.store(now + kRebalanceEveryNs, std::memory_order_relaxed);
  }
  return c;  // `l` is released before `retired` is destroyed (declared first)
}

void BufferCacheSet::Rebalance(const BufferCache* now_active,
                               std::vector<std::shared_ptr<BufferCache>>* retired) {
  const int64_t idle_before = SteadyNs() - idle_after_.count();
  size_t n = 0;
  for (auto it = caches_.begin(); it != caches_.end();) {
    BufferCache* c = it->second.get();
    const bool active = c == now_active || c->last_used_ns() >= idle_before;
    // Idle, shrunk to nothing (nothing dirty either: dirty blocks are resident) and unused: retire it. The
    // reference count is exact here, since every other reference is taken under mu_.
    const BufferCacheStats st = c->stats();
    if (!active && c->capacity_blocks() == 0 && st.resident_bytes == 0 && it->second.use_count() == 1) {
      BufferCacheStats kept = st;  // its counters; its gauges are zero (it holds nothing) and stay out
      kept.dirty_bytes = kept.resident_bytes = 0;
      retired_stats_ += kept;
      active_.erase(c);
      LEGO_LOG_INFO("bcache_vnode_retired vnode={} vnodes={}", it->first, caches_.size() - 1);
      retired->push_back(std::move(it->second));
      it = caches_.erase(it);
      continue;
    }
    active_[c] = active;
    n += active;
    ++it;
  }
  const uint64_t blocks = opts_.capacity_bytes / kCacheBlockSize;
  const uint64_t share = n == 0 ? 0 : blocks / n * kCacheBlockSize;
  if (share != share_bytes_)
    LEGO_LOG_INFO("bcache_shares active_vnodes={} of={} share_bytes={}", n, caches_.size(), share);
  share_bytes_ = share;
  for (auto& [vnode, c] : caches_) c->SetCapacity(active_[c.get()] ? share : 0);
}

proto::FsReply BufferCacheSet::Execute(const proto::FsRequest& req) {
  if (!enabled_) return downstream_->Execute(req);
  return CacheFor(req.f.vnode)->Execute(req);
}

bool BufferCacheSet::TryServeRead(const proto::FsRequest& req, proto::FsReply* out) {
  if (!enabled_) return false;
  std::shared_ptr<BufferCache> c;
  {
    MutexLock l(mu_);
    auto it = caches_.find(req.f.vnode);
    if (it == caches_.end()) return false;
    c = it->second;
  }
  return c->TryServeRead(req, out);
}

Status BufferCacheSet::FlushAll() {
  std::vector<std::shared_ptr<BufferCache>> all;
  {
    MutexLock l(mu_);
    for (auto& [vnode, c] : caches_) all.push_back(c);
  }
  Status first;
  for (auto& c : all) {
    Status st = c->FlushAll();
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

BufferCacheStats BufferCacheSet::stats() const {
  MutexLock l(mu_);
  BufferCacheStats sum = retired_stats_;
  for (auto& [vnode, c] : caches_) sum += c->stats();
  return sum;
}

uint64_t BufferCacheSet::share_bytes() const {
  MutexLock l(mu_);
  return share_bytes_;
}

size_t BufferCacheSet::cache_count() const {
  MutexLock l(mu_);
  return caches_.size();
}

}  // namespace lego::mmon
