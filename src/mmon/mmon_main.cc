// lego-mmon: a memory monitor (LegoOS's mComponent). Keeps pages of process address spaces in one
// preallocated pool and serves them to process monitors (P2M), and keeps the storage buffer cache of the
// vNodes whose cache home it is: their FS requests pass through it to the vNode's smon
// (src/mmon/buffer_cache.h).
#include "common/work_queue.h"
#include "daemon/daemon.h"
#include "messaging/remote_fs.h"
#include "mmon/buffer_cache_set.h"
#include "mmon/mmon_service.h"

int main(int argc, char** argv) {
  using namespace lego;
  daemon::KindDefaults d{
      proto::ComponentKind::kMmon,
      "lego-mmon: a Lego memory monitor. Owns a pool of memory that process monitors use as "
      "remote memory, keeps the storage buffer cache of vNodes, and registers with lego-gm.",
      "--capacity", "size of the memory pool (e.g. 512M, 4G)", "1G"};
  std::unique_ptr<mmon::MmonService> service;
  std::unique_ptr<msg::RemoteFs> storage;
  std::unique_ptr<mmon::BufferCacheSet> cache;
  std::unique_ptr<WorkQueue> fs_queue;
  daemon::Component c;
  c.setup = [&](daemon::DaemonContext& ctx) -> Status {
    auto store = mmon::PageStore::Create(ctx.config.capacity);
    if (!store.ok()) return store.status();
    service = std::make_unique<mmon::MmonService>(std::move(store.value()), ctx.metrics);
    service->InstallHandlers(ctx.messenger, ctx.used_changed);

    auto cache_bytes = ParseSize(ctx.config.buffer_cache);
    if (!cache_bytes.ok()) return cache_bytes.status();
    storage =
        std::make_unique<msg::RemoteFs>(ctx.messenger, ctx.config.gm,
                                        msg::RemoteFsOptions{msg::RemoteFsOptions::Target::kSmon,
                                                             msg::Millis(ctx.config.storage_timeout_ms)});
    mmon::BufferCacheOptions bo;
    bo.capacity_bytes = cache_bytes.value();
    bo.flush_interval = std::chrono::milliseconds(ctx.config.flush_interval_ms);
    // One cache per vNode, sharing the budget (buffer_cache_set.h), and at most two of the four threads for
    // the vNodes of one smon: a stuck smon holds only its vNodes' caches and two threads.
    cache = std::make_unique<mmon::BufferCacheSet>(bo, storage.get());
    fs_queue = std::make_unique<WorkQueue>(4, 2);
    // Buffer-cache hits are answered on the progress thread; everything else may wait for the smon.
    msg::ServeFs(
        ctx.messenger, *fs_queue, *cache,
        [bc = cache.get()](const proto::FsRequest& req, proto::FsReply* out) {
          return bc->TryServeRead(req, out);
        },
        msg::FsQueueKeys{
            [rfs = storage.get()](const proto::FsRequest& req) { return rfs->PeerKey(req.f.vnode); },
            [rfs = storage.get()](const proto::FsRequest& req) { return rfs->Resolve(req); }});
    // Copied into gauges at every read of the metrics (`lego stats`, a scrape). The cache and the storage
    // client outlive the daemon's Metrics (they are reset only when main returns).
    ctx.metrics.MirrorOnCollect(
        [bc = cache.get(), rfs = storage.get()] {
          std::vector<proto::StatsEntry> v;
          auto s = bc->stats();
          auto add = [&](const char* n, uint64_t x) { v.push_back({n, static_cast<double>(x)}); };
          add("lego_mmon_bcache_hit_blocks_total", s.hits);
          add("lego_mmon_bcache_miss_blocks_total", s.misses);
          add("lego_mmon_bcache_readaround_blocks_total", s.readaround_blocks);
          add("lego_mmon_bcache_write_blocks_total", s.write_blocks);
          add("lego_mmon_bcache_dirty_bytes", s.dirty_bytes);
          add("lego_mmon_bcache_resident_bytes", s.resident_bytes);
          add("lego_mmon_bcache_flushes_total", s.flushes);
          add("lego_mmon_bcache_flushed_bytes_total", s.flushed_bytes);
          add("lego_mmon_bcache_evictions_total", s.evictions);
          add("lego_mmon_bcache_write_throughs_total", s.write_throughs);
          add("lego_mmon_bcache_flush_errors_total", s.flush_errors);
          add("lego_mmon_storage_transport_errors_total", rfs->transport_errors());
          add("lego_mmon_storage_retried_total", rfs->retried());
          add("lego_mmon_storage_busy_retried_total", rfs->busy_retried());
          return v;
        },
        "mmon buffer cache and storage path (docs/architecture.md)");
    return Status::Ok();
  };
  c.start = [&](daemon::DaemonContext&) { cache->Start(); };
  c.stop = [&] {
    if (fs_queue) fs_queue->Stop();
    if (cache) cache->Stop();  // writes the dirty blocks back while the messenger still runs
  };
  c.used_bytes = [&]() -> uint64_t { return service ? service->store().used_bytes() : 0; };
  return daemon::RunDaemon(d, argc, argv, c);
}
