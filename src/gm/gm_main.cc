// lego-gm: the global manager (LegoOS's GPM, GMM and GSM): membership and failure detection, vRegion
// placement on mmons, and the durable vNode table with each vNode's smon and buffer-cache mmon.
#include <fstream>

#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "gm/gm_service.h"

namespace {

// How many times a gm has started with this data dir, this start included (DATA_DIR/incarnation), listed as
// its own incarnation. A restarted gm, whose member list is still filling up, holds back x2g.release_space
// for a while (GmService::SettleRefusal).
lego::Result<uint32_t> NextIncarnation(const std::string& data_dir) {
  const std::string path = data_dir + "/incarnation";
  uint32_t previous = 0;
  if (std::ifstream in(path); in && !(in >> previous)) {
    LEGO_LOG_WARN("gm_incarnation_unreadable path={}: counted as a restart", path);
    previous = 1;
  }
  const uint32_t now = previous + 1;
  LEGO_RETURN_IF_ERROR(lego::WriteFileAtomic(path, std::to_string(now) + "\n"));
  return now;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lego;
  daemon::KindDefaults d{
      proto::ComponentKind::kGm,
      "lego-gm: Lego's global manager. Keeps the membership table of all monitors, marks a "
      "monitor dead after missed heartbeats, and admits it again when it restarts.",
      nullptr, nullptr, nullptr};
  std::unique_ptr<gm::GmService> service;
  daemon::Component c;
  c.setup = [&](daemon::DaemonContext& ctx) {
    gm::MembershipOptions mo{ctx.config.heartbeat_interval_ms,
                             ctx.config.heartbeat_misses,
                             std::nullopt,
                             ctx.config.data_dir + "/members.json",
                             {}};
    auto ids = gm::LoadMemberIds(mo.ids_path);
    if (!ids.ok()) return ids.status();
    mo.known_ids = std::move(ids.value());
    gm::PlacementPolicy placement;
    if (!gm::ParsePlacementPolicy(ctx.config.placement, &placement))
      return InvalidArgument("unknown placement policy '" + ctx.config.placement + "'");
    auto vnodes = gm::VnodeTable::Open(ctx.config.data_dir + "/vnodes.json");
    if (!vnodes.ok()) return vnodes.status();
    auto incarnation = NextIncarnation(ctx.config.data_dir);
    if (!incarnation.ok()) return incarnation.status();
    service = std::make_unique<gm::GmService>(
        ctx.messenger, ctx.metrics, mo,
        gm::GmSelf{ctx.messenger.listen_address().ToString(), ctx.metrics.http_port(), *incarnation},
        placement, std::move(vnodes.value()));
    service->InstallHandlers();
    return Status::Ok();
  };
  c.start = [&](daemon::DaemonContext&) { service->Start(); };
  c.stop = [&] { service->Stop(); };
  return daemon::RunDaemon(d, argc, argv, c);
}
