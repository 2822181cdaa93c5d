// lego-mmon: a memory monitor (LegoOS's mComponent). Keeps pages of process address spaces in one
// preallocated pool and serves them to process monitors (P2M). vRegion VMA management and copy-on-write
// fork arrive with the rest of disaggregated memory (docs/architecture.md).
#include "daemon/daemon.h"
#include "mmon/mmon_service.h"

int main(int argc, char** argv) {
  using namespace lego;
  daemon::KindDefaults d{
      proto::ComponentKind::kMmon,
      "lego-mmon: a Lego memory monitor. Owns a pool of memory that process monitors use as "
      "remote memory, and registers with lego-gm.",
      "--capacity", "size of the memory pool (e.g. 512M, 4G)", "1G"};
  std::unique_ptr<mmon::MmonService> service;
  daemon::Component c;
  c.setup = [&](daemon::DaemonContext& ctx) -> Status {
    auto store = mmon::PageStore::Create(ctx.config.capacity);
    if (!store.ok()) return store.status();
    service = std::make_unique<mmon::MmonService>(std::move(store.value()), ctx.metrics);
    service->InstallHandlers(ctx.messenger);
    return Status::Ok();
  };
  c.used_bytes = [&]() -> uint64_t { return service ? service->store().used_bytes() : 0; };
  return daemon::RunDaemon(d, argc, argv, c);
}
