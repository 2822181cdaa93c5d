// lego-pmon: a process monitor (LegoOS's pComponent). Runs programs started by `lego run` with their
// anonymous memory on memory monitors, keeping part of it in its ExCache (src/pmon/pmon_service.h).
#include <algorithm>
#include <filesystem>

#include "daemon/daemon.h"
#include "pmon/pmon_service.h"
#include "protocol/p2m.h"

int main(int argc, char** argv) {
  using namespace lego;
  daemon::KindDefaults d{
      proto::ComponentKind::kPmon,
      "lego-pmon: a Lego process monitor. Runs programs whose memory lives on memory monitors, "
      "caching part of it in its ExCache, and registers with lego-gm. Programs reach it through "
      "DATA_DIR/pmon.sock (`lego run`).",
      "--excache", "ExCache budget: local DRAM that caches remote memory (e.g. 256M)", "256M"};
  std::unique_ptr<pmon::PmonService> service;
  Metrics* metrics = nullptr;
  uint64_t stats_hook = 0;
  daemon::Component c;
  c.setup = [&](daemon::DaemonContext& ctx) -> Status {
    pmon::PmonOptions o;
    o.socket_path = (std::filesystem::path(ctx.config.data_dir) / "pmon.sock").string();
    o.excache_bytes = ctx.config.capacity;
    o.gm = ctx.config.gm;
    o.vnode_root = (std::filesystem::path(ctx.config.data_dir) / "vnodes").string();
    o.storage_timeout = msg::Millis(ctx.config.storage_timeout_ms + 2000);
    o.space_journal = (std::filesystem::path(ctx.config.data_dir) / "spaces").string();
    o.space_tag = proto::PmonTag(ctx.name);
    auto policy = pmon::ParseEvictionPolicy(ctx.config.eviction);
    if (!policy.ok()) return policy.status();
    o.session.policy = *policy;
    o.session.prefetch = ctx.config.prefetch;
    if (const char* s = getenv("LEGO_FAULT_SPIN_US")) o.session.spin_us = static_cast<uint32_t>(atoi(s));
    if (const char* s = getenv("LEGO_FOLLOW_CPU")) o.session.follow_cpu = atoi(s) != 0;
    if (const char* s = getenv("LEGO_FETCH_AHEAD")) o.session.fetch_ahead = atoi(s) != 0;
    if (const char* s = getenv("LEGO_DROP_TIMEOUT_MS")) o.session.drop_timeout_ms = std::max(1, atoi(s));
    service = std::make_unique<pmon::PmonService>(o, ctx.messenger, ctx.metrics);
    service->InstallHandlers(ctx.messenger);
    // The memory statistics live in the service (atomics, histograms); every read of the metrics (`lego
    // stats`, an HTTP scrape) copies them into gauges first, so both show them as of the read.
    metrics = &ctx.metrics;
    stats_hook = metrics->MirrorOnCollect([&] { return service->ExtraStats(); },
                                          "see docs/architecture.md, pmon statistics");
    return service->Start();
  };
  c.stop = [&] {
    if (metrics) metrics->RemoveCollectHook(stats_hook);  // before the service it reads goes away
    if (service) service->Stop();
  };
  c.used_bytes = [&]() -> uint64_t { return service ? service->resident_bytes() : 0; };
  return daemon::RunDaemon(d, argc, argv, c);
}
