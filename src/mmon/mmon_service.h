// MmonService: the memory monitor's P2M handlers over its PageStore (LegoOS's mComponent page serving).
// Handlers run inline on the messenger's progress thread: each is a bounded copy of at most
// kMaxPagesPerRequest pages, so none blocks.
#pragma once

#include <memory>

#include "common/metrics.h"
#include "messaging/messenger.h"
#include "mmon/page_store.h"

namespace lego::mmon {

class MmonService {
 public:
  MmonService(std::unique_ptr<PageStore> store, Metrics& metrics);
  // REQUIRES: before messenger.Start().
  void InstallHandlers(msg::Messenger& messenger);
  PageStore& store() { return *store_; }

 private:
  void UpdateGauges();

  std::unique_ptr<PageStore> store_;
  prometheus::Counter& c_pages_written_;
  prometheus::Counter& c_pages_read_;
  prometheus::Counter& c_pages_absent_;
  prometheus::Counter& c_pages_freed_;
  prometheus::Counter& c_oom_;
  prometheus::Gauge& g_spaces_;
  prometheus::Gauge& g_used_;
};

}  // namespace lego::mmon
