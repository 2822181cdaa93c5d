// MmonService: the memory monitor's P2M handlers over its PageStore (LegoOS's mComponent page serving).
// Handlers run inline on the messenger's progress thread: each is a bounded copy of at most
// kMaxPagesPerRequest pages, so none blocks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>

#include "common/metrics.h"
#include "messaging/messenger.h"
#include "mmon/page_store.h"

namespace lego::mmon {

class MmonService {
 public:
  MmonService(std::unique_ptr<PageStore> store, Metrics& metrics);
  // REQUIRES: before messenger.Start(). used_changed (optional) is called after a free of at least
  // kReportFreedPages pages, so that the gm hears of the room at once (DaemonContext::used_changed).
  void InstallHandlers(msg::Messenger& messenger, std::function<void()> used_changed = {});
  PageStore& store() { return *store_; }

  // A space destroyed less than this long ago refuses writes (see Bury).
  static constexpr int64_t kTombstoneMs = 10 * 60 * 1000;
  static constexpr uint64_t kReportFreedPages = 256;  // 1 MiB: the gm's "full" threshold

 private:
  void UpdateGauges();
  // Remembers a destroyed space. A write for it that arrives later was sent before the destroy (a
  // rendezvous-sized write-back whose transfer finished after the destroy, or one queued at an mmon that was
  // stopped): applying it would bring the space back with nobody left to free it. Space ids are random and
  // never reused, so such a write is always stale.
  void Bury(uint64_t space);
  // Buries and frees each space (p2m.destroy_space, p2m.destroy_tagged_spaces); returns the pages freed.
  uint64_t Destroy(std::span<const uint64_t> spaces);
  bool Buried(uint64_t space);
  void Freed(uint64_t pages);  // counts them; tells used_changed_ of a large free

  std::function<void()> used_changed_;
  std::unique_ptr<PageStore> store_;
  prometheus::Counter& c_pages_written_;
  prometheus::Counter& c_pages_read_;
  prometheus::Counter& c_pages_absent_;
  prometheus::Counter& c_pages_freed_;
  prometheus::Counter& c_oom_;
  prometheus::Counter& c_late_writes_;
  std::mutex tomb_mu_;
  std::unordered_map<uint64_t, int64_t> tombstones_;  // space -> when it was destroyed (MonoMillis)
  prometheus::Gauge& g_spaces_;
  prometheus::Gauge& g_used_;
};

}  // namespace lego::mmon
