#include "mmon/mmon_service.h"

#include "common/log.h"
#include "protocol/any.h"
#include "protocol/p2m.h"

namespace lego::mmon {

MmonService::MmonService(std::unique_ptr<PageStore> store, Metrics& metrics)
    : store_(std::move(store)),
      c_pages_written_(
          metrics.Counter("lego_mmon_pages_written_total", "Pages written back by process monitors")),
      c_pages_read_(metrics.Counter("lego_mmon_pages_read_total", "Pages read by process monitors")),
      c_pages_absent_(metrics.Counter("lego_mmon_pages_absent_total", "Reads of pages never written")),
      c_pages_freed_(metrics.Counter("lego_mmon_pages_freed_total", "Pages freed by munmap or exit")),
      c_oom_(metrics.Counter("lego_mmon_out_of_memory_total", "Writes refused because the pool was full")),
      c_late_writes_(metrics.Counter("lego_mmon_late_writes_total",
                                     "Writes refused because their space was destroyed before they arrived")),
      g_spaces_(metrics.Gauge("lego_mmon_address_spaces", "Address spaces with pages here")),
      g_used_(metrics.Gauge("lego_mmon_pool_used_bytes", "Bytes of the pool holding pages")) {}

void MmonService::UpdateGauges() {
  g_spaces_.Set(static_cast<double>(store_->space_count()));
  g_used_.Set(static_cast<double>(store_->used_bytes()));
}

void MmonService::Bury(uint64_t space) {
  const int64_t now = MonoMillis();
  std::lock_guard lock(tomb_mu_);
  tombstones_[space] = now;
  if (tombstones_.size() % 1024 == 0)  // now and then, forget the old ones
    std::erase_if(tombstones_, [now](const auto& t) { return now - t.second > kTombstoneMs; });
}

bool MmonService::Buried(uint64_t space) {
  std::lock_guard lock(tomb_mu_);
  auto it = tombstones_.find(space);
  return it != tombstones_.end() && MonoMillis() - it->second <= kTombstoneMs;
}

uint64_t MmonService::Destroy(std::span<const uint64_t> spaces) {
  uint64_t freed = 0;
  for (uint64_t space : spaces) {
    Bury(space);
    freed += store_->DestroySpace(space);
  }
  Freed(freed);
  return freed;
}

void MmonService::Freed(uint64_t pages) {
  c_pages_freed_.Increment(static_cast<double>(pages));
  UpdateGauges();
  if (pages >= kReportFreedPages && used_changed_) used_changed_();
}

void MmonService::InstallHandlers(msg::Messenger& messenger, std::function<void()> used_changed) {
  used_changed_ = std::move(used_changed);
  messenger.Handle(proto::kWritePages, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeWritePages(in.payload);
    if (!req.ok()) return r.Error(req.status());
    if (Buried(req->space)) {
      c_late_writes_.Increment();
      LEGO_LOG_RATELIMITED("late_write_dropped space={:#x} pages={}: the space was destroyed before it came",
                           req->space, req->vaddrs.size());
      return r.Error(NotFound(fmt::format("space {:#x} was destroyed", req->space)));
    }
    std::vector<PageStore::PageRef> pages(req->vaddrs.size());
    for (size_t i = 0; i < pages.size(); ++i)
      pages[i] = {req->vaddrs[i], req->data.subspan(i * kPageSize, kPageSize)};
    Status st = store_->Write(req->space, pages);
    if (!st.ok()) {
      if (st.code() == StatusCode::kOutOfMemory) {
        c_oom_.Increment();
        LEGO_LOG_RATELIMITED("pool_full space={:#x} pages={} used={} capacity={}", req->space, pages.size(),
                             store_->used_bytes(), store_->capacity_bytes());
      }
      return r.Error(st);
    }
    c_pages_written_.Increment(static_cast<double>(pages.size()));
    UpdateGauges();
    r.Reply();
  });
  // A read may overtake a write-back still arriving on its connection: the pmon never reads a page whose
  // write-back is unanswered, and a fault should not wait for a 1 MiB transfer (protocol.md, "Ordering").
  messenger.Handle(
      proto::kReadPages,
      [this](const msg::Incoming& in, msg::Responder r) {
        auto req = proto::DecodeReadPages(in.payload);
        if (!req.ok()) return r.Error(req.status());
        const size_t n = req->vaddrs.size();
        // A fresh buffer, handed to the messenger: a window of pages is sent from it without another copy.
        // Its capacity is reserved and the pages appended, so they are written once (not zeroed first).
        proto::Bytes out;
        out.reserve(8 + n + n * kPageSize);
        out.resize(8);
        uint32_t count = static_cast<uint32_t>(n), reserved = 0;
        std::memcpy(out.data(), &count, 4);
        std::memcpy(out.data() + 4, &reserved, 4);
        size_t present = store_->AppendPages(req->space, req->vaddrs, &out);
        c_pages_read_.Increment(static_cast<double>(present));
        c_pages_absent_.Increment(static_cast<double>(n - present));
        r.Reply(std::move(out));
      },
      msg::Messenger::Order::kMayOvertake);
  messenger.Handle(proto::kFreeRange, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::FreeRangeReq>(in.payload, "p2m.free_range");
    if (!req.ok()) return r.Error(req.status());
    uint64_t freed = store_->FreeRange(req->space, req->start, req->length);
    Freed(freed);
    r.Reply(proto::EncodeFixed(proto::FreedResp{freed}));
  });
  messenger.Handle(proto::kCopySpace, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::CopySpaceReq>(in.payload, "p2m.copy_space");
    if (!req.ok()) return r.Error(req.status());
    auto n = store_->ForkSpace(req->parent, req->child);
    if (!n.ok()) return r.Error(n.status());
    UpdateGauges();
    LEGO_LOG_DEBUG("space_forked parent={:#x} child={:#x} pages={}", req->parent, req->child, *n);
    r.Reply(proto::EncodeFixed(proto::FreedResp{*n}));
  });
  messenger.Handle(proto::kDestroySpace, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::DestroySpaceReq>(in.payload, "p2m.destroy_space");
    if (!req.ok()) return r.Error(req.status());
    const uint64_t freed = Destroy(std::span(&req->space, 1));
    LEGO_LOG_INFO("space_destroyed space={:#x} pages_freed={}", req->space, freed);
    r.Reply(proto::EncodeFixed(proto::FreedResp{freed}));
  });
  messenger.Handle(proto::kDestroyTaggedSpaces, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::TaggedSpacesReq>(in.payload, "p2m.destroy_tagged_spaces");
    if (!req.ok()) return r.Error(req.status());
    if (Status st = proto::CheckTaggedSpacesReq(*req, "p2m.destroy_tagged_spaces"); !st.ok())
      return r.Error(st);
    const std::vector<uint64_t> spaces = store_->SpacesTagged(req->tag);
    const uint64_t freed = Destroy(spaces);  // a late write of a stopped (not dead) pmon is refused too
    LEGO_LOG_INFO("tagged_spaces_destroyed tag={:#x} spaces={} pages_freed={}", req->tag, spaces.size(),
                  freed);
    r.Reply(proto::EncodeFixed(proto::FreedResp{freed}));
  });
}

}  // namespace lego::mmon
