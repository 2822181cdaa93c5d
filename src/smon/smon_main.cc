// lego-smon: a storage monitor (LegoOS's sComponent). Today: joins the cluster and reports its quota;
// vNode file storage arrives with the disaggregated-storage work (docs/architecture.md).
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  using namespace lego;
  daemon::KindDefaults d{
      proto::ComponentKind::kSmon,
      "lego-smon: a Lego storage monitor. Stores vNode files durably under its data dir and "
      "registers with lego-gm.",
      "--capacity", "disk quota for stored files (e.g. 10G)", "10G"};
  return daemon::RunDaemon(d, argc, argv, daemon::Component{});
}
