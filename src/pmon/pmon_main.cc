// lego-pmon: a process monitor (LegoOS's pComponent). Today: joins the cluster and reports its ExCache
// budget; running programs arrives with the disaggregated-memory work (docs/architecture.md).
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  using namespace lego;
  daemon::KindDefaults d{
      proto::ComponentKind::kPmon,
      "lego-pmon: a Lego process monitor. Runs programs whose memory lives on memory monitors, "
      "caching part of it in its ExCache, and registers with lego-gm.",
      "--excache", "ExCache budget: local DRAM that caches remote memory (e.g. 256M)", "256M"};
  return daemon::RunDaemon(d, argc, argv, daemon::Component{});
}
