#include "mmon/buffer_cache_set.h"

#include <algorithm>
#include <vector>

#include "common/log.h"

namespace lego::mmon {
namespace {

int64_t SteadyNs() { return std::chrono::steady_clock::now().time_since_epoch().count(); }
constexpr int64_t kRebalanceEveryNs = 1'000'000'000;  // idle vNodes are looked for at most once a second

}  // namespace

BufferCacheSet::BufferCacheSet(const BufferCacheOptions& opts, proto::FsService* downstream)
    : opts_(opts), enabled_(opts.capacity_bytes / kCacheBlockSize > 0), downstream_(downstream) {}

BufferCacheSet::~BufferCacheSet() { Stop(); }

void BufferCacheSet::Start() {
  MutexLock l(mu_);
  started_ = true;
  for (auto& [vnode, c] : caches_) c->Start();
}

void BufferCacheSet::Stop() {
  std::vector<BufferCache*> all;
  {
    MutexLock l(mu_);
    started_ = false;
    for (auto& [vnode, c] : caches_) all.push_back(c.get());
  }
  for (BufferCache* c : all) c->Stop();  // outside the lock: a stop flushes, which may wait for an smon
}

BufferCache* BufferCacheSet::CacheFor(uint32_t vnode) {
  const int64_t now = SteadyNs();
  MutexLock l(mu_);
  auto it = caches_.find(vnode);
  if (it == caches_.end()) {
    auto c = std::make_unique<BufferCache>(opts_, downstream_);  // enabled; Rebalance sets its share below
    if (started_) c->Start();
    it = caches_.emplace(vnode, std::move(c)).first;
    LEGO_LOG_INFO("bcache_vnode_added vnode={} vnodes={}", vnode, caches_.size());
  }
  BufferCache* c = it->second.get();
  auto a = active_.find(c);
  if (a == active_.end() || !a->second || now >= next_rebalance_ns_.load(std::memory_order_relaxed)) {
    Rebalance(c);
    next_rebalance_ns_.store(now + kRebalanceEveryNs, std::memory_order_relaxed);
  }
  return c;
}

void BufferCacheSet::Rebalance(const BufferCache* now_active) {
  const int64_t idle_before = SteadyNs() - std::chrono::nanoseconds(kIdleAfter).count();
  size_t n = 0;
  for (auto& [vnode, c] : caches_) {
    const bool active = c.get() == now_active || c->last_used_ns() >= idle_before;
    active_[c.get()] = active;
    n += active;
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
  BufferCache* c = nullptr;
  {
    MutexLock l(mu_);
    auto it = caches_.find(req.f.vnode);
    if (it == caches_.end()) return false;
    c = it->second.get();
  }
  return c->TryServeRead(req, out);
}

Status BufferCacheSet::FlushAll() {
  std::vector<BufferCache*> all;
  {
    MutexLock l(mu_);
    for (auto& [vnode, c] : caches_) all.push_back(c.get());
  }
  Status first;
  for (BufferCache* c : all) {
    Status st = c->FlushAll();
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

BufferCacheStats BufferCacheSet::stats() const {
  BufferCacheStats sum;
  MutexLock l(mu_);
  for (auto& [vnode, c] : caches_) sum += c->stats();
  return sum;
}

uint64_t BufferCacheSet::share_bytes() const {
  MutexLock l(mu_);
  return share_bytes_;
}

}  // namespace lego::mmon
