// lego-mmon: a memory monitor (LegoOS's mComponent). Today: joins the cluster and reports its pool size;
// the page store and vRegion management arrive with the disaggregated-memory work (docs/architecture.md).
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  using namespace lego;
  daemon::KindDefaults d{proto::ComponentKind::kMmon,
                         "lego-mmon: a Lego memory monitor. Owns a pool of memory that process monitors use as "
                         "remote memory, and registers with lego-gm.",
                         "--capacity", "size of the memory pool (e.g. 512M, 4G)", "1G"};
  return daemon::RunDaemon(d, argc, argv, daemon::Component{});
}
