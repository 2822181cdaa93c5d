// Metrics: a daemon's counters and gauges, readable two ways: as Prometheus text over HTTP
// (prometheus-cpp's Exposer) and as a flat list over RPC (any.get_stats, used by `lego stats`).
// Thread safety: all methods may be called from any thread; counters are lock-free to increment.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "common/status.h"
#include "protocol/any.h"

namespace prometheus {
class Exposer;
}

namespace lego {

class Metrics {
 public:
  Metrics();
  ~Metrics();

  // Names follow Prometheus conventions: lego_<component>_<what>[_total|_bytes]. Calling twice with the
  // same name returns the same metric.
  prometheus::Counter& Counter(const std::string& name, const std::string& help);
  prometheus::Gauge& Gauge(const std::string& name, const std::string& help);

  // Runs `hook` at the start of every read (Snapshot, and each HTTP scrape), so that a gauge set from live
  // state (a daemon's used bytes, a pmon's memory statistics) is current when read, not as of some periodic
  // update. Hooks run in the order added, on the reading thread, one read at a time; they must be cheap, and
  // must not call Snapshot, OnCollect or RemoveCollectHook (they run under those calls' lock). Returns an id
  // for RemoveCollectHook.
  uint64_t OnCollect(std::function<void()> hook);
  // Removes a hook; a read running it finishes first, so what the hook reads may go away after this returns.
  void RemoveCollectHook(uint64_t id);
  // A collect hook that copies source()'s entries into gauges of the same names (made on first use): for
  // statistics a component keeps outside the registry (atomics, histograms), which then reach `lego stats`
  // and the HTTP scrape alike. Returns the hook's id.
  uint64_t MirrorOnCollect(std::function<std::vector<proto::StatsEntry>()> source, const std::string& help);

  // Every metric as name -> value (labels, if any, appended as name{k="v"}).
  std::vector<proto::StatsEntry> Snapshot() const;

  // Serves GET /metrics on bind ("127.0.0.1:0" picks a free port). Returns the bound port.
  Result<uint16_t> StartHttp(const std::string& bind);
  uint16_t http_port() const { return http_port_; }

 private:
  class Collector;
  void RunHooks() const;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Collector> collector_;  // what the HTTP exposer reads: the hook, then registry_
  mutable std::mutex hook_mu_;            // held while hooks run: removing one waits for a running read
  std::vector<std::pair<uint64_t, std::function<void()>>> hooks_;  // (id, hook), guarded by hook_mu_
  uint64_t next_hook_id_ = 1;                                      // guarded by hook_mu_
  std::unique_ptr<prometheus::Exposer> exposer_;
  uint16_t http_port_ = 0;
};

}  // namespace lego
