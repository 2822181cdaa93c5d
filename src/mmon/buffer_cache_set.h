// BufferCacheSet: the memory monitor's buffer cache, one BufferCache per vNode sharing one budget.
//
// Why per vNode: a BufferCache holds its lock across its downstream calls (buffer_cache.h), so with one
// cache for every vNode homed on this mmon, a vNode whose smon is stopped or dead made every other vNode's
// file requests wait behind the stuck ones (measured: a 64 MiB read in vNode B took 4.6 s while vNode A's
// smon was stopped, against 0.3 s). A vNode's requests never touch another's files, so each vNode gets a
// cache of its own: a stuck smon holds only the caches of its own vNodes.
//
// Sharing: the budget (BufferCacheOptions::capacity_bytes) is split evenly among the vNodes active in the
// last kIdleAfter (a vNode's first request makes it active at once); an idle vNode's cache is shrunk to
// nothing (its dirty blocks are flushed first) and gives its share to the others. A resize is applied by each
// cache between its requests (BufferCache::SetCapacity), so for a moment after a new vNode becomes active the
// caches together may hold more than the budget, until the others' next request or flusher tick.
//
// Retiring: an idle cache that has shrunk to nothing and that no request is using is dropped at the next
// rebalance, with its flusher thread (its counters are kept in the set's totals), so an mmon that has homed
// many vNodes over its life keeps caches and threads only for those used lately. A vNode that comes back
// gets a new, empty cache.
//
// Thread safety: every method may be called from any thread; the set's own lock guards only the map of
// caches and is never held across a request.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "common/thread_annotations.h"
#include "mmon/buffer_cache.h"

namespace lego::mmon {

class BufferCacheSet : public proto::FsService {
 public:
  static constexpr std::chrono::seconds kIdleAfter{60};

  // downstream must outlive the set. idle_after: kIdleAfter, shorter in tests.
  BufferCacheSet(const BufferCacheOptions& opts, proto::FsService* downstream,
                 std::chrono::nanoseconds idle_after = kIdleAfter);
  ~BufferCacheSet() override;  // calls Stop

  void Start();
  void Stop();  // stops every cache's flusher and flushes it (BufferCache::Stop)

  proto::FsReply Execute(const proto::FsRequest& req) override;
  bool TryServeRead(const proto::FsRequest& req, proto::FsReply* out);  // BufferCache::TryServeRead
  Status FlushAll();

  BufferCacheStats stats() const;  // summed over the vNodes' caches (and those of vNodes seen before)
  bool enabled() const { return enabled_; }
  // The capacity each active vNode's cache has now, in bytes (for tests and logs).
  uint64_t share_bytes() const;
  size_t cache_count() const;  // caches kept now (vNodes used lately, or not yet retired)

 private:
  std::shared_ptr<BufferCache> CacheFor(uint32_t vnode);
  // Recomputes the shares; `now_active` (may be null) counts as active whatever its last use. Caches it
  // retires are moved to `retired`, to be destroyed by the caller outside mu_ (a destruction joins a thread).
  void Rebalance(const BufferCache* now_active, std::vector<std::shared_ptr<BufferCache>>* retired)
      REQUIRES(mu_);

  const BufferCacheOptions opts_;
  const bool enabled_;
  proto::FsService* const downstream_;
  const std::chrono::nanoseconds idle_after_;
  mutable Mutex mu_;
  // Shared with the requests running on them: a cache is retired only when the map holds its only reference.
  std::map<uint32_t, std::shared_ptr<BufferCache>> caches_ GUARDED_BY(mu_);
  BufferCacheStats retired_stats_ GUARDED_BY(mu_);             // the counters of retired caches
  std::map<const BufferCache*, bool> active_ GUARDED_BY(mu_);  // as of the last Rebalance
  uint64_t share_bytes_ GUARDED_BY(mu_) = 0;
  bool started_ GUARDED_BY(mu_) = false;
  std::atomic<int64_t> next_rebalance_ns_{0};
};

}  // namespace lego::mmon
